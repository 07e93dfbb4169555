"""Baselines: each fits on a tiny config and predicts the right shapes; the bounds are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtmsm_env import World, collect_rollouts
from gtmsm_env.rollouts import Rollouts
from gtmsm_model.baselines import (
    RSSM,
    ActionLSTM,
    ActionLSTMConfig,
    Budget,
    CanvasOracle,
    CopyLastObserved,
    DatasetMean,
    LocaliseCanvas,
    LocaliseLookup,
    MemorisationMean,
    OracleMemory,
    OraclePositionVAE,
    PoseRetrieval,
    PoseRetrievalConfig,
    RetrievalTransformer,
    RetrievalTransformerConfig,
    RSSMConfig,
    WorldModel,
)
from gtmsm_model.baselines.memory_peer import (
    BIT_VALUES,
    CHANGED,
    STEP_SCALE,
    UNCHANGED,
    UNKNOWN,
    Integrator,
    place_loss,
)
from gtmsm_model.data import RolloutSampler
from gtmsm_model.evaluate import prediction_metrics, revisited_mask
from gtmsm_model.model import CropVAE, GTMSMConfig

TAU = 12


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: one thread is faster and immune to other processes competing for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rollouts() -> Rollouts:
    return collect_rollouts(3, 20, seed=1)


def tiny_retrieval() -> RetrievalTransformer:
    return RetrievalTransformer(RetrievalTransformerConfig(d_model=8, layers=1, heads=2, feedforward=8, hidden=8,
                                                           pose=2, min_tau=2))


def tiny_pose() -> PoseRetrieval:
    return PoseRetrieval(PoseRetrievalConfig(pose=2, neighbours=3, d_model=8, heads=2, hidden=8,
                                             min_tau=2))


def tiny_models() -> list[WorldModel]:
    vae = CropVAE(GTMSMConfig(z_dim=4, vae_hidden=16))
    return [
        DatasetMean(num_batches=2),
        CopyLastObserved(),
        OracleMemory(),
        OraclePositionVAE(vae, k=3),
        RSSM(RSSMConfig(deter=16, stoch=4, hidden=16)),
        ActionLSTM(ActionLSTMConfig(hidden=16, embed=16)),
        tiny_retrieval(),
        tiny_pose(),
        LocaliseLookup(),
        LocaliseCanvas(),
        MemorisationMean(),
        CanvasOracle(),
    ]


@pytest.mark.parametrize("model", tiny_models(), ids=lambda m: m.name)
def test_every_baseline_fits_and_predicts_crops_in_unit_range(model, rollouts):
    assert isinstance(model, WorldModel)
    budget = Budget(iterations=2, batch_size=2, seq_len=16, tau=10)
    model.fit(RolloutSampler(0), budget)
    positions = rollouts.positions if model.uses_true_positions else None
    predicted = model.predict(rollouts.observations[:, :TAU], rollouts.actions, TAU, positions)
    assert predicted.shape == (3, 20 - TAU, 8, 8, 3)
    assert predicted.dtype == np.float32
    assert np.isfinite(predicted).all() and predicted.min() >= 0 and predicted.max() <= 1
    # Observations past tau are never read: passing the whole sequence changes nothing.
    full = model.predict(rollouts.observations, rollouts.actions, TAU, positions)
    np.testing.assert_array_equal(full, predicted)


def test_learned_baselines_spend_exactly_the_step_budget():
    for model in (RSSM(RSSMConfig(deter=8, stoch=2, hidden=8)), ActionLSTM(ActionLSTMConfig(hidden=8, embed=8)),
                  tiny_retrieval(), tiny_pose()):
        model.fit(RolloutSampler(0), Budget(iterations=3, batch_size=2, seq_len=8, tau=6))
        assert model.iterations_done == 3 and len(model.history) == 3
        assert all(np.isfinite(model.history))


def test_oracle_memory_is_exact_on_revisited_steps_and_uses_the_latest_visit():
    # Hand-made: 3 memorised steps at (0,0), (0,1), (0,0), then (0,0), (0,1), (2,2) predicted.
    rng = np.random.default_rng(0)
    observations = rng.integers(0, 256, size=(1, 6, 8, 8, 3), dtype=np.uint8)
    positions = np.array([[[0, 0], [0, 1], [0, 0], [0, 0], [0, 1], [2, 2]]])
    actions = np.array([[0, 4, 3, 0, 4, 2]])
    predicted = OracleMemory().predict(observations[:, :3], actions, 3, positions)
    pixels = observations.astype(np.float32) / 255.0
    np.testing.assert_array_equal(predicted[0, 0], pixels[0, 2])  # latest visit of (0,0), not the first
    np.testing.assert_array_equal(predicted[0, 1], pixels[0, 1])
    np.testing.assert_allclose(predicted[0, 2], pixels[0, :3].mean(0), rtol=1e-6)  # never seen: mean


def test_oracle_memory_scores_zero_on_revisited_and_nonzero_on_novel_steps():
    rollouts = collect_rollouts(4, 60, seed=2, world=World(start="random"))
    tau = 20
    revisited = revisited_mask(rollouts.positions, tau)
    assert revisited.any() and (~revisited).any()
    predicted = OracleMemory().predict(rollouts.observations[:, :tau], rollouts.actions, tau, rollouts.positions)
    target = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    per_step = ((predicted - target) ** 2).mean(axis=(2, 3, 4))
    assert (per_step[revisited] == 0).all()
    assert (per_step[~revisited] > 0).all()
    metrics = prediction_metrics(predicted, rollouts, tau)
    assert metrics.mse_revisited == 0 and metrics.mse_novel > 0


def test_copy_last_observed_repeats_the_last_memorised_crop(rollouts):
    predicted = CopyLastObserved().predict(rollouts.observations, rollouts.actions, TAU)
    last = rollouts.observations[:, TAU - 1].astype(np.float32) / 255.0
    for step in range(predicted.shape[1]):
        np.testing.assert_array_equal(predicted[:, step], last)


def test_oracle_position_vae_decodes_the_stored_code_of_a_position_seen_once():
    vae = CropVAE(GTMSMConfig(z_dim=4, vae_hidden=16))
    rng = np.random.default_rng(1)
    observations = rng.integers(0, 256, size=(1, 4, 8, 8, 3), dtype=np.uint8)
    positions = np.array([[[0, 0], [0, 1], [1, 1], [0, 1]]])
    predicted = OraclePositionVAE(vae, k=3).predict(observations[:, :3], np.zeros((1, 4), np.int64), 3, positions)
    with torch.no_grad():
        expected = vae.decode(vae.infer(torch.as_tensor(observations[0, 1]).float() / 255.0).mean)  # the codes memory holds
    # (refined alone or beside other crops: the same steps, float rounding apart)
    np.testing.assert_allclose(predicted[0, 0], expected.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda o, a, p: (o[0], a, p), ValueError, "observations must have shape"),
        (lambda o, a, p: (o.astype(np.float32), a, p), TypeError, "uint8"),
        (lambda o, a, p: (o[:, :5], a, p), ValueError, "at least tau"),
        (lambda o, a, p: (o, a[:2], p), ValueError, "actions must have shape"),
        (lambda o, a, p: (o, a[:, :TAU], p), ValueError, "tau must lie"),
        (lambda o, a, p: (o, a, None), ValueError, "reads the true positions"),
        (lambda o, a, p: (o, a, p[:, :TAU]), ValueError, "positions must have shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(rollouts, change, error, match):
    observations, actions, positions = change(rollouts.observations, rollouts.actions, rollouts.positions)
    with pytest.raises(error, match=match):
        OracleMemory().predict(observations, actions, TAU, positions)


def test_learned_models_refuse_to_predict_before_fit(rollouts):
    with pytest.raises(RuntimeError, match="fit"):
        RSSM().predict(rollouts.observations, rollouts.actions, TAU)
    with pytest.raises(RuntimeError, match="fit"):
        DatasetMean().predict(rollouts.observations, rollouts.actions, TAU)


def test_budget_rejects_tau_outside_the_sequence():
    with pytest.raises(ValueError, match="tau"):
        Budget(seq_len=16, tau=16)


def test_action_lstm_refuses_a_budget_with_tau_below_two():
    with pytest.raises(ValueError, match="tau >= 2"):
        ActionLSTM(ActionLSTMConfig(hidden=8, embed=8)).fit(RolloutSampler(0), Budget(iterations=1, batch_size=2, seq_len=8, tau=1))


def test_memorisation_mean_matches_numpy(rollouts):
    predicted = MemorisationMean().predict(rollouts.observations, rollouts.actions, TAU)
    expected = rollouts.observations[:, :TAU].astype(np.float64).mean(axis=1) / 255.0
    assert predicted.shape == (3, 20 - TAU, 8, 8, 3)
    for step in range(predicted.shape[1]):
        np.testing.assert_allclose(predicted[:, step], expected, rtol=1e-6)


def test_canvas_oracle_on_a_hand_made_rollout():
    # A 3×3 one-channel-looking image, 2×2 window, step 1. Memorised: (0,0) then (0,1); predicted:
    # (0,0) (revisited: exact) and (1,1), whose bottom row was never seen (memorisation mean, 75).
    image = np.array([[0, 30, 60], [90, 120, 150], [180, 210, 240]], dtype=np.uint8)
    crop = lambda r, c: np.repeat(image[r:r + 2, c:c + 2, None], 3, axis=2)  # noqa: E731
    places = [(0, 0), (0, 1), (0, 0), (1, 1)]
    observations = np.stack([crop(r, c) for r, c in places])[None]
    positions = np.array([places])
    actions = np.array([[0, 4, 3, 2]])
    predicted = CanvasOracle(step_size=1).predict(observations[:, :2], actions, 2, positions)
    np.testing.assert_array_equal(predicted[0, 0], observations[0, 2] / np.float32(255))
    expected = np.repeat(np.array([[120, 150], [75, 75]], np.float32)[:, :, None], 3, axis=2) / 255
    np.testing.assert_allclose(predicted[0, 1], expected, rtol=1e-6)
    mse = ((predicted[0, 1] - observations[0, 3] / 255.0) ** 2).mean()
    assert mse == pytest.approx((135**2 + 165**2) / 4 / 255**2, rel=1e-6)


def test_canvas_oracle_is_zero_on_revisited_steps():
    rollouts = collect_rollouts(4, 60, seed=3, world=World(start="random"))
    tau = 20
    predicted = CanvasOracle().predict(rollouts.observations[:, :tau], rollouts.actions, tau, rollouts.positions)
    metrics = prediction_metrics(predicted, rollouts, tau)
    assert metrics.mse_revisited < 1e-12
    oracle_memory = prediction_metrics(
        OracleMemory().predict(rollouts.observations[:, :tau], rollouts.actions, tau, rollouts.positions), rollouts, tau)
    assert metrics.mse_novel < oracle_memory.mse_novel  # overlapping memories reveal part of novel crops


@pytest.mark.parametrize("make", [tiny_retrieval, tiny_pose], ids=["retrieval transformer", "pose retrieval"])
def test_memory_peers_predict_every_future_crop_in_one_pass_for_any_length(make):
    model = make()
    model.fit(RolloutSampler(0), Budget(iterations=2, batch_size=2, seq_len=12, tau=8))
    rollouts = collect_rollouts(2, 40, seed=4)  # longer than any training sequence
    predicted = model.predict(rollouts.observations[:, :10], rollouts.actions, 10)
    assert predicted.shape == (2, 30, 8, 8, 3) and np.isfinite(predicted).all()


def _walk_crops(cells):
    """Distinct 2×2 crops, one per cell id (cell ids → (1, T, 2, 2, 3) pixels)."""
    palette = torch.linspace(0.1, 0.9, 12)
    crops = torch.stack([torch.stack([palette[c], palette[(c + 5) % 12], palette[(c + 3) % 12],
                                      palette[(c + 7) % 12]]).view(2, 2, 1).expand(2, 2, 3) for c in cells])
    return crops.unsqueeze(0)


def test_the_place_loss_is_zero_for_true_places_and_penalises_collapsed_or_split_poses():
    cells = [0, 1, 2, 1, 0, 3, 0]  # back to cell 0 twice
    crops = _walk_crops(cells)
    places = torch.tensor([[0.0, 0], [1, 0], [2, 0], [1, 0], [0, 0], [0, 1], [0, 0]]).unsqueeze(0)
    assert place_loss(crops, places).item() == pytest.approx(0.0, abs=1e-6)
    assert place_loss(crops, places * 0.0).item() > 0.5  # every place at one pose: different crops pushed apart
    split = places.clone()
    split[0, 6] = torch.tensor([3.0, 3.0])  # the last return to cell 0 put elsewhere
    assert place_loss(crops, split).item() > 0.1


def test_the_place_loss_ignores_identical_flat_crops():
    """Two identical flat crops may be one place or two (a free move across a flat area): no pull, no push."""
    crops = _walk_crops([0, 1, 2])
    crops = torch.cat([crops, torch.full_like(crops[:, :2], 0.5)], 1)  # then two flat crops, identical
    places = torch.tensor([[0.0, 0], [1, 0], [2, 0], [3, 0], [4, 0]]).unsqueeze(0)
    assert place_loss(crops, places).item() == pytest.approx(0.0, abs=1e-6)  # flat steps 1 apart: not pulled
    together = places.clone()
    together[0, 4] = together[0, 3]
    assert place_loss(crops, together).item() == pytest.approx(0.0, abs=1e-6)  # nor pushed apart at one pose


def test_the_integrator_sums_moves_and_keeps_a_predicted_move_only_inside_the_memory_s_extent():
    integrator = Integrator(5, 2)
    with torch.no_grad():  # STAY nowhere, UP/DOWN ∓y, LEFT/RIGHT ∓x; a move whose view did not change nowhere
        table = torch.zeros(5, BIT_VALUES, 2)
        for action, vector in ((1, (0, -1)), (2, (0, 1)), (3, (-1, 0)), (4, (1, 0))):
            table[action, CHANGED] = torch.tensor(vector, dtype=torch.float)
            table[action, UNKNOWN] = torch.tensor(vector, dtype=torch.float)
        integrator.step.weight.copy_(table.view(-1, 2) / STEP_SCALE)
    actions = torch.tensor([[0, 4, 4, 2, 1, 4, 3, 3, 3]])  # memorised: right, right, blocked down, up; then predicted
    bits = torch.tensor([[UNKNOWN, CHANGED, CHANGED, UNCHANGED, CHANGED, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]])
    poses = integrator(actions, bits, tau=5)
    expected = [(0, 0), (1, 0), (2, 0), (2, 0), (2, -1), (2, -1), (1, -1), (0, -1), (0, -1)]
    # predicted from (2,-1): right leaves the memory's extent that way (x ≤ 2): stays; left to (1,-1) and (0,-1),
    # never memorised but inside the extent (the no-learning reference's visited box): kept; once more left: stays
    expected[5:] = [(2, -1), (1, -1), (0, -1), (0, -1)]
    assert poses[0].tolist() == [list(map(float, e)) for e in expected]
    poses = integrator(torch.tensor([[0, 4, 4, 2, 3, 3]]),
                       torch.tensor([[UNKNOWN, CHANGED, CHANGED, UNCHANGED, UNKNOWN, UNKNOWN]]), tau=4)
    assert poses[0, 4:].tolist() == [[1.0, 0.0], [0.0, 0.0]]  # back along the memorised row: both moves kept


def test_the_retrieval_peer_learns_a_3x3_world_below_the_memorisation_mean_in_seconds():
    world = World(image_size=14)  # crops 8, step 3: a 3×3 grid of cells
    sampler = RolloutSampler(0, world=world)
    torch.manual_seed(0)
    model = RetrievalTransformer(RetrievalTransformerConfig(d_model=32, layers=1, heads=2, feedforward=64,
                                                            hidden=64, pose=4, min_tau=8, train_horizon=16))
    model.fit(sampler, Budget(iterations=150, batch_size=16, seq_len=40, tau=24, lr=3e-3))
    test = collect_rollouts(32, 40, seed=9, world=world)
    learned = prediction_metrics(model.predict(test.observations[:, :24], test.actions, 24), test, 24)
    trivial = prediction_metrics(MemorisationMean().predict(test.observations[:, :24], test.actions, 24), test, 24)
    assert learned.mse_revisited < 0.8 * trivial.mse_revisited


def test_a_second_fit_continues_the_run_and_snapshots_restore_earlier_weights():
    model = ActionLSTM(ActionLSTMConfig(hidden=8, embed=8))
    sampler = RolloutSampler(0)
    model.fit(sampler, Budget(iterations=2, batch_size=2, seq_len=8, tau=6, snapshot_seconds=[0.0]))
    early = {k: v.clone() for k, v in model.net.state_dict().items()}
    model.fit(sampler, Budget(iterations=4, batch_size=2, seq_len=8, tau=6))
    assert model.iterations_done == 4 and len(model.history) == 4
    assert model.snapshots[0.0]["iterations"] == 1
    model.use_snapshot(0.0)
    assert not all(torch.equal(early[k], v) for k, v in model.net.state_dict().items())  # 1 step, not 2

"""Training, checkpoints, resume, evaluation protocol and the CLI, on tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gtmsm_env.rollouts import Rollouts
from gtmsm_model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from gtmsm_model.cli import main as cli_main
from gtmsm_model.data import RolloutSampler, heldout_rollouts
from gtmsm_model.evaluate import affine_fit_rms, evaluate_gtmsm, prediction_metrics, revisited_mask
from gtmsm_model.train import make_config, sequence_length, train


def debug_config(tmp_path: Path, **overrides):
    return make_config("debug", out_dir=str(tmp_path), progress=False, **overrides)


def test_tiny_training_lowers_the_loss(tmp_path: Path) -> None:
    config = debug_config(tmp_path, vae_warmup_iters=0, iterations=40, curriculum_iters=0,
                          gate_open_iters=0, kl_warmup_iters=0, eval_every=0, seq_len=24, tau=16)
    sampler = RolloutSampler(123)
    batch = sampler.sample(8, 24, key=0)
    torch.manual_seed(0)
    from gtmsm_model.model import GTMSM

    def loss_of(model: GTMSM) -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return model.loss(batch.observations, batch.actions, tau=16)["loss"].item()

    torch.manual_seed(config.run.seed)
    before = loss_of(GTMSM(config.model))
    result = train(config)
    after = loss_of(result.model)
    assert after < before - 20, (before, after)


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    result = train(debug_config(tmp_path))
    loaded = load_model(tmp_path / "checkpoint.pt")
    rollouts = heldout_rollouts(3, 48, seed=5)
    obs, actions = torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions)
    first = result.model.predict(obs, actions, 32).pixels
    second = loaded.predict(obs, actions, 32).pixels
    assert torch.equal(first, second)


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = train(debug_config(tmp_path / "straight"))
    # "Interrupted": the same run stopped after 15 of its 22 steps, then resumed.
    interrupted_dir = tmp_path / "interrupted"
    config = debug_config(interrupted_dir)
    partial = debug_config(interrupted_dir, iterations=config.schedule.iterations - 7)
    train(partial)
    # The partial run's config differs only in length; resuming continues from its step.
    resumed = train(debug_config(interrupted_dir, resume=True))
    assert resumed.iterations == straight.iterations
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_refuses_a_checkpoint_from_another_run(tmp_path: Path) -> None:
    train(debug_config(tmp_path))
    with pytest.raises(CheckpointError, match="seed"):
        train(debug_config(tmp_path, seed=9, resume=True))


def test_corrupt_truncated_and_foreign_checkpoints_raise_clear_errors(tmp_path: Path) -> None:
    train(debug_config(tmp_path))
    good = (tmp_path / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable GTM-SM checkpoint"):
        load_model(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a GTM-SM checkpoint"):
        load_model(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/gtmsm_exploit_marker"),))


def test_checkpoint_with_arbitrary_objects_is_never_unpickled(tmp_path: Path) -> None:
    marker = Path("/tmp/gtmsm_exploit_marker")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "gtmsm-checkpoint", "version": 1, "payload": Exploit()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": {}, "model": {}, "step": 1})

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model_config": {}, "model": {}, "step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def hand_made_rollouts(positions=None, actions=None) -> Rollouts:
    """One image, a known walk (default: right, right, left, left (memorise 3), then revisit and go new)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    if positions is None:
        positions = np.array([[4, 4], [4, 5], [4, 6], [4, 5], [4, 4], [3, 4], [4, 4]])
        actions = np.array([0, 4, 4, 3, 3, 1, 2])
    observations = np.stack([image[3 * r:3 * r + 8, 3 * c:3 * c + 8] for r, c in positions])
    return Rollouts(
        observations=observations[None], actions=actions[None], positions=positions[None],
        wall_hits=np.zeros((1, len(positions)), bool), images=image[None],
        metadata={"image_size": 32, "crop_size": 8, "step_size": 3},
    )


def test_evaluation_on_a_hand_made_rollout_gives_the_known_metrics() -> None:
    rollouts = hand_made_rollouts()
    tau = 3
    assert revisited_mask(rollouts.positions, tau).tolist() == [[True, True, False, True]]
    truth = rollouts.observations[0, tau:].astype(np.float32) / 255
    # The oracle memory: the crop stored at the true position → MSE 0 on revisited steps.
    oracle = truth.copy()
    oracle[2] = 0.5  # never seen: predict grey
    metrics = prediction_metrics(oracle[None], rollouts, tau, bin_size=2)
    assert metrics.mse_revisited == 0 and metrics.psnr_revisited == float("inf")
    assert metrics.mse_novel == pytest.approx(((truth[2] - 0.5) ** 2).mean(), rel=1e-6)
    assert metrics.fraction_revisited == 0.75
    assert metrics.horizon.bins == [[1, 2], [3, 4]]
    assert metrics.horizon.mse_revisited == [0.0, 0.0]
    assert metrics.ssim < 1
    assert prediction_metrics(truth[None], rollouts, tau).ssim == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        prediction_metrics(truth[None, :2], rollouts, tau)


def test_affine_fit_recovers_an_affine_state_map() -> None:
    rng = np.random.default_rng(0)
    positions = rng.integers(0, 9, (4, 50, 2))
    states = positions @ np.array([[0.0, 2.0], [-1.5, 0.0]]) + 3.0
    rms, _ = affine_fit_rms(states, positions, 30)
    assert rms < 1e-9
    rms_noisy, _ = affine_fit_rms(states + rng.normal(0, 1, states.shape), positions, 30)
    assert rms_noisy > 0.1


def test_evaluate_gtmsm_reports_every_protocol_metric(tmp_path: Path) -> None:
    result = train(debug_config(tmp_path))
    metrics = evaluate_gtmsm(result.model, heldout_rollouts(4, 64, seed=1), 32).to_dict()
    for key in ("mse", "psnr", "mse_revisited", "mse_novel", "fraction_revisited", "ssim",
                "vae_mse_revisited", "knn_hit_rate", "smap_rms", "gate_ratio", "drift_ratio",
                "nll_bound_nats_per_step", "horizon"):
        assert key in metrics
    assert 0 <= metrics["knn_hit_rate"] <= 1


def test_curriculum_grows_to_the_full_length() -> None:
    config = make_config("quick")
    schedule = config.schedule
    assert sequence_length(config, 0) == schedule.curriculum_start
    assert sequence_length(config, schedule.curriculum_iters) == schedule.seq_len
    assert sequence_length(config, 10 * schedule.curriculum_iters) == schedule.seq_len


def test_presets_and_overrides_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        make_config("quick", zdim=3)
    with pytest.raises(ValueError, match="tau"):
        make_config("quick", tau=400)


def test_dataset_file_training_and_short_dataset_error(tmp_path: Path) -> None:
    from gtmsm_env.rollouts import collect_rollouts

    collect_rollouts(6, 40, seed=3).save(tmp_path / "train.npz")
    result = train(debug_config(tmp_path / "run", dataset=str(tmp_path / "train.npz")))
    assert result.iterations == 22
    collect_rollouts(2, 20, seed=3).save(tmp_path / "short.npz")
    with pytest.raises(ValueError, match="fewer than `seq_len` 40"):
        train(debug_config(tmp_path / "run2", dataset=str(tmp_path / "short.npz")))


def test_cli_run_predict_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli_main(["run", "--preset", "debug", "--out-dir", str(out), "--no-progress"]) == 0
    for name in ("checkpoint.pt", "metrics.json", "horizon.png", "prediction.png", "state_map.png"):
        assert (out / name).exists(), name
    assert "k-NN hit rate" in capsys.readouterr().out
    checkpoint = str(out / "checkpoint.pt")
    assert cli_main(["predict", "--checkpoint", checkpoint, "--eval-tau", "32", "--eval-horizon", "16",
                     "--out", str(tmp_path / "p.gif")]) == 0
    assert (tmp_path / "p.gif").exists()
    assert cli_main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert cli_main(["predict", "--checkpoint", checkpoint, "--eval-tau", "32", "--eval-horizon", "16",
                     "--out", str(tmp_path / "p.txt")]) == 2


def exact_state_model():
    """A GTM-SM whose transition is the true grid walk: action 2/1 = row ±1, 4/3 = col ±1, the
    seed's absolute gate held open (no blocked moves, whatever the walk)."""
    from gtmsm_model.model import GTMSM, GTMSMConfig

    model = GTMSM(GTMSMConfig(z_dim=4, vae_hidden=16, gate_hidden=4, knn_k=2, wall_model="absolute"))
    with torch.no_grad():
        model.transition.directions.copy_(torch.eye(2))
        for layer in model.transition.gate_net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
                layer.bias.zero_()
        model.transition.gate_net[-1].bias.fill_(30.0)  # sigmoid(30) = 1 in float32
    return model.eval()


def test_state_metrics_on_a_hand_made_rollout_with_an_exact_state_map() -> None:
    # Memorise a 2x2 square (so the affine fit is determined), then revisit twice and go somewhere new.
    positions = np.array([[4, 4], [4, 5], [3, 5], [3, 4], [4, 4], [4, 5], [5, 5]])
    actions = np.array([0, 4, 1, 3, 2, 4, 2])
    rollouts = hand_made_rollouts(positions, actions)
    evaluation = evaluate_gtmsm(exact_state_model(), rollouts, 4, bin_size=2)
    scores, diagnostics = evaluation.scores, evaluation.diagnostics
    assert scores.fraction_revisited == pytest.approx(2 / 3)
    assert diagnostics.knn_hit_rate == 1.0  # every revisited step retrieves a key at its true position
    assert diagnostics.smap_rms < 1e-6
    assert scores.drift_ratio == pytest.approx(1.0)  # horizon 3: first and last 64 steps coincide
    # No wall hits: the wall-gate ratio is undefined, not a crash.
    assert diagnostics.gate_free == pytest.approx(1.0) and np.isnan(diagnostics.gate_ratio)


def test_state_metrics_with_a_closed_gate_do_not_divide_by_zero() -> None:
    model = exact_state_model()
    with torch.no_grad():
        model.transition.gate_net[-1].bias.fill_(-200.0)  # sigmoid(-200) = 0 exactly in float32
    rollouts = hand_made_rollouts()
    rollouts.wall_hits[0, 1] = True
    diagnostics = evaluate_gtmsm(model, rollouts, 3, bin_size=2).diagnostics
    assert diagnostics.gate_free == 0 and np.isnan(diagnostics.gate_ratio)


def test_evaluation_rejects_a_nonpositive_tau() -> None:
    model, rollouts = exact_state_model(), hand_made_rollouts()
    for tau in (0, -2):
        with pytest.raises(ValueError, match="tau must be >= 1"):
            evaluate_gtmsm(model, rollouts, tau)
        with pytest.raises(ValueError, match="tau must be >= 1"):
            model.predict(torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions), tau)


def test_dataset_with_another_crop_size_is_a_clear_error(tmp_path: Path) -> None:
    from gtmsm_env.rollouts import collect_rollouts
    from gtmsm_env.world import World

    collect_rollouts(2, 48, seed=3, world=World(image_size=36, crop_size=12)).save(tmp_path / "c12.npz")
    with pytest.raises(ValueError, match="crop"):
        train(debug_config(tmp_path / "run", dataset=str(tmp_path / "c12.npz")))


def test_random_crops_returns_the_requested_count() -> None:
    from gtmsm_model.train import random_crops

    assert random_crops(RolloutSampler(0), 20, key=0).shape[0] == 20


def test_cli_device_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(debug_config(tmp_path))
    checkpoint = str(tmp_path / "checkpoint.pt")
    assert cli_main(["evaluate", "--checkpoint", checkpoint, "--device", "gpu"]) == 2
    assert "not a torch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        for command in ("evaluate", "predict"):
            assert cli_main([command, "--checkpoint", checkpoint, "--device", "cuda"]) == 2
            error = capsys.readouterr().err
            assert "CUDA is not available" in error and "corrupt" not in error


def test_sequence_augmentation_keeps_blocked_moves_and_revisits_exact() -> None:
    """One colour map per sequence: equal crops stay equal (blocked moves, revisits), values stay in
    [0, 1], and different sequences get different maps; the crop version may also turn crops."""
    from gtmsm_model.train import augment_pixels

    torch.manual_seed(0)
    sequences = torch.rand(6, 5, 8, 8, 3)
    sequences[:, 2] = sequences[:, 1]  # a blocked move: the view did not change
    out = augment_pixels(sequences, geometric=False)
    assert out.shape == sequences.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert torch.equal(out[:, 2], out[:, 1])
    twins = augment_pixels(sequences[:1].expand(6, -1, -1, -1, -1), geometric=False)
    assert len({tuple(twin.flatten()[:8].tolist()) for twin in twins}) > 1  # one map per sequence, not one per batch
    crops = torch.rand(64, 8, 8, 3)
    turned = augment_pixels(crops, geometric=True)
    assert turned.shape == crops.shape and 0.0 <= turned.min() and turned.max() <= 1.0


def test_augmentation_is_on_for_quick_and_off_for_the_seed_presets() -> None:
    assert make_config("quick").schedule.augment_crops and make_config("quick").schedule.augment_sequences
    for preset in ("paper", "seed-gate"):
        schedule = make_config(preset).schedule
        assert not schedule.augment_crops and not schedule.augment_sequences


def test_quick_states_the_defaults_and_every_preset_is_nested() -> None:
    from gtmsm_model.config import TrainConfig, merge
    from gtmsm_model.presets import PRESETS

    assert merge(TrainConfig(), PRESETS["quick"]) == TrainConfig()  # quick is explicit, and the defaults
    for name, preset in PRESETS.items():
        assert set(preset) <= {"world", "model", "schedule", "run"}, name
        make_config(name)  # every preset is a valid config


def test_the_learned_preset_runs_long_enough_for_its_gate_to_sharpen_and_a_shorter_run_says_so() -> None:
    from gtmsm_model.cli import short_schedule_note
    from gtmsm_model.wall_models import LearnedLocaliser

    learned = make_config("learned")
    assert learned.schedule.iterations > learned.model.gate_open_iters + LearnedLocaliser.SHARPEN_ITERS
    assert short_schedule_note(learned) is None and short_schedule_note(make_config("quick")) is None
    note = short_schedule_note(make_config("quick", wall_model="learned"))
    assert note is not None and "main iteration 500" in note and "400 iterations" in note


def test_config_json_and_the_checkpoint_hold_the_nested_config(tmp_path: Path) -> None:
    import json

    from gtmsm_model.config import TrainConfig

    config = debug_config(tmp_path, iterations=2, eval_every=0)
    train(config)
    written = json.loads((tmp_path / "config.json").read_text())["config"]
    assert set(written) == {"preset", "world", "model", "schedule", "run"}
    assert written["schedule"]["iterations"] == 2 and written["world"]["step_size"] == 3
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["version"] == 2 and TrainConfig.from_dict(payload["train_config"]) == config


def test_a_version_1_checkpoint_with_a_flat_config_still_loads_and_resumes(tmp_path: Path) -> None:
    from dataclasses import asdict

    from gtmsm_model.train import check_resumable

    config = debug_config(tmp_path)
    result = train(config)
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    flat = {**config.flat(), "image_width": None}
    v1 = {**payload, "version": 1, "train_config": flat, "model_config": asdict(result.model.config)}
    torch.save(v1, tmp_path / "v1.pt")
    loaded = load_checkpoint(tmp_path / "v1.pt")
    assert loaded["version"] == 2 and loaded["train_config"]["schedule"]["tau"] == config.schedule.tau
    assert loaded["train_config"]["world"]["image_size"] == 32
    check_resumable(loaded, config, tmp_path / "v1.pt")  # the same run
    model = load_model(tmp_path / "v1.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 result.model.state_dict().values(), strict=True))


def test_help_groups_the_flags_by_world_model_schedule_and_run(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = capsys.readouterr().out
    text = text[text.index("\nworld:"):]  # past the usage line
    positions = [text.index(f"\n{group}:") for group in ("world", "model", "schedule", "run")]
    assert positions == sorted(positions)
    assert text.index("--image-size") < positions[1] < text.index("--z-dim") < positions[2]
    assert positions[2] < text.index("--iterations") < positions[3] < text.index("--out-dir")

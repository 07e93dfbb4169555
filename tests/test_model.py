"""GTM-SM modules: shapes, retrieval, mixture weights, the KL estimator, gradients, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gtmsm_model.model import (
    GTMSM,
    Gaussian,
    GTMSMConfig,
    gaussian_kl,
    memory_log_weights,
    mixture_kl_bound,
    nearest_keys,
    pairwise_gaussian_kl,
)

TINY = dict(z_dim=6, vae_hidden=24, gate_hidden=8, knn_k=3)


def random_batch(batch: int = 3, steps: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    observations = torch.randint(0, 256, (batch, steps, 8, 8, 3), dtype=torch.uint8, generator=generator)
    actions = torch.randint(0, 5, (batch, steps), generator=generator)
    actions[:, 0] = 0
    return observations, actions


def test_shapes_and_dtypes_through_every_module() -> None:
    model = GTMSM(GTMSMConfig(**TINY))
    observations, actions = random_batch()
    pixels = model.to_pixels(observations)
    assert pixels.dtype == torch.float32 and 0 <= pixels.min() and pixels.max() <= 1
    posterior = model.vae.encode(pixels)
    assert posterior.mean.shape == posterior.log_std.shape == (3, 20, 6)
    decoded = model.vae.decode(posterior.mean)
    assert decoded.shape == (3, 20, 8, 8, 3) and decoded.dtype == torch.float32
    assert model.vae.log_likelihood(pixels, decoded).shape == (3, 20)
    states, gates = model.infer_states(pixels, actions)
    assert states.shape == (3, 20, 2) and gates.shape == (3, 20)
    assert torch.all(states[:, 0] == 0)
    parts = model.loss(observations, actions, tau=12)
    assert all(value.dim() == 0 and torch.isfinite(value) for value in parts.values())
    prediction = model.predict(observations, actions, tau=12)
    assert prediction.pixels.shape == (3, 8, 8, 8, 3)
    assert prediction.neighbours.shape == prediction.log_weights.shape == (3, 8, 3)
    sampled = model.predict(observations, actions, tau=12, mode="sample")
    assert sampled.pixels.shape == (3, 8, 8, 8, 3)


def test_action_vectors_are_tied_and_unit_length() -> None:
    transition = GTMSM(GTMSMConfig(**TINY)).transition
    matrix = transition.action_matrix()
    assert torch.equal(matrix[0], torch.zeros(2))  # stay
    torch.testing.assert_close(matrix[1], -matrix[2])  # up = -down
    torch.testing.assert_close(matrix[3], -matrix[4])  # left = -right
    torch.testing.assert_close(matrix[1:].norm(dim=-1), torch.ones(4))


def test_open_gate_states_are_the_sum_of_move_vectors() -> None:
    model = GTMSM(GTMSMConfig(**TINY, wall_model="absolute", gate_open_iters=2))
    actions = torch.tensor([[0, 4, 4, 2, 0, 3]])
    pixels = torch.rand(1, 6, 8, 8, 3)
    matrix = model.transition.action_matrix()
    expected = torch.cumsum(matrix[actions[0, 1:]], 0)
    model.set_iteration(1)  # within the warm-up: the training walk's gate is held open ...
    walk = model.wall_model.infer(model.transition, pixels, actions, for_training=True)
    torch.testing.assert_close(walk.states[0, 1:], expected)
    assert torch.equal(walk.gates, torch.ones(1, 6))
    gated, gates = model.infer_states(pixels, actions)  # ... an observed walk's is not
    assert (gates[0, 1:] < 1).all() and not torch.allclose(gated[0, 1:], expected)
    model.set_iteration(2)  # after the warm-up the training walk is gated too
    torch.testing.assert_close(model.wall_model.infer(model.transition, pixels, actions, for_training=True).states,
                               gated)


def test_retrieval_returns_the_right_neighbours_on_hand_built_keys() -> None:
    keys = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [0.9, 0.1]]])
    queries = torch.tensor([[[1.0, 0.0], [4.0, 4.0]]])
    distances, indices = nearest_keys(queries, keys, k=2)
    assert indices[0, 0].tolist() == [1, 4]
    torch.testing.assert_close(distances[0, 0], torch.tensor([0.0, 2**0.5 * 0.1]))
    assert indices[0, 1, 0].item() == 3


def test_mixture_weights_follow_the_formula() -> None:
    distances = torch.tensor([[0.0, 0.5, 2.0]])
    delta = 1e-4
    weights = memory_log_weights(distances.square(), delta).exp()
    raw = 1.0 / (distances.square() + delta)
    torch.testing.assert_close(weights, raw / raw.sum())
    masked = memory_log_weights(distances.square(), delta, torch.tensor([[False, True, True]])).exp()
    assert masked[0, 0] == 0
    torch.testing.assert_close(masked[0, 1:], raw[0, 1:] / raw[0, 1:].sum())


def test_kl_estimator_with_one_component_is_the_closed_form_kl() -> None:
    generator = torch.Generator().manual_seed(1)
    q = Gaussian(torch.randn(2, 4, 5, generator=generator), 0.3 * torch.randn(2, 4, 5, generator=generator))
    p = Gaussian(torch.randn(2, 1, 5, generator=generator), 0.3 * torch.randn(2, 1, 5, generator=generator))
    component = pairwise_gaussian_kl(q, p)  # (2, 4, 1)
    bound = mixture_kl_bound(component, torch.zeros(2, 4, 1))
    closed = gaussian_kl(q, Gaussian(p.mean.expand(-1, 4, -1), p.log_std.expand(-1, 4, -1)))
    torch.testing.assert_close(bound, closed, rtol=1e-5, atol=1e-5)
    # KL with torch.distributions as an independent reference
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(q.mean, q.log_std.exp()),
        torch.distributions.Normal(p.mean, p.log_std.exp()),
    ).sum(-1)
    torch.testing.assert_close(closed, reference, rtol=1e-5, atol=1e-5)


def test_mixture_bound_is_an_upper_bound_on_a_monte_carlo_kl() -> None:
    torch.manual_seed(0)
    q = Gaussian(torch.zeros(1, 1, 2), torch.full((1, 1, 2), -0.5))
    components = Gaussian(torch.tensor([[[1.0, 0.0], [-1.0, 0.5], [0.2, 0.2]]]), torch.zeros(1, 3, 2))
    log_weights = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]]))
    bound = mixture_kl_bound(pairwise_gaussian_kl(q, components), log_weights).item()
    z = q.mean + q.log_std.exp() * torch.randn(200_000, 1, 2)
    log_q = torch.distributions.Normal(q.mean, q.log_std.exp()).log_prob(z).sum(-1).squeeze(-1)
    log_components = torch.distributions.Normal(components.mean, components.log_std.exp()).log_prob(z).sum(-1)
    log_p = torch.logsumexp(log_weights[0] + log_components, dim=-1)
    monte_carlo = (log_q - log_p).mean().item()
    assert 0 < monte_carlo <= bound + 1e-3
    convex_bound = (log_weights.exp() * pairwise_gaussian_kl(q, components)).sum().item()
    assert bound <= convex_bound


@pytest.mark.parametrize("wall_model", ["edges", "absolute"])
def test_gradients_reach_m_and_the_wall_gate(wall_model: str) -> None:
    model = GTMSM(GTMSMConfig(**TINY, wall_model=wall_model))
    observations, actions = random_batch(steps=30)
    model.loss(observations, actions, tau=20)["loss"].backward()
    assert model.transition.directions.grad is not None
    assert model.transition.directions.grad.abs().sum() > 0
    if wall_model == "edges":
        return  # no learned gate: blocked moves are read off the observations
    gate_grads = [p.grad for p in model.transition.gate_net.parameters()]
    assert all(g is not None for g in gate_grads)
    assert sum(g.abs().sum() for g in gate_grads) > 0


def test_repeated_positions_give_finite_gradients() -> None:
    # Stay actions put several keys at exactly the same state (d = 0).
    model = GTMSM(GTMSMConfig(**TINY))
    observations, _ = random_batch(steps=12)
    actions = torch.zeros(3, 12, dtype=torch.long)
    model.loss(observations, actions, tau=8)["loss"].backward()
    for parameter in model.parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all()


@pytest.mark.parametrize(
    ("observations", "actions", "error", "match"),
    [
        (torch.zeros(2, 10, 8, 8), torch.zeros(2, 10, dtype=torch.long), ValueError, "observations must have shape"),
        (torch.zeros(2, 10, 8, 8, 3, dtype=torch.uint8), torch.zeros(3, 10, dtype=torch.long), ValueError, "actions must have shape"),
        (torch.zeros(2, 10, 8, 8, 3, dtype=torch.uint8), torch.zeros(2, 10), TypeError, "integer"),
        (torch.zeros(2, 10, 8, 8, 3, dtype=torch.uint8), torch.full((2, 10), 7), ValueError, r"actions must lie in \[0, 5\)"),
        (torch.zeros(2, 10, 8, 8, 3, dtype=torch.int32), torch.zeros(2, 10, dtype=torch.long), TypeError, "uint8 or float"),
    ],
)
def test_bad_input_raises_a_clear_error(observations, actions, error, match) -> None:
    model = GTMSM(GTMSMConfig(**TINY))
    with pytest.raises(error, match=match):
        model.loss(observations, actions, tau=5)


def test_bad_tau_and_config_raise() -> None:
    model = GTMSM(GTMSMConfig(**TINY))
    observations, actions = random_batch()
    with pytest.raises(ValueError, match="tau"):
        model.loss(observations, actions, tau=0)
    with pytest.raises(ValueError, match="extend past tau"):
        model.predict(observations, actions, tau=20)
    with pytest.raises(ValueError, match="stay action or in exactly one opposite pair"):
        GTMSMConfig(opposite_actions=((1, 2),))
    with pytest.raises(ValueError, match="mode"):
        model.predict(observations, actions, tau=10, mode="best")


def test_model_config_defaults_are_the_quick_preset() -> None:
    from gtmsm_model.train import make_config

    assert make_config("quick").model == GTMSMConfig()


def test_the_seeds_absolute_gate_still_trains_on_the_debug_preset(tmp_path) -> None:
    from gtmsm_model.train import make_config, train

    config = make_config("debug", out_dir=str(tmp_path), progress=False, wall_model="absolute", novel_view="knn")
    model = GTMSM(config.model)
    initial_gate = [p.detach().clone() for p in model.transition.gate_net.parameters()]
    result = train(config)
    assert result.model.config.wall_model == "absolute"
    trained_gate = list(result.model.transition.gate_net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(initial_gate, trained_gate, strict=True))
    assert result.history and all(math.isfinite(record["mse_revisited"]) for record in result.history)
    observations, actions = random_batch(steps=20)
    prediction = result.model.predict(observations, actions, tau=12)
    gates = prediction.gates[:, 1:]  # a soft learned gate, not a hard decision
    assert prediction.gates.shape == (3, 20) and ((gates > 0) & (gates < 1)).all()


@pytest.mark.parametrize(("field", "value", "match"), [
    ("wall_model", "gate", "wall_model"), ("novel_view", "paint", "novel_view"), ("edge_radius", 0.0, "edge_radius"),
    ("untried_edges", "guess", "untried_edges"), ("refine_steps", -1, "refine_steps"), ("refine_lr", 0.0, "refine_lr"),
])
def test_bad_memory_settings_raise(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GTMSMConfig(**{field: value})


def _upgraded(saved: dict) -> GTMSMConfig:
    """The model config a version-1 checkpoint's ``model_config`` ``saved`` loads as."""
    from gtmsm_model.checkpoint import upgrade_v1

    return GTMSMConfig.from_dict(upgrade_v1({"version": 1, "model_config": saved})["model_config"])


def test_checkpoints_from_before_the_wall_models_load_as_the_absolute_gate_model() -> None:
    from dataclasses import asdict

    saved = asdict(GTMSMConfig(**TINY))
    for name in ("wall_model", "novel_view", "ambiguity_margin", "loop_closure_threshold", "edge_radius",
                 "canvas_radius"):
        saved.pop(name)
    config = _upgraded(saved)
    assert config.wall_model == "absolute" and config.novel_view == "knn"
    assert GTMSMConfig.from_dict(asdict(GTMSMConfig(**TINY))) == GTMSMConfig(**TINY)


def test_checkpoints_from_before_the_span_prior_and_refined_codes_load_unchanged() -> None:
    from dataclasses import asdict

    saved = asdict(GTMSMConfig(**TINY))
    for name in ("untried_edges", "refine_steps", "refine_lr"):
        saved.pop(name)
    config = _upgraded(saved)
    assert config.untried_edges == "extent" and config.refine_steps == 0  # as they were trained and measured
    from gtmsm_model.checkpoint import upgrade_model_state

    state = GTMSM(config).state_dict()
    state.pop("wall_model.span_counts")
    state.pop("wall_model.wall_counts")
    model = GTMSM(config)
    with pytest.raises(RuntimeError, match="wall_model.span_counts"):
        model.load_state_dict(state)  # the model loads only complete, current state dicts
    model.load_state_dict(upgrade_model_state(state, asdict(config)))  # no span counts saved: the span is unknown
    assert not model.wall_model.span_counts.any() and model.world_span() is None
    assert not model.wall_model.wall_counts.any() and model.wall_model.wall_behind_cost() == 0.0


def test_refined_codes_reconstruct_better_than_the_encoders_mean() -> None:
    torch.manual_seed(0)
    model = GTMSM(GTMSMConfig(**{**TINY, "refine_steps": 30})).eval()
    pixels = model.to_pixels(random_batch(2, 10)[0])
    encoder_mean = model.vae.encode(pixels).mean
    with torch.no_grad():
        refined = model.vae.infer(pixels)
        in_chunks = model.vae.infer(pixels, chunk=7)
    assert refined.mean.shape == encoder_mean.shape
    torch.testing.assert_close(refined.log_std, model.vae.encode(pixels).log_std)
    torch.testing.assert_close(in_chunks.mean, refined.mean, atol=1e-5, rtol=0)  # each crop on its own
    error = lambda z: (model.vae.decode(z) - pixels).square().mean().item()  # noqa: E731
    assert error(refined.mean) < 0.99 * error(encoder_mean)  # (an untrained decoder: not much it can reach)
    assert all(parameter.grad is None for parameter in model.parameters())  # the decoder is left alone
    torch.testing.assert_close(model.reconstruct(pixels), model.vae.decode(refined.mean), atol=1e-5, rtol=0)
    with torch.inference_mode():  # refining needs gradients: it makes its own
        torch.testing.assert_close(model.vae.infer(pixels).mean, refined.mean, atol=1e-5, rtol=0)
    model.config.refine_steps = 0
    torch.testing.assert_close(model.vae.infer(pixels).mean, encoder_mean)


def test_training_counts_the_world_span_and_evaluation_does_not() -> None:
    from gtmsm_env import collect_rollouts

    rollouts = collect_rollouts(4, 300, seed=5)
    observations, actions = torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions)
    model = GTMSM(GTMSMConfig(**TINY))
    counts = model.wall_model.span_counts
    _, states = model.loss_and_states(observations, actions, tau=200)
    assert not counts.any()  # the loss changes nothing: the trainer counts the walks it returns
    model.count_spans(states)
    assert counts.sum(1).tolist() == [4, 4]  # one walk per axis
    spans = rollouts.positions.max(1) - rollouts.positions.min(1)  # (walks, (row, column)): the true spans
    expected = torch.zeros_like(counts)
    for walk_spans in spans:  # pair 0 moves up/down (rows), pair 1 left/right (columns)
        expected[0, walk_spans[0]] += 1
        expected[1, walk_spans[1]] += 1
    assert torch.equal(counts, expected)
    model.eval()
    model.loss(observations, actions, tau=200)
    model.predict(observations, actions, tau=200)
    assert counts.sum().item() == 8
    model.count_spans(states, reduce=lambda c: 2 * c)  # as if summed over two processes
    assert torch.equal(counts, 3 * expected)
    # With the walks' actions it also counts their blocked moves: border walls only, so none of them
    # tried to reach a cell the walk stood on.
    walls = model.wall_model.wall_counts
    assert not walls.any() and model.wall_model.wall_behind_cost() == 0.0
    model.count_spans(states, actions=actions)
    hits = int(np.asarray(rollouts.wall_hits)[:, 1:].sum())
    assert hits > 0 and walls.tolist() == [hits, 0]
    assert model.wall_model.wall_behind_cost() == pytest.approx(math.log(hits + 2))


def test_transition_noise_does_not_stretch_the_learned_world_span() -> None:
    from gtmsm_env import collect_rollouts

    rollouts = collect_rollouts(4, 300, seed=5)
    observations, actions = torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions)
    quiet, noisy = GTMSM(GTMSMConfig(**TINY)), GTMSM(GTMSMConfig(**TINY, state_noise=0.2))
    noisy.load_state_dict(quiet.state_dict())
    for model in (quiet, noisy):
        parts, states = model.loss_and_states(observations, actions, tau=200)
        model.count_spans(states)
    assert torch.equal(noisy.wall_model.span_counts, quiet.wall_model.span_counts)
    assert quiet.wall_model.span_counts.any()


def test_resuming_a_run_from_before_the_span_prior_names_the_changed_settings(tmp_path) -> None:
    from dataclasses import asdict

    from gtmsm_model.checkpoint import CheckpointError, upgrade_v1
    from gtmsm_model.train import check_resumable, make_config

    config = make_config("debug", out_dir=str(tmp_path))
    old_train, old_model = config.flat(), asdict(config.model)  # a version-1 checkpoint's flat config
    for saved in (old_train, old_model):
        for name in ("untried_edges", "refine_steps", "refine_lr"):
            saved.pop(name, None)
    payload = upgrade_v1({"version": 1, "train_config": old_train, "model_config": old_model, "step": 3})
    with pytest.raises(CheckpointError, match="`untried_edges` extent .this run: span.*`refine_steps` 0"):
        check_resumable(payload, config, tmp_path / "checkpoint.pt")
    # Resumed with the settings it was trained with: fine.
    check_resumable(payload, make_config("debug", out_dir=str(tmp_path), untried_edges="extent", refine_steps=0),
                    tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("wall_model", ["edges", "absolute"])
def test_checkpoints_with_the_older_state_dict_names_load_and_predict_the_same(wall_model: str) -> None:
    torch.manual_seed(0)
    config = GTMSMConfig(**TINY, wall_model=wall_model, refine_steps=0)
    model = GTMSM(config).eval()
    if wall_model == "edges":
        model.wall_model.span_counts[:, 3] = 2
    observations, actions = random_batch(steps=20)
    old_layout = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith("wall_model.")}
    old_layout["span_counts"] = getattr(model.wall_model, "span_counts", torch.zeros(2, 256, dtype=torch.long))
    assert set(old_layout) == {"span_counts", "transition.directions", *(f"transition.gate_net.{i}.{p}" for i in (0, 2, 4)
                               for p in ("weight", "bias")), *(f"vae.{part}.{i}.{p}" for part in ("encoder", "decoder")
                               for i in (0, 2, 4) for p in ("weight", "bias"))}
    from dataclasses import asdict

    from gtmsm_model.checkpoint import upgrade_model_state

    loaded = GTMSM(config).eval()
    with pytest.raises(RuntimeError, match="span_counts"):
        loaded.load_state_dict(old_layout)  # the model itself knows only current names
    loaded.load_state_dict(upgrade_model_state(old_layout, asdict(config)))  # strict: every name maps
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    expected, got = (m.predict(observations, actions, tau=12) for m in (model, loaded))
    assert torch.equal(expected.pixels, got.pixels) and torch.equal(expected.gates, got.gates)


@pytest.mark.parametrize("version", [1, 2])
def test_a_checkpoint_file_with_the_older_state_dict_names_loads(tmp_path, version: int) -> None:
    from dataclasses import asdict

    from gtmsm_model.checkpoint import load_model, save_checkpoint

    model = GTMSM(GTMSMConfig(**TINY, refine_steps=0)).eval()
    model.wall_model.span_counts[:, 5] = 3
    state = model.state_dict()
    state["span_counts"] = state.pop("wall_model.span_counts")  # the name before the wall models
    save_checkpoint(tmp_path / "old.pt", {"model_config": asdict(model.config), "model": state, "step": 1})
    if version == 1:  # save_checkpoint tags the current version: write the old one's tag
        payload = torch.load(tmp_path / "old.pt", weights_only=True)
        torch.save({**payload, "version": 1}, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert torch.equal(loaded.wall_model.span_counts, model.wall_model.span_counts)
    assert loaded.world_span() is not None


def test_a_third_wall_model_is_one_registered_class() -> None:
    from gtmsm_model.wall_models import WALL_MODELS, ObservedWalk, WallModel, register_wall_model

    @register_wall_model("open")
    class OpenWalls(WallModel):
        """Every move goes through."""

        def infer(self, moves, pixels, actions, *, for_training=False):
            states = moves.action_matrix()[actions]
            states[:, 0] = 0
            return ObservedWalk(states.cumsum(1), torch.ones(actions.shape, dtype=states.dtype))

        def move_rule(self, moves):
            return lambda state, move, moving, edges, visited: (torch.ones(state.shape[0]), edges)

    try:
        model = GTMSM(GTMSMConfig(**TINY, wall_model="open"))
        assert isinstance(model.wall_model, OpenWalls) and model.wall_model.name == "open"
        observations, actions = random_batch(steps=20)
        prediction = model.predict(observations, actions, tau=12)
        assert torch.equal(prediction.gates, torch.ones(3, 20))
        parts, states = model.loss_and_states(observations, actions, tau=12)
        model.count_spans(states)  # the default wall model keeps nothing
        assert torch.isfinite(parts["loss"]) and model.world_span() is None
        with pytest.raises(ValueError, match="already registered"):
            register_wall_model("open")(OpenWalls)
    finally:
        WALL_MODELS.pop("open")
    with pytest.raises(ValueError, match="wall_model must be one of"):
        GTMSMConfig(wall_model="open")


@pytest.mark.parametrize("wall_model", ["edges", "absolute"])
def test_each_observed_moves_pixel_shift_is_fitted_once(wall_model: str, monkeypatch) -> None:
    from gtmsm_model import canvas, memory

    calls = []
    fit = canvas.shift_errors

    def counted(previous, current, max_shift):
        calls.append(previous.shape)
        return fit(previous, current, max_shift)

    monkeypatch.setattr(canvas, "shift_errors", counted)
    monkeypatch.setattr(memory, "shift_errors", counted)
    model = GTMSM(GTMSMConfig(**TINY, wall_model=wall_model, novel_view="canvas", refine_steps=0)).eval()
    observations, actions = random_batch(steps=20)
    prediction = model.predict(observations, actions, tau=12)  # observe, then imagine with the canvas
    assert len(calls) == 1  # the edge model's fit serves the pixel map; the absolute gate fits none itself
    monkeypatch.setattr(canvas, "shift_errors", fit)
    monkeypatch.setattr(memory, "shift_errors", fit)
    # On a real walk (random crops have no pixel shift to agree on), the shifts the edge model kept give the
    # map that measuring them afresh gives.
    from gtmsm_env import collect_rollouts

    walk = collect_rollouts(3, 40, seed=2)
    observations, actions = torch.as_tensor(walk.observations), torch.as_tensor(walk.actions)
    memory_now = model.observe(observations, actions)
    if wall_model == "edges":
        assert memory_now.best_shifts is not None
        fitted = model.pixel_map(memory_now)
        memory_now.best_shifts = None  # measured afresh: the same map
        for a, b in zip(fitted, model.pixel_map(memory_now), strict=True):
            assert torch.equal(a, b)
    assert torch.isfinite(prediction.pixels).all()

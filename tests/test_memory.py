"""GTM-SM's memories: blocked-move inference, the edge memory, the canvas, the s-map fit, and
whole rollouts with a known wall map and a perfect codec."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from gtmsm_env import World, collect_rollouts
from gtmsm_model.evaluate import affine_fit_rms, canvas_oracle_predict, revisited_mask, smap_fit_rms
from gtmsm_model.memory import (
    EdgeMemory,
    Gaussian,
    compose_canvas,
    estimate_pixel_map,
    extent_prior,
    infer_blocked,
    read_canvas,
    span_from_counts,
    world_span_counts,
)
from gtmsm_model.model import GTMSM, GTMSMConfig

STAY, UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3, 4


def walk(image: np.ndarray, cells: list[tuple[int, int]], step: int = 3, crop: int = 8) -> Tensor:
    """Crops (1, T, crop, crop, 3) in [0, 1] of ``image`` at the given cells."""
    return torch.as_tensor(np.stack([image[step * r:step * r + crop, step * c:step * c + crop] for r, c in cells]))[None]


# --------------------------------------------------------------------------- blocked moves


SIGNS = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # (action, pair)


def blocked_of(pixels: Tensor, actions: Tensor, margin: float = 1e-5):
    return infer_blocked(pixels, actions, SIGNS, STAY, margin, max_shift=6)


def test_blocked_move_inference_on_hand_made_sequences() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3)).astype(np.float32)
    # right, right, then right again into the border (the window stays), stay, left, up.
    cells = [(4, 7), (4, 8), (4, 8), (4, 8), (4, 7), (3, 7)]
    actions = torch.tensor([[STAY, RIGHT, RIGHT, STAY, LEFT, UP]])
    evidence = blocked_of(walk(image, cells), actions)
    assert evidence.blocked.tolist() == [[False, False, True, False, False, False]]  # stay is never "blocked"
    assert not evidence.ambiguous.any()
    assert evidence.action_shifts[0, RIGHT].tolist() == [0, 3] and evidence.action_shifts[0, LEFT].tolist() == [0, -3]

    # A free move over a gentle gradient changes the crop only a little, but exactly as a slide does.
    gradient = np.broadcast_to(np.linspace(0, 0.05, 32, dtype=np.float32)[None, :, None], (32, 32, 3)).copy()
    smooth_cells = [(4, 4), (4, 5), (4, 5), (4, 4)]
    smooth_actions = torch.tensor([[STAY, RIGHT, RIGHT, LEFT]])
    change = (walk(gradient, smooth_cells)[0, 1] - walk(gradient, smooth_cells)[0, 0]).square().mean()
    assert change < 1e-4  # a threshold on the change alone would have called it blocked
    assert blocked_of(walk(gradient, smooth_cells), smooth_actions).blocked.tolist() == [[False, False, True, False]]
    # Over a perfectly flat region a free move leaves the crop unchanged: the pixels cannot tell.
    flat = np.full((32, 32, 3), 0.5, np.float32)
    assert blocked_of(walk(flat, smooth_cells), smooth_actions).ambiguous[0, 1]


def test_blocked_move_inference_survives_a_little_observation_noise() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((32, 32, 3)).astype(np.float32)
    cells = [(4, 4), (4, 4), (4, 5), (4, 6), (4, 7), (4, 8), (4, 8), (4, 8), (4, 8), (3, 8), (4, 8)]
    actions = torch.tensor([[STAY, STAY, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, STAY, RIGHT, UP, DOWN]])
    clean = walk(image, cells)
    noisy = (clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    expected = [False, False, False, False, False, False, True, False, True, False, False]
    assert blocked_of(noisy, actions).blocked[0].tolist() == expected
    # The noise alone changes a blocked move's crop by far more than a small threshold would allow.
    assert (noisy[0, 6] - noisy[0, 5]).square().mean() > 1e-4


def test_loop_closure_decides_a_move_over_a_flat_region() -> None:
    # A flat band (rows 0-4 of cells) on a textured image: moving right inside the band leaves the
    # crop unchanged though the move is free; coming back through textured rows proves it.
    rng = np.random.default_rng(2)
    image = rng.random((32, 32, 3)).astype(np.float32)
    image[:11] = 0.5  # cells in rows 0 and 1 see only flat pixels (crop rows 0..10), row 2 does not
    cells = [(2, 2), (1, 2), (1, 3), (2, 3), (2, 2), (2, 3)]
    actions = torch.tensor([[STAY, UP, RIGHT, DOWN, LEFT, RIGHT]])
    model = GTMSM(GTMSMConfig(z_dim=4, vae_hidden=8, knn_k=1))
    _, gates = model.infer_states(walk(image, cells), actions)
    assert gates[0].tolist() == [1.0] * 6  # the flat move (step 2) was free: (2, 3) is seen twice alike


# --------------------------------------------------------------------------- edge memory


def test_edge_memory_returns_the_remembered_label_from_either_side() -> None:
    right, up = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    memory = EdgeMemory.empty(1, 2, torch.zeros(1))
    # A wall bumped into moving right from (2, 0); a free edge walked upwards from (0, 0).
    start_wall, start_free = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    memory = memory.write(torch.stack([start_wall + right / 2, start_free + up / 2], 1),
                          torch.tensor([[True, False]]), torch.tensor([[True, True]]))
    # The same wall seen from the other side: moving left from (3, 0).
    known, blocked = memory.lookup(torch.tensor([[3.0, 0.0]]) - right / 2, radius=0.25)
    assert known.item() and blocked.item()
    known, blocked = memory.lookup(torch.tensor([[2.0, 0.0]]) + right / 2, radius=0.25)
    assert known.item() and blocked.item()
    # The free edge from above: moving down from (0, 1).
    known, blocked = memory.lookup(torch.tensor([[0.0, 1.0]]) - up / 2, radius=0.25)
    assert known.item() and not blocked.item()
    # An edge never tried is unknown.
    known, _ = memory.lookup(torch.tensor([[5.0, 5.5]]), radius=0.25)
    assert not known.item()


def test_extent_prior_blocks_only_beyond_everything_visited() -> None:
    visited = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0]]])
    right, left = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])
    assert extent_prior(visited, torch.tensor([[2.0, 1.0]]), right).item()  # beyond x = 2
    assert not extent_prior(visited, torch.tensor([[1.0, 1.0]]), right).item()  # to x = 2: seen before
    assert extent_prior(visited, torch.tensor([[0.0, 0.0]]), left).item()
    assert not extent_prior(visited, torch.tensor([[0.0, 0.0]]), torch.zeros(1, 2)).item()


def test_world_span_prior_lets_a_walk_through_to_the_room_it_has_not_seen() -> None:
    # Columns 0..7 visited; the wall left of column 0 was bumped (a blocked edge at x = -0.5).
    visited = torch.tensor([[[float(x), 0.0] for x in range(8)]])
    right, basis = torch.tensor([[1.0, 0.0]]), torch.eye(2)
    bumped = EdgeMemory.empty(1, 2, visited).write(torch.tensor([[[-0.5, 0.0]]]), torch.tensor([[True]]),
                                                   torch.tensor([[True]]), observed=True)
    at_frontier = torch.tensor([[7.0, 0.0]])
    span8, span7 = torch.tensor([8, 8]), torch.tensor([7, 7])
    # The world is 8 moves wide, 7 are seen and the far wall is known: the room is on this side.
    assert not extent_prior(visited, at_frontier, right, basis, edges=bumped, world_span=span8).item()
    # Without the span, or when the visited part already spans the world: the extent rule (blocked).
    assert extent_prior(visited, at_frontier, right, basis, edges=bumped).item()
    assert extent_prior(visited, at_frontier, right, basis, edges=bumped, world_span=span7).item()
    # The far wall never bumped: the missing room may be on either side, so the extent rule stands.
    free_far_edge = EdgeMemory.empty(1, 2, visited).write(torch.tensor([[[0.5, 0.0]]]), torch.tensor([[False]]),
                                                          torch.tensor([[True]]), observed=True)
    assert extent_prior(visited, at_frontier, right, basis, edges=free_far_edge, world_span=span8).item()
    # A wall bumped on the *other* axis says nothing about this one.
    other_axis = EdgeMemory.empty(1, 2, visited).write(torch.tensor([[[0.0, -0.5]]]), torch.tensor([[True]]),
                                                       torch.tensor([[True]]), observed=True)
    assert extent_prior(visited, at_frontier, right, basis, edges=other_axis, world_span=span8).item()
    # A wall decided while imagining (a guess, not a bump) is no evidence.
    guessed = EdgeMemory.empty(1, 2, visited).write(torch.tensor([[[-0.5, 0.0]]]), torch.tensor([[True]]),
                                                    torch.tensor([[True]]))
    assert extent_prior(visited, at_frontier, right, basis, edges=guessed, world_span=span8).item()
    # Inside the visited extent nothing changes: open.
    assert not extent_prior(visited, torch.tensor([[3.0, 0.0]]), right, basis, edges=bumped, world_span=span8).item()


def test_world_span_is_counted_per_axis_and_ignores_a_rare_outlier() -> None:
    walks = torch.zeros(200, 3, 2)
    walks[:, 1] = torch.tensor([8.0, 0.0])  # every walk spans 8 moves along x ...
    walks[:, 2] = torch.tensor([8.0, 5.0])  # ... and 5 along y
    walks[0, 2] = torch.tensor([8.0, 9.0])  # one walk with a mis-inferred move: 9 along y
    counts = world_span_counts(walks, torch.eye(2), bins=16)
    assert counts.shape == (2, 16) and counts.sum(1).tolist() == [200, 200]
    assert counts[0, 8] == 200 and counts[1, 5] == 199 and counts[1, 9] == 1
    assert span_from_counts(counts).tolist() == [8, 5]
    assert span_from_counts(torch.zeros(2, 16, dtype=torch.long)).tolist() == [0, 0]  # nothing counted: unknown
    # "At least 1 % of the walks reach it": 10 of 1000 walks span 8 or more (4 + 3 + 3), only 6 span 9 or more.
    spread = torch.zeros(1, 16, dtype=torch.long)
    spread[0, 5], spread[0, 8], spread[0, 9], spread[0, 10] = 990, 4, 3, 3
    assert span_from_counts(spread).tolist() == [8]


# --------------------------------------------------------------------------- canvas


def test_canvas_with_the_true_map_reproduces_the_canvas_oracle_on_raw_crops() -> None:
    rollouts = collect_rollouts(3, 120, seed=4)
    tau, step = 80, 3
    oracle = canvas_oracle_predict(rollouts.observations, rollouts.positions, tau, step)
    pixels = torch.as_tensor(rollouts.observations).float() / 255.0
    offsets = torch.as_tensor(rollouts.positions).long() * step
    canvas = compose_canvas(pixels[:, :tau], offsets[:, :tau])
    painted, covered = read_canvas(canvas, offsets[:, tau:], (8, 8))
    np.testing.assert_allclose(painted.numpy()[covered.numpy()], oracle[covered.numpy()], atol=1e-6)
    # Revisited steps are covered completely and exact (MSE 0 for the oracle).
    revisited = revisited_mask(rollouts.positions, tau)
    assert covered.numpy()[revisited].all()
    truth = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    np.testing.assert_allclose(oracle[revisited], truth[revisited], atol=1e-6)


def test_pixel_map_is_recovered_from_observations_alone() -> None:
    rollouts = collect_rollouts(2, 100, seed=5)
    pixels = torch.as_tensor(rollouts.observations).float() / 255.0
    actions = torch.as_tensor(rollouts.actions).long()
    # States on the true grid, in a rotated and reflected frame: A must undo that.
    rotation = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    states = torch.as_tensor(rollouts.positions).float() @ rotation
    moved = (actions != STAY) & ~torch.as_tensor(rollouts.wall_hits)
    moved[:, 0] = False
    pixel_map, ok = estimate_pixel_map(pixels, actions, states, moved, 5, max_shift=6)
    assert ok.all()
    expected = 3.0 * rotation.T  # offset = 3 * position = 3 * states @ rotation^T
    torch.testing.assert_close(pixel_map, expected.expand(2, 2, 2), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- s-map fit


def test_smap_fit_with_per_sequence_offsets_recovers_a_known_map() -> None:
    rng = np.random.default_rng(0)
    positions = rng.integers(0, 9, (5, 60, 2))
    linear = np.array([[0.0, 2.0], [-1.5, 0.0]])
    offsets = rng.normal(0, 5, (5, 1, 2))  # every sequence starts somewhere else in state space
    states = positions @ linear + offsets
    rms, fitted = smap_fit_rms(states, positions, 40)
    assert rms < 1e-9
    np.testing.assert_allclose(fitted, np.linalg.inv(linear), atol=1e-9)
    assert affine_fit_rms(states, positions, 40)[0] > 0.5  # one affine map for all cannot fit this
    assert smap_fit_rms(states + rng.normal(0, 1, states.shape), positions, 40)[0] > 0.1


# --------------------------------------------------------------------------- whole rollouts


class PerfectCodec(nn.Module):
    """A 'VAE' whose code is the crop itself: decode(encode(x)) == x exactly."""

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = nn.Parameter(torch.ones(()))  # so the model has a parameter to find a device

    def encode(self, pixels: Tensor) -> Gaussian:
        flat = pixels.flatten(-3)
        return Gaussian(flat, torch.full_like(flat, -7.0))

    def infer(self, pixels: Tensor) -> Gaussian:  # nothing to refine: the code is exact
        return self.encode(pixels)

    def decode(self, z: Tensor) -> Tensor:
        c = self.config
        return z.unflatten(-1, (c.crop_size, c.crop_size, c.channels))

    def log_likelihood(self, pixels: Tensor, decoded: Tensor) -> Tensor:
        return -0.5 * (pixels - decoded).square().flatten(-3).sum(-1) / self.config.pixel_sigma**2


def perfect_model(**overrides) -> GTMSM:
    config = GTMSMConfig(**{"z_dim": 192, "vae_hidden": 8, "gate_hidden": 4, "knn_k": 3, **overrides})
    model = GTMSM(config)
    model.vae = PerfectCodec(config)
    with torch.no_grad():
        model.transition.directions.copy_(torch.tensor([[0.6, 0.8], [-0.8, 0.6]]))  # any orthonormal M
    return model.eval()


@pytest.mark.parametrize("start", ["center", "random"])
def test_maze_rollout_with_known_walls_and_a_perfect_codec_predicts_exactly(start: str) -> None:
    tau, horizon = 1500, 200
    rollouts = collect_rollouts(2, tau + horizon, seed=7, world=World(start=start, walls="maze", wall_density=0.15))
    # Precondition: every predicted step revisits a memorised cell (the walls were learnt on the way).
    assert revisited_mask(rollouts.positions, tau).all()
    assert rollouts.wall_hits[:, tau:].any()  # some predicted moves really hit walls
    # K = 1: the mixture's 1 / (d^2 + delta) weights leak ~delta onto neighbouring cells otherwise.
    model = perfect_model(novel_view="knn", knn_k=1)
    prediction = model.predict(torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions), tau)
    truth = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    np.testing.assert_allclose(prediction.pixels.numpy(), truth, atol=1e-6)
    decided_blocked = prediction.gates[:, tau:] < 0.5
    moving = torch.as_tensor(rollouts.actions[:, tau:] != STAY)
    assert torch.equal(decided_blocked & moving, torch.as_tensor(rollouts.wall_hits[:, tau:]) & moving)


def test_observe_then_imagine_step_by_step_equals_predict() -> None:
    rollouts = collect_rollouts(2, 90, seed=8, world=World(start="random"))
    observations, actions = torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions)
    tau = 60
    torch.manual_seed(0)
    model = GTMSM(GTMSMConfig(z_dim=6, vae_hidden=24, knn_k=3)).eval()
    expected = model.predict(observations, actions, tau)
    memory = model.observe(observations[:, :25], actions[:, :25])
    memory = model.observe(observations[:, 25:tau], actions[:, 25:tau], memory)
    pixels = []
    for t in range(tau, actions.shape[1]):
        step, memory = model.imagine(actions[:, t:t + 1], memory)
        pixels.append(step.pixels)
    torch.testing.assert_close(torch.cat(pixels, 1), expected.pixels, atol=1e-6, rtol=0)
    torch.testing.assert_close(memory.visited, expected.states)


def test_canvas_fills_novel_views_the_knn_blend_cannot() -> None:
    rollouts = collect_rollouts(4, 400, seed=9, world=World(start="random"))
    tau = 300
    observations, actions = torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions)
    truth = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    novel = ~revisited_mask(rollouts.positions, tau)
    assert novel.any()
    errors = {}
    for view in ("canvas", "knn"):
        predicted = perfect_model(novel_view=view).predict(observations, actions, tau).pixels.numpy()
        errors[view] = ((predicted - truth) ** 2).mean(axis=(2, 3, 4))[novel].mean()
    oracle = canvas_oracle_predict(rollouts.observations, rollouts.positions, tau, 3)
    oracle_error = ((oracle - truth) ** 2).mean(axis=(2, 3, 4))[novel].mean()
    assert errors["canvas"] < 0.5 * errors["knn"]
    assert errors["canvas"] <= 1.05 * oracle_error  # k-NN fill where the canvas has no pixel vs mean fill


def test_chunked_all_key_memory_kl_equals_one_block_in_value_and_gradient() -> None:
    from gtmsm_model.memory import Gaussian, all_key_memory_kl

    torch.manual_seed(0)
    batch, queries, keys, z_dim = 2, 37, 11, 5
    states = torch.randn(batch, queries, 2, requires_grad=True)
    key_states = torch.randn(batch, keys, 2, requires_grad=True)
    mean = torch.randn(batch, queries, z_dim, requires_grad=True)
    log_std = (0.3 * torch.randn(batch, queries, z_dim)).requires_grad_()
    values = Gaussian(torch.randn(batch, keys, z_dim), 0.3 * torch.randn(batch, keys, z_dim))
    usable = torch.arange(keys) < (torch.arange(queries).clamp(min=1, max=keys)).unsqueeze(1)
    leaves = (states, key_states, mean, log_std)
    results = []
    for chunk in (1000, 8):
        kl = all_key_memory_kl(states, key_states, Gaussian(mean, log_std), values, usable, 1e-4, chunk=chunk)
        grads = torch.autograd.grad(kl.square().sum(), leaves)
        results.append((kl.detach(), grads))
    (one, one_grads), (chunked, chunked_grads) = results
    assert torch.allclose(one, chunked, atol=1e-5)
    for a, b in zip(one_grads, chunked_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_a_walk_that_stopped_one_cell_short_is_predicted_exactly_with_the_world_span() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((32, 32, 3)).astype(np.float32)
    # Along row 4 of a 9-wide grid: bump the left border, walk right to column 7 (never 8), then
    # predict: right (to the unseen column 8), left (back to column 7, memorised).
    cells = [(4, 1), (4, 0), (4, 0)] + [(4, c) for c in range(1, 8)] + [(4, 8), (4, 7)]
    actions = torch.tensor([[STAY, LEFT, LEFT] + [RIGHT] * 7 + [RIGHT, LEFT]])
    pixels = walk(image, cells)
    tau = len(cells) - 2
    results = {}
    for rule in ("extent", "span"):
        model = perfect_model(novel_view="knn", knn_k=1, untried_edges=rule)
        model.wall_model.span_counts[:, 8] = 1  # as if trained on 9x9 grids
        prediction = model.predict(pixels, actions, tau)
        results[rule] = (prediction.gates[0, tau:].tolist(), prediction.pixels[0, -1])
    assert results["span"][0] == [1.0, 1.0]  # both moves went through
    torch.testing.assert_close(results["span"][1], pixels[0, tau - 1], atol=1e-6, rtol=0)  # column 7, exactly
    assert results["extent"][0] == [0.0, 1.0]  # the extent rule calls column 8 a wall ...
    assert (results["extent"][1] - pixels[0, tau - 1]).abs().max() > 0.1  # ... and recalls column 6


def test_a_wall_only_guessed_while_imagining_is_not_evidence_for_the_span_prior() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((32, 32, 3)).astype(np.float32)
    # Observed: columns 2..8 of row 4, neither border bumped. Imagined: left to column 2, then 2 -> 1
    # (untried: the extent rule guesses a wall), back right to column 8, then 8 -> 9 (the real border).
    cells = [(4, 2)] + [(4, c) for c in range(3, 9)]
    imagined = [LEFT] * 7 + [RIGHT] * 7
    actions = torch.tensor([[STAY] + [RIGHT] * 6 + imagined])
    pixels = walk(image, cells)
    model = perfect_model(novel_view="knn", knn_k=1, untried_edges="span")
    model.wall_model.span_counts[:, 8] = 1
    gates = model.predict(pixels, actions, len(cells)).gates[0, len(cells):]
    assert gates[6] == 0  # 2 -> 1 guessed a wall (nothing observed beyond column 2)
    assert gates[-1] == 0  # so the guess must not let 8 -> 9 through the real border

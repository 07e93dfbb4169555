"""Localisation that survives ambiguity: the multi-hypothesis tracker (``gtmsm_model.localisation``)
on a hand-made image with a flat band across its middle, for the "edges" and "learned" wall models."""

from __future__ import annotations

import numpy as np
import torch

from gtmsm_model.localisation import (
    MoveBeliefs,
    WalkEvidence,
    _beam,
    _refine,
    flip_estimates,
    hypothesis_costs,
    jittered,
    moving_steps,
    overlap_mismatches,
    track_moves,
    walk_costs,
)
from gtmsm_model.memory import infer_blocked
from gtmsm_model.model import GTMSM, GTMSMConfig

STAY, UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3, 4
MOVES = {STAY: (0, 0), UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}
SIGNS = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
PIXEL_STEPS = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # one lattice move along each axis, in pixels (row, col)


def band_image() -> np.ndarray:
    """32×32 random texture with a flat band over rows 11..21: every crop of cell row 4 (pixel rows
    12..19) is the same uniform colour, whatever its column."""
    image = np.random.default_rng(3).random((32, 32, 3)).astype(np.float32)
    image[11:22] = 0.4
    return image


def walk(image: np.ndarray, actions: list[int], start=(4, 4), cells: int = 9):
    """The crops (1, T, 8, 8, 3), the actions (1, T) and the true wall hits of a walk on the 9×9 grid."""
    position, crops, hits = start, [], []
    for action in actions:
        row, col = position[0] + MOVES[action][0], position[1] + MOVES[action][1]
        hit = not (0 <= row < cells and 0 <= col < cells)
        position = position if hit else (row, col)
        hits.append(hit and action != STAY)
        crops.append(image[3 * position[0]:3 * position[0] + 8, 3 * position[1]:3 * position[1] + 8])
    return torch.as_tensor(np.stack(crops))[None], torch.tensor([actions]), hits


# Start in the band (4, 4); right x4 across the band (free, the crop never changes), up x2 into the
# texture, left x8 along it to (2, 0), down x2 into the band at (4, 0), left x2 into the border (blocked,
# the crop unchanged again), right x4 back to (4, 4) through the band, up x2 and right x3 along cells
# seen before.
CROSSING = [STAY] + [RIGHT] * 4 + [UP] * 2 + [LEFT] * 8 + [DOWN] * 2 + [LEFT] * 2 + [RIGHT] * 4 + [UP] * 2 + [RIGHT] * 3


def test_the_band_makes_the_free_moves_indistinguishable_from_a_wall() -> None:
    pixels, actions, hits = walk(band_image(), CROSSING)
    evidence = infer_blocked(pixels, actions, SIGNS, STAY, 1e-5, max_shift=6)
    moving = actions[0] != STAY
    moving[0] = False
    flat_free = [t for t in range(1, len(CROSSING)) if moving[t] and not hits[t]
                 and torch.equal(pixels[0, t], pixels[0, t - 1])]
    assert len(flat_free) == 8  # 4 right, then 4 right again: free moves whose crop did not change
    assert all(evidence.ambiguous[0, t] for t in flat_free)
    bumps = [t for t in range(len(CROSSING)) if hits[t]]
    assert len(bumps) == 2 and all(evidence.ambiguous[0, t] for t in bumps)


def test_edges_wall_model_localises_a_walk_across_a_flat_band_and_a_border_bump_inside_it() -> None:
    pixels, actions, hits = walk(band_image(), CROSSING)
    model = GTMSM(GTMSMConfig(z_dim=4, vae_hidden=8, knn_k=1)).eval()
    _, gates = model.infer_states(pixels, actions)
    assert (gates[0] < 0.5).tolist() == hits  # every move right: the 8 free flat moves and the 2 bumps


def cells_of(actions: torch.Tensor, blocked: list[bool]) -> np.ndarray:
    """(T, 2) lattice cells of a walk whose moves are blocked as given."""
    free = ~torch.tensor(blocked)
    return (SIGNS[actions[0]] * free.unsqueeze(-1)).cumsum(0).numpy()


def test_the_tracker_finds_a_map_that_agrees_with_the_truth_whatever_the_lean() -> None:
    pixels, actions, hits = walk(band_image(), CROSSING)
    moving = actions != STAY
    moving[:, 0] = False
    unchanged = torch.as_tensor([[bool(t) and torch.equal(pixels[0, t], pixels[0, t - 1]) for t in range(len(CROSSING))]])
    undecided = moving & unchanged
    flat = pixels[0].flatten(1).std(1) == 0
    textured = np.flatnonzero(~flat.numpy())
    truth = cells_of(actions, hits)
    for lean in (0.1, 0.5, 0.9, 0.98):  # a lean either way is overruled by what the views say
        beliefs = MoveBeliefs(blocked=undecided & (lean > 0.5), undecided=undecided,
                              p_blocked=torch.full(undecided.shape, lean))
        blocked = track_moves(pixels, actions, beliefs, SIGNS, torch.tensor([1e-6]), beam=16)
        cells = cells_of(actions, blocked[0].tolist())
        # Inside the band every cell shows the same view, so where exactly the walk was there is not
        # observable; every textured view must sit where the truth has it, up to one shift of the map.
        offset = cells[textured] - truth[textured]
        assert (offset == offset[0]).all(), lean
    # The prior alone decides between maps the views cannot tell apart: with most moves free, the truth.
    beliefs = MoveBeliefs(blocked=undecided & False, undecided=undecided, p_blocked=torch.full(undecided.shape, 0.25))
    assert track_moves(pixels, actions, beliefs, SIGNS, torch.tensor([1e-6]))[0].tolist() == hits


def test_hypothesis_cost_counts_pairs_on_one_cell_that_saw_different_crops() -> None:
    signs = SIGNS[torch.tensor([STAY, RIGHT, LEFT, RIGHT])]  # cells 0, 1, 0, 1 if every move is free
    different = torch.ones(4, 4, dtype=torch.bool).fill_diagonal_(False)
    free = torch.zeros(1, 4, dtype=torch.bool)
    assert hypothesis_costs(free, signs, different, None, conflict_cost=1.0).tolist() == [2.0]
    stuck = torch.tensor([[False, True, True, True]])  # every step on cell 0: 6 pairs
    assert hypothesis_costs(stuck, signs, different, None, conflict_cost=1.0).tolist() == [6.0]
    # A walk wider than the learned world span pays for every move beyond it.
    assert hypothesis_costs(free, signs, torch.zeros(4, 4, dtype=torch.bool), torch.tensor([0.0, 0.0]),
                            conflict_cost=1.0).tolist() == [0.0]  # span 0: unknown, no cost
    # Walls do not move: a move across an edge that the walk crossed both ways before, blocked, clashes twice.
    back_and_forth = SIGNS[torch.tensor([STAY, RIGHT, LEFT, RIGHT])]
    bumped = torch.tensor([[False, False, False, True]])
    same_view = torch.zeros(4, 4, dtype=torch.bool)
    assert hypothesis_costs(bumped, back_and_forth, same_view, None, conflict_cost=1.0).tolist() == [2.0]
    assert hypothesis_costs(free, back_and_forth, same_view, None, conflict_cost=1.0).tolist() == [0.0]
    # A wall with the world behind it: the bump at step 3 tried to reach cell 1, where step 1 stood.
    assert hypothesis_costs(bumped, back_and_forth, same_view, None, conflict_cost=1.0,
                            behind_cost=0.5).tolist() == [2.5]
    wide = SIGNS[torch.tensor([STAY, RIGHT, RIGHT, RIGHT])]
    assert hypothesis_costs(free, wide, torch.zeros(4, 4, dtype=torch.bool), torch.tensor([5.0, 2.0]),
                            conflict_cost=1.0).tolist() == [1.0]


def test_learned_wall_model_trains_on_debug_and_localises_without_any_pixel_rule(tmp_path, monkeypatch) -> None:
    from gtmsm_model import wall_models
    from gtmsm_model.train import make_config, train

    config = make_config("debug", wall_model="learned", out_dir=str(tmp_path / "run"), progress=False, threads=1)
    untrained = GTMSM(config.model)
    result = train(config)
    model = result.model.eval()
    before = dict(untrained.wall_model.net.named_parameters())
    assert any(not torch.equal(before[name], value) for name, value in model.wall_model.net.named_parameters())

    def no_rules(*args, **kwargs):
        raise AssertionError("the learned wall model must not read blocked moves off pixel shifts")

    monkeypatch.setattr(wall_models, "infer_blocked", no_rules)
    image = np.random.default_rng(4).random((32, 32, 3)).astype(np.float32)  # textured: every view distinctive
    actions_list = [STAY, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, UP, LEFT, DOWN, LEFT, UP, UP]  # bumps the right border
    pixels, actions, hits = walk(image, actions_list)
    assert any(hits)
    moving = (actions[0] != STAY).clone()
    moving[0] = False
    # The network's q is each move's lean; where it is wrong, the views overrule it (a blocked move that
    # changed the view puts two views on one cell; a free move that did not puts one view on two cells).
    for bias in (-30.0, 30.0):  # the network sure that every move was blocked, then that every move went
        with torch.no_grad():
            model.wall_model.net[-1].bias.fill_(bias)
        _, gates = model.infer_states(pixels, actions)
        assert (gates[0] < 0.5).tolist() == hits, bias


def test_the_beam_s_incremental_cost_is_the_whole_walk_cost_of_its_hypothesis() -> None:
    image = band_image()
    actions_list = [STAY] + [RIGHT, RIGHT, LEFT, UP, DOWN, RIGHT, RIGHT, LEFT, LEFT, DOWN, UP, RIGHT] * 3
    pixels, actions, _ = walk(image, actions_list)
    signs = SIGNS[actions[0]]
    p = torch.full((len(actions_list),), 0.3)
    threshold = torch.tensor(1e-6)
    # Every move undecided; then the first 13 decided, the fifth wrongly as blocked: the steps
    # before the first choice, which every hypothesis shares, are scored on their own, conflicts and all.
    late = torch.arange(len(actions_list)) > 12
    span = torch.tensor([3.0, 3.0])
    back = lambda x: torch.cat([x[:1], x[1:].flip(0)])  # noqa: E731 -- step k of the reversed walk is move T-k
    reverse_signs = torch.cat([torch.zeros_like(signs[:1]), -signs[1:].flip(0)])
    for undecided, wrong in ((moving_steps(signs), False), (moving_steps(signs) & late, True)):
        for pixel_steps in (None, PIXEL_STEPS):  # views on one cell only, then every overlap too
            evidence = WalkEvidence.of(pixels[0], threshold, pixel_steps)
            for lean, behind in ((False, 0.0), (True, 0.0), (True, 7.0)):
                blocked = undecided & lean
                blocked[5] = wrong
                best, total = _beam(evidence, signs, blocked, undecided, p, span, 8, 50.0, behind_cost=behind)
                whole = walk_costs(evidence, best[None], signs, undecided, p, span, 50.0, behind)
                assert abs(total - float(whole[0])) < 1e-3, (lean, pixel_steps, int(undecided.sum()))
                # The walk run backwards: each move undone, its outcome kept, and a blocked move's wall on
                # the side the forward move tried (the backward search's totals are the forward walk's).
                best, total = _beam(evidence.reversed(), reverse_signs, back(blocked), back(undecided), back(p), span,
                                    8, 50.0, tries=-reverse_signs, behind_cost=behind)
                whole = walk_costs(evidence, back(best)[None], signs, undecided, p, span, 50.0, behind)
                assert abs(total - float(whole[0])) < 1e-3, ("backwards", lean, pixel_steps, int(undecided.sum()))


def random_hypothesis(seed: int, moves: int = 60):
    """A random walk on the band image, its evidence with overlaps, every move undecided, a random map."""
    rng = np.random.default_rng(seed)
    actions_list = [STAY] + rng.integers(0, 5, moves).tolist()
    pixels, actions, hits = walk(band_image(), actions_list)
    signs = SIGNS[actions[0]]
    undecided = moving_steps(signs)
    blocked = undecided & torch.as_tensor(rng.random(len(actions_list)) < 0.4)
    evidence = WalkEvidence.of(pixels[0], torch.tensor(1e-6), PIXEL_STEPS)
    return evidence, signs, blocked, undecided, torch.full((len(actions_list),), 0.3), hits


def test_the_local_search_scores_every_flip_and_pair_as_the_whole_walk_cost_does() -> None:
    for seed in range(4):
        evidence, signs, blocked, undecided, p, _ = random_hypothesis(seed)
        first, second, change = flip_estimates(evidence, signs, blocked, torch.nonzero(undecided).flatten(), p, 50.0)
        assert (second == len(signs)).any() and (second < len(signs)).any()  # single flips and pairs
        changed = blocked.unsqueeze(0).repeat(len(first), 1)
        rows = torch.arange(len(first))
        changed[rows, first] = ~changed[rows, first]
        pairs = second < len(signs)
        changed[rows[pairs], second[pairs]] = ~changed[rows[pairs], second[pairs]]
        whole = walk_costs(evidence, torch.cat([blocked[None], changed]), signs, undecided, p, None, 50.0)
        torch.testing.assert_close(change, whole[1:] - whole[0], atol=1e-2, rtol=0)


def test_the_local_search_counts_the_wall_with_the_world_behind_it_that_a_flip_frees() -> None:
    # Cells along one row: 0, 1, 2, 1, 0, then a right move the map calls blocked: its target, cell 1,
    # is where the walk stood twice. Freeing it is the change that takes that cost away.
    actions_list = [STAY, RIGHT, RIGHT, LEFT, LEFT, RIGHT]
    pixels, actions, _ = walk(band_image(), actions_list, start=(0, 2))
    signs = SIGNS[actions[0]]
    undecided = moving_steps(signs)
    blocked = torch.tensor([False] * 5 + [True])
    p = torch.full((len(actions_list),), 0.3)
    evidence = WalkEvidence.of(pixels[0], torch.tensor(1e-6), PIXEL_STEPS)
    moves = torch.nonzero(undecided).flatten()
    first, second, plain = flip_estimates(evidence, signs, blocked, moves, p, 50.0)
    _, _, estimate = flip_estimates(evidence, signs, blocked, moves, p, 50.0, behind_cost=7.0)
    last = (first == 5) & (second == len(signs))  # the last move alone: nothing after it shifts
    whole = walk_costs(evidence, torch.stack([blocked, blocked ^ (torch.arange(6) == 5)]), signs, undecided, p,
                       None, 50.0, 7.0)
    assert float(estimate[last]) == float(plain[last]) - 7.0
    torch.testing.assert_close(estimate[last], (whole[1] - whole[0]).reshape(1), atol=1e-3, rtol=0)
    others = (first != 5) & (second != 5)
    assert torch.equal(estimate[others], plain[others])  # the free moves' flips free nothing


def test_the_local_search_undoes_a_wall_put_in_the_wrong_place_inside_the_band() -> None:
    pixels, actions, hits = walk(band_image(), CROSSING)
    signs = SIGNS[actions[0]]
    undecided = moving_steps(signs)
    p = torch.full((len(CROSSING),), 0.25)
    evidence = WalkEvidence.of(pixels[0], torch.tensor(1e-6), PIXEL_STEPS)
    truth = torch.tensor(hits)
    # The left bump at step 17 (in the band, at the border) put on step 14, the free left move before it
    # along the texture: steps 14..16 are a cell off, and so is every view there.
    wrong = truth.clone()
    wrong[14], wrong[17] = True, False
    costs = walk_costs(evidence, torch.stack([truth, wrong]), signs, undecided, p, None, 50.0)
    assert costs[1] > costs[0] + 50.0
    refined, total = _refine(evidence, signs, wrong, undecided, p, None, 50.0)
    assert total <= float(costs[0]) + 1e-3
    assert abs(total - float(walk_costs(evidence, refined[None], signs, undecided, p, None, 50.0)[0])) < 1e-3


def test_a_walk_is_searched_again_until_a_map_without_conflict_is_found_twice(monkeypatch) -> None:
    from gtmsm_model import localisation

    leans, answers = [], []

    def search(evidence, signs, blocked, undecided, p, world_span, beam, conflict_cost, lean, behind_cost=0.0):
        leans.append(lean)
        conflicts, extra = answers[min(len(leans), len(answers)) - 1]
        cheapest = behind_cost or conflict_cost  # a wall with the world behind it, when that costs anything
        found = blocked.clone()
        found[len(leans)] = True  # each search's own map, to tell which one is kept
        return found, conflicts * cheapest + extra + float(localisation._prior_cost(blocked, undecided, p))

    monkeypatch.setattr(localisation, "_search", search)
    pixels, actions, _ = walk(band_image(), CROSSING)
    undecided = moving_steps(SIGNS[actions[0]]).unsqueeze(0)
    p = torch.full(undecided.shape, 0.25)
    beliefs = MoveBeliefs(undecided & False, undecided, p)

    def run(**kwargs):
        leans.clear()
        found = track_moves(pixels, actions, beliefs, SIGNS, torch.tensor([1e-6]), beam=8, **kwargs)
        return len(leans), int(torch.nonzero(found[0]).flatten()[0])  # searches made, the search whose map won

    # Two searches leave a conflict, the third finds a map without one, the fourth finds it again.
    answers[:] = [(1, 0.0), (1, 0.0), (0, 0.0), (0, 0.0)]
    assert run(retry=8) == (4, 3)
    assert torch.equal(leans[0], p[0]) and not torch.equal(leans[1], p[0]) and not torch.equal(leans[1], leans[2])
    assert run(retry=1) == (1, 1)
    assert run(retry=8, behind_cost=5.0) == (4, 3)  # a wall with the world behind it is no prior lean either
    # A map without conflict is not the end: a later search finds a cheaper one, kept once found again.
    answers[:] = [(0, 3.0), (0, 4.0), (0, 1.0), (0, 2.0), (0, 1.0)]
    assert run(retry=8) == (5, 3)
    assert run(retry=3) == (3, 3)  # the most searches, even unconfirmed


def test_a_restart_s_leans_are_the_same_for_a_seed_and_keep_their_order_on_average() -> None:
    p = torch.linspace(0.05, 0.95, 200)
    assert torch.equal(jittered(p, 3), jittered(p, 3)) and not torch.equal(jittered(p, 3), jittered(p, 4))
    assert ((jittered(p, 3) > 0) & (jittered(p, 3) < 1)).all()
    assert torch.corrcoef(torch.stack([torch.logit(p), torch.logit(jittered(p, 3))]))[0, 1] > 0.7


def test_a_wall_with_the_walk_beyond_its_line_has_the_world_behind_it() -> None:
    # Cells (0, 0), (0, 1), (0, 2), (1, 2), then a bump left from (1, 2): the cell it tried, (1, 1), was
    # never visited, but (0, 1) and (0, 0) lie beyond the wall's line (column <= 1). In a world walled only
    # at its border nothing lies beyond a wall; a wall inside the map (a wrong guess in a flat stretch)
    # leaves the walk on both sides of its line.
    signs = SIGNS[torch.tensor([STAY, RIGHT, RIGHT, DOWN, LEFT])]
    none = torch.zeros(5, 5, dtype=torch.bool)
    bump = torch.tensor([[False, False, False, False, True]])
    assert hypothesis_costs(bump, signs, none, None, conflict_cost=1.0, behind_cost=0.5).tolist() == [0.5]
    # A bump at the edge of the walk (left from (1, -2), where it never went further left) costs nothing.
    edge = SIGNS[torch.tensor([STAY, LEFT, LEFT, DOWN, LEFT])]
    assert hypothesis_costs(bump, edge, none, None, conflict_cost=1.0, behind_cost=0.5).tolist() == [0.0]


def test_an_axis_without_a_pixel_step_gives_no_overlap_evidence_along_it() -> None:
    # A walk that never moved decisively along one axis has no pixel step for it: comparing its
    # neighbours there as if they were one place would make conflicts out of nothing.
    pixels = torch.rand(6, 8, 8, 1, generator=torch.Generator().manual_seed(0))
    mismatch, reach = overlap_mismatches(pixels, torch.tensor([[3.0, 0.0], [0.0, 0.0]]), 1e-6)
    assert mismatch[reach + 1, reach].any() and mismatch[reach, reach].any()  # along the known axis, and in place
    assert not mismatch[:, reach + 1:].any() and not mismatch[:, :reach].any()


def test_the_training_walks_count_walls_with_the_world_behind_them() -> None:
    from gtmsm_model.memory import wall_behind_counts

    # Cells along one axis: 0, 1, 0, 0 (a bump left, to the unvisited -1), 1, 1 (a bump right, to the
    # unvisited 2), 1 (a bump left, into cell 0, where the walk stood: a wall with the world behind it).
    actions = torch.tensor([[STAY, RIGHT, LEFT, LEFT, RIGHT, RIGHT, LEFT]])
    cols = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    states = torch.stack([torch.zeros_like(cols), cols], -1)[None]  # (1, T, 2): row, col
    assert wall_behind_counts(states, actions, torch.eye(2), SIGNS).tolist() == [3, 1]

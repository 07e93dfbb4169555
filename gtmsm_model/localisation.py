"""Localisation that survives ambiguity: a multi-hypothesis tracker over the undecided moves of a walk.

A move whose outcome the views cannot tell apart — a flat view, where a free move leaves the crop
unchanged just as a wall does, or a learned localiser that is unsure — is not committed on a
threshold. ``track_moves`` keeps a beam of hypotheses (each a full blocked/free assignment of the
walk) and branches on every undecided move in time order. Each hypothesis is scored on the *whole*
observed walk, so evidence that arrives later (a loop closure many steps on) decides an early
move, the way a SLAM back-end revises its graph at loop closure:

* **consistency**: pairs of steps that the hypothesis puts on the same lattice cell but that saw
  different crops (the same cell always shows the same view), and pairs that saw the same
  *distinctive* crop (one that no one-pixel slide leaves unchanged: not flat, not uniform along any
  direction) but are put on different cells (such a view is seen from one place only) — each
  costs ``conflict_cost``;
* **overlap consistency** (when the pixel step of a lattice move is known, ``pixel_steps``): two
  views the hypothesis puts on neighbouring cells must agree where their windows overlap — the
  canvas they paint must be one image; the same-cell check is its zero offset. This evidence is
  dense (every view near one seen before is checked), so a wrong branch is found within a few steps;
* **static walls**: a lattice edge is a wall or it is not, for the whole walk — pairs of moves across
  the same edge (either way) that the hypothesis has one blocked and the other free each cost
  ``conflict_cost``. A wrong guess inside a flat region puts a wall where the walk crosses freely
  elsewhere (or shifts the map so that it does), so this is the evidence that flat views lack;
* **the learned world span**: a hypothesis whose walk spans more moves along an axis than the
  worlds seen in training (``world_span``, learned by the wall model from the training walks)
  pays ``conflict_cost`` per extra move;
* **walls with the world behind them** (``behind_cost``, learned by the wall model from how often
  the training walks' blocked moves had the walk behind them: some step on the cell the move tried
  to reach or beyond it along the move's direction): each blocked move with some step of the walk
  behind it pays it once. In worlds walled only at their border that never happens (every wall is
  on the world's edge, nothing lies beyond its line), and it is what a wrong guess in a flat
  stretch leaves behind: a wall inside the map, with the walk on both sides of its line;
* **the prior on each undecided move**: ``-log p`` of its choice under the move's own lean
  (``p_blocked``: a prior that most moves are free, or a learned localiser's probability).

Positions are integer lattice coordinates (the cumulative sum of the free moves' action signs),
so nothing depends on the learned move vectors M, on the grid size, the border or the start cell.
Assumes: the same cell always gives the same view (up to observation noise below ``threshold``), and
the walls do not move.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gtmsm_model.canvas import shift_errors

CONFLICT_COST = 50.0
"""Cost of one conflicting pair of steps (or one move beyond the world span), in nats of the prior:
identical crops at one cell are near-certain evidence, so one conflict outweighs any prior lean."""

JITTER = 1.0
"""Noise (nats, on each lean's log-odds) with which a restart of the search ranks its hypotheses."""

SAME_TOTAL = 1e-3
"""Two searches whose maps' totals differ by less than this (nats) came to the same answer."""


@dataclass
class MoveBeliefs:
    """What the evidence of each step says, (B, T) each; step 0 (the reset) is never undecided."""

    blocked: Tensor  # bool: the decision where decided, the lean where undecided
    undecided: Tensor  # bool: the views cannot tell "stayed" from "moved"
    p_blocked: Tensor  # float in (0, 1): the lean of an undecided move (ignored elsewhere)


def distinctive_views(pixels: Tensor, threshold: Tensor | float) -> Tensor:
    """(..., H, W, C) crops → (...) bool: no slide by one pixel (in any of the 8 directions) leaves the crop
    unchanged (up to ``threshold``, a mean squared error broadcast against (..., 8)): a view that only one
    place shows."""
    errors, _ = shift_errors(pixels, pixels, 1)  # (..., 9): the crop against itself, shifted
    errors = torch.cat([errors[..., :4], errors[..., 5:]], -1)  # drop (0, 0)
    return (errors > threshold).all(-1)


def overlap_mismatches(pixels: Tensor, axis_steps: Tensor, threshold: Tensor | float) -> tuple[Tensor, int]:
    """Which pairs of views disagree where their windows would overlap, for every lattice offset at which
    they overlap: pixels (T, H, W, C), ``axis_steps`` (P, 2) the pixel offset (row, col) of one lattice
    move along each axis → (mismatch (O, ..., O, T, T) bool over offsets -R..R per axis, R).
    ``mismatch[d][i, j]``: view j, taken d lattice moves from view i, disagrees with it (overlap MSE
    above ``threshold``); offsets without overlap never mismatch, nor do offsets along an axis whose
    step is unknown (0, 0): a walk that never moved decisively along it has no pixel step for it."""
    height, width = pixels.shape[1:3]
    step = axis_steps.abs().max().clamp_min(1)
    reach = int(max(height, width) // int(step))  # offsets farther than this cannot overlap
    axes = axis_steps.shape[0]
    size = 2 * reach + 1
    mismatch = torch.zeros((size,) * axes + (len(pixels), len(pixels)), dtype=torch.bool, device=pixels.device)
    unknown = (axis_steps == 0).all(-1).tolist()
    for offset in torch.cartesian_prod(*[torch.arange(-reach, reach + 1)] * axes).reshape(-1, axes).tolist():
        if any(o != 0 and gone for o, gone in zip(offset, unknown, strict=True)):
            continue
        dy, dx = (torch.tensor(offset, dtype=axis_steps.dtype, device=axis_steps.device) @ axis_steps).long().tolist()
        if abs(dy) >= height or abs(dx) >= width:
            continue
        a = pixels[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)].flatten(1)
        b = pixels[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)].flatten(1)
        error = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square() / a.shape[1]
        mismatch[tuple(o + reach for o in offset)] = error > threshold
    return mismatch, reach


def crop_differences(pixels: Tensor) -> Tensor:
    """(T, H, W, C) crops → (T, T) mean squared difference of every pair."""
    flat = pixels.flatten(1)
    return torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").square() / flat.shape[1]


def hypothesis_costs(blocked: Tensor, signs: Tensor, different: Tensor, world_span: Tensor | None,
                     conflict_cost: float = CONFLICT_COST, twins: Tensor | None = None,
                     mismatch: Tensor | None = None, reach: int = 0, tries: Tensor | None = None,
                     behind_cost: float = 0.0) -> Tensor:
    """Consistency and span cost of C whole-walk hypotheses: blocked (C, T) bool, signs (T, P) the action
    signs of each step, different (T, T) bool (the two crops differ), twins (T, T) bool (the same
    distinctive crop; None: none), mismatch / reach the overlap evidence (``overlap_mismatches``; None:
    not checked), ``tries`` (T, P) the direction a blocked move tried (default ``signs``), ``behind_cost``
    per blocked move whose target cell some step stands on → (C,). ``track_moves``' beam computes this
    cost incrementally, plus the prior of each choice."""
    coords = lattice_cells(blocked, signs)
    gap = coords.unsqueeze(1) - coords.unsqueeze(2)  # (C, T, T, P): [c, i, j] = cell j - cell i
    same = (gap == 0).all(-1)  # (C, T, T)
    clash = same & different
    if twins is not None:
        clash = clash | (~same & twins)
    if mismatch is not None:
        steps = torch.arange(len(signs), device=signs.device)
        clash = clash | overlap_clashes(gap, mismatch, reach, steps, steps)
    tries = signs if tries is None else tries
    tried = torch.where(blocked.unsqueeze(-1), tries, signs)  # (C, T, P): the direction each move tried
    edges = walk_edges(coords, tried)
    moving = moving_steps(signs)
    clashes = clash.sum((1, 2)) + wall_clashes(edges, edges, blocked, blocked, moving, moving).sum((1, 2))
    cost = conflict_cost * clashes.to(signs.dtype) / 2
    if behind_cost:
        behind = walls_behind(coords, tries[None], blocked & moving, coords).any(-1).sum(-1)
        cost = cost + behind_cost * behind.to(signs.dtype)
    return cost + span_cost(coords.max(1).values - coords.min(1).values, world_span, conflict_cost)


def overlap_clashes(gap: Tensor, mismatch: Tensor, reach: int, rows: Tensor, cols: Tensor) -> Tensor:
    """gap (..., R, S, P): the lattice offset of view ``cols[s]`` from view ``rows[r]`` (steps of the walk),
    mismatch / reach from ``overlap_mismatches`` → (..., R, S) bool: the two views overlap and disagree."""
    near = (gap.abs() <= reach).all(-1)
    index = (gap.long().clamp(-reach, reach) + reach).unbind(-1)
    return near & mismatch[(*index, rows.view(-1, 1).expand(gap.shape[:-1]), cols.view(1, -1).expand(gap.shape[:-1]))]


def lattice_cells(blocked: Tensor, signs: Tensor) -> Tensor:
    """(C, T) blocked masks and (T, P) action signs → (C, T, P) integer lattice cells (step 0 at the origin)."""
    return (signs.unsqueeze(0) * (~blocked).unsqueeze(-1).to(signs.dtype)).cumsum(1)


def moving_steps(signs: Tensor) -> Tensor:
    """(T, P) action signs → (T,) bool: the steps that try a move (not the reset, not a stay)."""
    moving = signs.abs().sum(-1) > 0
    moving[0] = False
    return moving


def edge_keys(before: Tensor, signs: Tensor) -> Tensor:
    """The lattice edge each move tries, from the cell it leaves (..., T, P) and its signs (T, P): twice the
    edge's midpoint, 2 c + s, the same for a move and for its reverse from the other side."""
    return 2 * before + signs


def walk_edges(cells: Tensor, signs: Tensor) -> Tensor:
    """The edge each step tries (``edge_keys``), from the cells after each step (..., T, P): step 0
    leaves the origin, step t the cell of step t-1."""
    return edge_keys(torch.cat([torch.zeros_like(cells[..., :1, :]), cells[..., :-1, :]], -2), signs)


def wall_clashes(new_edges: Tensor, edges: Tensor, new_blocked: Tensor, blocked: Tensor, new_moving: Tensor,
                 moving: Tensor) -> Tensor:
    """Pairs of moves across one edge with different outcomes: new_edges (C, L, P) / new_blocked (C, L) /
    new_moving (L,) against edges (C, S, P) / blocked (C, S) / moving (S,) → (C, L, S) bool."""
    same = (new_edges.unsqueeze(2) == edges.unsqueeze(1)).all(-1) & (new_moving.unsqueeze(1) & moving.unsqueeze(0))
    return same & (new_blocked.unsqueeze(2) != blocked.unsqueeze(1))


def walls_behind(places: Tensor, tries: Tensor, walls: Tensor, cells: Tensor) -> Tensor:
    """Pairs (blocked move, step) where the step stands behind the wall: on the cell the move tried to reach
    or anywhere beyond it along the move's direction (the far side of the wall's line). places (C, L, P)
    the cells the moves were tried from, ``tries`` (C or 1, L, P) the directions they tried, walls (C, L)
    bool the blocked moves among them, cells (C, S, P) → (C, L, S) bool. A world walled only at its border
    has nothing behind any wall."""
    targets = places + tries  # the cells the moves tried to reach
    beyond = ((cells.unsqueeze(1) - targets.unsqueeze(2)) * tries.unsqueeze(2)).sum(-1) >= 0
    return beyond & walls.unsqueeze(2)


def span_cost(extent: Tensor, world_span: Tensor | None, conflict_cost: float) -> Tensor:
    """(C, P) extents of hypotheses' walks in moves → (C,): ``conflict_cost`` per move beyond the world span."""
    if world_span is None:
        return extent.new_zeros(extent.shape[0])
    span = world_span.to(extent.dtype)
    beyond = torch.where(span > 0, (extent - span).clamp_min(0), torch.zeros_like(extent))
    return conflict_cost * beyond.sum(-1)


def track_moves(pixels: Tensor, actions: Tensor, beliefs: MoveBeliefs, action_signs: Tensor,
                threshold: Tensor, *, world_span: Tensor | None = None, beam: int = 16, retry: int = 1,
                conflict_cost: float = CONFLICT_COST, behind_cost: float = 0.0,
                pixel_steps: Tensor | None = None) -> Tensor:
    """Decide every undecided move of each walk by a beam search over hypotheses (see the module).

    Branching on the undecided moves in time order, a hypothesis is scored on the walk up to the
    next undecided move (all the evidence there is before the next choice) plus the prior of its
    choices. Hypotheses that end on the same cell *and* put every distinctive view so far on the
    same cells are treated as interchangeable for what comes next and only the best of each is kept,
    then the ``beam`` best: the beam holds different maps and places, not near-copies of one. This is
    an approximation: views that are neither flat nor distinctive (a band's edge, stripes) and the
    walk's extent are not in the key, and they can still matter later, so a merge can drop the map
    that later evidence would have confirmed. The cost is kept per
    hypothesis and extended by the new steps only, so a walk costs O(beam · T²) whatever the
    number of undecided moves. The search runs forwards and backwards; a local search
    (``_refine``) then flips single moves and pairs of moves in the cheaper map while that lowers
    the whole-walk total. A walk is searched again, up to ``retry`` searches in all, each restart
    ranking its hypotheses by leans with random noise on their log-odds (``jittered``), and the
    cheapest map by the true leans is kept, until that map has no conflict and a second search has
    found it (or one as cheap) again: a consistent world leaves no conflict on the true map, so one
    left means the search lost it; and a map without conflicts can still cost more than the true one
    (more walls guessed, or less likely ones), which only another search that lands on a cheaper map
    shows. A flat stretch gives many maps of
    near-equal cost before the evidence that separates them arrives, and which of them survive the
    merge and the beam is decided by ties; a wider beam keeps more of the same kind, a restart keeps
    others.

    pixels (B, T, H, W, C) in [0, 1], actions (B, T), ``action_signs`` (A, P) (one column per opposite
    pair), ``threshold`` (B,): two crops differ iff their MSE exceeds it (above observation noise),
    ``world_span`` (P,) in moves (0 or None: unknown), ``retry`` the most searches per walk (1: one),
    ``behind_cost`` what a wall with the world behind it costs (0: nothing),
    ``pixel_steps`` (B, P, 2): the pixel offset of one
    lattice move along each axis (None: unknown; only views on the same cell are compared). Returns
    the blocked mask (B, T): the decided moves as given, the undecided ones as the best hypothesis
    has them.
    """
    blocked = beliefs.blocked.clone()
    signs = action_signs[actions.long()].to(pixels.dtype)  # (B, T, P)
    p = beliefs.p_blocked.clamp(1e-4, 1 - 1e-4)
    smallest = min(conflict_cost, behind_cost) if behind_cost > 0 else conflict_cost  # the least that is no prior
    for b in torch.nonzero(beliefs.undecided.any(1)).flatten().tolist():
        evidence = WalkEvidence.of(pixels[b], threshold[b], None if pixel_steps is None else pixel_steps[b])
        best, best_total = None, float("inf")
        for attempt in range(retry):
            found, total = _search(evidence, signs[b], blocked[b], beliefs.undecided[b], p[b], world_span, beam,
                                   conflict_cost, lean=p[b] if attempt == 0 else jittered(p[b], attempt),
                                   behind_cost=behind_cost)
            if total < best_total - SAME_TOTAL:
                best, best_total, found_again = found, total, False
            else:
                found_again = total < best_total + SAME_TOTAL
            if found_again and best_total - _prior_cost(best, beliefs.undecided[b], p[b]) < smallest / 2:
                break  # no conflict left, and a second search came to the same total
        blocked[b] = best
    return blocked


def jittered(p: Tensor, seed: int, scale: float | None = None) -> Tensor:
    """The leans ``p`` (T,) with Gaussian noise of ``scale`` nats (default ``JITTER``) on their log-odds,
    drawn from ``seed``: a restart's search ranks the many near-equal hypotheses of a flat stretch in
    another order."""
    scale = JITTER if scale is None else scale
    noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.sigmoid(torch.logit(p) + scale * noise.to(device=p.device, dtype=p.dtype))


def _search(evidence: WalkEvidence, signs: Tensor, blocked: Tensor, undecided: Tensor, p: Tensor,
            world_span: Tensor | None, beam: int, conflict_cost: float, lean: Tensor | None = None,
            behind_cost: float = 0.0) -> tuple[Tensor, float]:
    """One walk: the beam forwards and backwards (ranking by the leans ``lean``, default ``p``), the
    cheaper map by the whole-walk cost under ``p`` refined → (blocked (T,), its total under ``p``)."""
    lean = p if lean is None else lean
    forward, _ = _beam(evidence, signs, blocked, undecided, lean, world_span, beam, conflict_cost,
                       behind_cost=behind_cost)
    # The same search on the walk run backwards (each move undone: the opposite signs, the same
    # outcome): evidence that comes late going forwards comes early going backwards. A blocked move
    # still tried the forward direction: its wall (and the cell behind it) lies on that side.
    back = lambda x: torch.cat([x[:1], x[1:].flip(0)])  # noqa: E731 -- step k of the reversed walk is move T-k
    reverse_signs = torch.cat([torch.zeros_like(signs[:1]), -signs[1:].flip(0)])
    backward, _ = _beam(evidence.reversed(), reverse_signs, back(blocked), back(undecided), back(lean),
                        world_span, beam, conflict_cost, tries=-reverse_signs, behind_cost=behind_cost)
    maps = torch.stack([forward, back(backward)])
    start = maps[walk_costs(evidence, maps, signs, undecided, p, world_span, conflict_cost, behind_cost).argmin()]
    return _refine(evidence, signs, start, undecided, p, world_span, conflict_cost, behind_cost=behind_cost)


def _prior_cost(blocked: Tensor, undecided: Tensor, p: Tensor) -> Tensor:
    """(..., T) hypotheses → (...): -log p of each undecided move's choice, summed."""
    return -torch.where(blocked[..., undecided], p[undecided].log(), (1 - p[undecided]).log()).sum(-1)


@dataclass
class WalkEvidence:
    """What the views of one walk say about pairs of steps, whatever the hypothesis (see the module)."""

    different: Tensor  # (T, T) bool: the two crops differ
    twins: Tensor  # (T, T) bool: the same distinctive crop
    mismatch: Tensor | None  # (O, ..., O, T, T) bool: overlap disagreement per lattice offset (None: unknown)
    reach: int  # offsets -reach..reach per axis

    @classmethod
    def of(cls, pixels: Tensor, threshold: Tensor, pixel_steps: Tensor | None) -> WalkEvidence:
        different = crop_differences(pixels) > threshold
        distinct = distinctive_views(pixels, threshold)
        twins = ~different & distinct.unsqueeze(0) & distinct.unsqueeze(1)
        mismatch, reach = (None, 0) if pixel_steps is None else overlap_mismatches(pixels, pixel_steps, threshold)
        return cls(different, twins, mismatch, reach)

    def reversed(self) -> WalkEvidence:
        """The evidence of the walk run backwards: step k is step T-1-k."""
        flip = lambda x: x.flip(-1).flip(-2)  # noqa: E731
        return WalkEvidence(flip(self.different), flip(self.twins),
                            None if self.mismatch is None else flip(self.mismatch), self.reach)


def _beam(evidence: WalkEvidence, signs: Tensor, blocked: Tensor, undecided: Tensor, p: Tensor,
          world_span: Tensor | None, beam: int, conflict_cost: float, tries: Tensor | None = None,
          behind_cost: float = 0.0) -> tuple[Tensor, float]:
    """``track_moves``' search on one walk: signs (T, P), blocked / undecided / p (T,) → the best
    hypothesis's blocked mask (T,) and its total cost. ``tries`` (T, P): the direction a blocked move
    tried (default ``signs``; the walk run backwards passes the forward signs)."""
    steps = len(signs)
    different, twins, mismatch, reach = evidence.different, evidence.twins, evidence.mismatch, evidence.reach
    distinct = twins.diagonal()  # a distinctive view is its own twin
    # Random weights that sum (step, axis) cells into one number per map (a collision-free hash in practice).
    code = torch.randn(steps * signs.shape[-1], generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64).to(device=signs.device, dtype=signs.dtype)
    moves = torch.nonzero(undecided).flatten().tolist()
    free = (~blocked).to(signs.dtype)
    first = moves[0]
    # Every hypothesis agrees up to the first undecided move: its cells and conflicts there.
    cells = (signs[:first] * free[:first].unsqueeze(-1)).cumsum(0).unsqueeze(0)  # (1, first, P)
    moving = moving_steps(signs)
    tries = signs if tries is None else tries
    edges = walk_edges(cells, torch.where(blocked[:first, None], tries[:first], signs[:first]))  # (1, first, P)
    violated = walls_behind(cells, tries[None, :first], (blocked[:first] & moving[:first])[None],
                            cells).any(-1)
    cost = hypothesis_costs(blocked[None, :first], signs[:first], different[:first, :first], None, conflict_cost,
                            twins[:first, :first], None if mismatch is None else mismatch[..., :first, :first], reach,
                            tries[:first], behind_cost)
    prior = torch.zeros(1, dtype=signs.dtype, device=signs.device)
    hypotheses = blocked.unsqueeze(0)  # (C, T)
    total = cost
    for i, t in enumerate(moves):
        seen = moves[i + 1] if i + 1 < len(moves) else steps  # the evidence before the next choice
        as_blocked, as_free = hypotheses.clone(), hypotheses.clone()
        as_blocked[:, t], as_free[:, t] = True, False
        hypotheses = torch.cat([as_blocked, as_free])
        prior = torch.cat([prior - p[t].log(), prior - (1 - p[t]).log()])
        cells, cost, edges = torch.cat([cells, cells]), torch.cat([cost, cost]), torch.cat([edges, edges])
        violated = torch.cat([violated, violated])
        # The new steps t .. seen-1: their cells, and their conflicts with every step before them.
        step = signs[t:seen].unsqueeze(0) * (~hypotheses[:, t:seen]).unsqueeze(-1).to(signs.dtype)
        new = cells[:, -1].unsqueeze(1) + step.cumsum(1)  # (C, L, P)
        cells = torch.cat([cells, new], 1)  # (C, seen, P)
        new_edges = edge_keys(cells[:, t - 1:seen - 1],
                              torch.where(hypotheses[:, t:seen, None], tries[t:seen], signs[t:seen]))
        edges = torch.cat([edges, new_edges], 1)  # (C, seen, P)
        gap = cells.unsqueeze(1) - new.unsqueeze(2)  # (C, L, seen, P): where each earlier view lies
        same = (gap == 0).all(-1)
        clash = (same & different[t:seen, :seen]) | (~same & twins[t:seen, :seen])
        if mismatch is not None:
            clash = clash | overlap_clashes(gap, mismatch, reach, torch.arange(t, seen, device=gap.device),
                                            torch.arange(seen, device=gap.device))
        clash = clash.int() + wall_clashes(new_edges, edges, hypotheses[:, t:seen], hypotheses[:, :seen],
                                           moving[t:seen], moving[:seen])  # views and walls: two kinds of evidence
        # Within the new block each pair is counted twice, pairs with earlier steps once.
        inside = clash[:, :, t:].sum((1, 2)).to(signs.dtype) / 2
        cost = cost + conflict_cost * (clash[:, :, :t].sum((1, 2)).to(signs.dtype) + inside)
        # Walls with the world behind them: new blocked moves with a step so far behind them, and earlier
        # ones that a new step is the first to stand behind.
        new_walls = walls_behind(new, tries[None, t:seen], hypotheses[:, t:seen] & moving[t:seen],
                                 cells).any(-1)
        reached = walls_behind(cells[:, :t], tries[None, :t], hypotheses[:, :t] & moving[:t], new).any(-1)
        behind = new_walls.sum(1) + (reached & ~violated).sum(1)
        violated = torch.cat([violated | reached, new_walls], 1)
        cost = cost + behind_cost * behind.to(signs.dtype)
        extent = cells.max(1).values - cells.min(1).values
        total = prior + cost + span_cost(extent, world_span, conflict_cost)
        order = total.argsort()
        # The key of a hypothesis: its current cell and where it put the distinctive views so far, hashed
        # into one number by random weights (collision-free in practice).
        placed = (cells * distinct[:seen, None]).flatten(1) @ code[: seen * cells.shape[-1]]
        key = placed + cells[:, -1] @ code[-cells.shape[-1]:] * 1e3
        _, group = torch.unique(key[order], return_inverse=True)
        rank = torch.arange(len(order), device=order.device)
        cheapest = torch.full((int(group.max()) + 1,), len(order), device=order.device).scatter_reduce(
            0, group, rank, "amin")  # the cheapest hypothesis of each key, in cost order
        keep = order[cheapest.sort().values[:beam]]
        hypotheses, prior, cost, cells, total = hypotheses[keep], prior[keep], cost[keep], cells[keep], total[keep]
        edges, violated = edges[keep], violated[keep]
    return hypotheses[0], float(total[0])


def walk_costs(evidence: WalkEvidence, hypotheses: Tensor, signs: Tensor, undecided: Tensor, p: Tensor,
               world_span: Tensor | None, conflict_cost: float, behind_cost: float = 0.0) -> Tensor:
    """The whole-walk total of C hypotheses (C, T): every conflict (overlap included), the span and the
    prior of each undecided move's choice → (C,). What the beam keeps incrementally, computed afresh."""
    conflicts = hypothesis_costs(hypotheses, signs, evidence.different, world_span, conflict_cost, evidence.twins,
                                 evidence.mismatch, evidence.reach, behind_cost=behind_cost)
    return _prior_cost(hypotheses, undecided, p) + conflicts


def _refine(evidence: WalkEvidence, signs: Tensor, blocked: Tensor, undecided: Tensor, p: Tensor,
            world_span: Tensor | None, conflict_cost: float, proposals: int = 4,
            behind_cost: float = 0.0) -> tuple[Tensor, float]:
    """A local search from the beam's best hypothesis: flip one undecided move (the rest of the walk
    shifts by one cell), or two whose shifts cancel (only the stretch between them shifts), and keep
    the change while it lowers the whole-walk total.

    The beam decides a move on the evidence up to the next choice; the evidence that settles a guessed
    wall often comes much later, when the walk crosses that edge again, by when the right branch is
    gone. Every flip and pair is scored at once by what it changes: the conflicts between the shifted
    stretch and the rest of the walk (prefix sums over one conflict table per shift) and those of the
    one or two moves whose outcome flips, less the walls with the world behind them that the flip
    frees; the ``proposals`` best are then scored by ``walk_costs`` (the world span, and the walls
    behind that a shift makes or removes, are counted there only). Returns (blocked (T,), its total)."""
    steps, moves = len(signs), torch.nonzero(undecided).flatten()
    total = walk_costs(evidence, blocked[None], signs, undecided, p, world_span, conflict_cost, behind_cost)[0]
    for _ in range(4 * len(moves)):  # every accepted change lowers the total; this only bounds the time
        i, j, estimate = flip_estimates(evidence, signs, blocked, moves, p, conflict_cost, behind_cost)
        if len(i) == 0:
            break
        pair = j < steps
        best = estimate.argsort()[:proposals]
        candidates = blocked.unsqueeze(0).repeat(len(best), 1)
        rows = torch.arange(len(best), device=signs.device)
        candidates[rows, i[best]] = ~candidates[rows, i[best]]
        candidates[rows[pair[best]], j[best][pair[best]]] = ~candidates[rows[pair[best]], j[best][pair[best]]]
        costs = walk_costs(evidence, candidates, signs, undecided, p, world_span, conflict_cost, behind_cost)
        pick = int(costs.argmin())
        if not costs[pick] < total - 1e-6:
            break
        blocked, total = candidates[pick], costs[pick]
    return blocked, float(total)


def flip_estimates(evidence: WalkEvidence, signs: Tensor, blocked: Tensor, moves: Tensor, p: Tensor,
                   conflict_cost: float, behind_cost: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Every change ``_refine`` tries on hypothesis ``blocked`` (T,) and what it does to the whole-walk
    total, the world span aside: flip move i alone (steps i.. shift), or with a later move j whose flip
    undoes that shift (steps i..j-1 shift; the moves i+1..j leave a moved cell); ``moves`` (U,) the
    undecided moves → (i, j, change), j = T for a single flip. ``behind_cost``: what a blocked move with
    the world behind it costs; a flip that frees one takes it away (the walls behind that the shifted
    stretch makes or removes are not estimated). Costs O(T²) for all of them together."""
    steps = len(signs)
    moving = moving_steps(signs)
    index = torch.arange(steps, device=signs.device)
    # The cell shifts a flip can make from its move on (+ its signs if it frees the move, - if it blocks it).
    shifts = torch.cat([torch.zeros_like(signs[:1]), torch.cat([signs[moves], -signs[moves]]).unique(dim=0)])
    log_odds = (p[moves] / (1 - p[moves])).log()
    cells = lattice_cells(blocked[None], signs)[0]  # (T, P)
    edges = walk_edges(cells, signs)
    # Conflicts of step s (row) moved by each shift (D) against step o (column) in place: views, and for
    # walls move s whose cell before it moved; ``flipped``: how a pair's wall clash changes when one of
    # the two moves flips its outcome (+1 a new clash, -1 one resolved).
    gap = cells.view(1, 1, steps, -1) - (cells.view(1, steps, 1, -1) + shifts.view(-1, 1, 1, cells.shape[-1]))
    same = (gap == 0).all(-1)
    views = (same & evidence.different) | (~same & evidence.twins)
    if evidence.mismatch is not None:
        views = views | overlap_clashes(gap, evidence.mismatch, evidence.reach, index, index)
    across = ((edges.unsqueeze(0) + 2 * shifts.unsqueeze(1)).unsqueeze(2) == edges.view(1, 1, steps, -1)).all(-1) \
        & moving.unsqueeze(1) & moving.unsqueeze(0)  # (D, T, T): the two moves cross one edge
    differ = blocked.unsqueeze(1) != blocked.unsqueeze(0)
    walls = across & differ
    flipped = across.to(signs.dtype) * (1 - 2 * differ.to(signs.dtype))
    view_sums, wall_sums = _prefix_sums(views.to(signs.dtype)), _prefix_sums(walls.to(signs.dtype))
    row_sums = torch.nn.functional.pad(flipped.cumsum(2), (1, 0))  # (D, T, T + 1): columns [0, c)
    column_sums = torch.nn.functional.pad(flipped.cumsum(1), (0, 0, 1, 0))  # (D, T + 1, T): rows [0, r)
    # Candidates: flip move i alone (steps i.. shift) or with a later move j whose flip undoes its shift
    # (steps i..j-1 shift; the moves i+1..j leave a moved cell).
    flips = torch.where(blocked[moves], 1.0, -1.0).to(signs.dtype).unsqueeze(-1) * signs[moves]  # (U, P)
    undo = (flips.unsqueeze(1) + flips.unsqueeze(0) == 0).all(-1)
    valid = torch.cat([(moves.unsqueeze(1) < moves.unsqueeze(0)) & undo, undo.new_ones(len(moves), 1)], 1)
    first, second = torch.nonzero(valid, as_tuple=True)
    pair, partner = second < len(moves), second.clamp_max(len(moves) - 1)
    i, j = moves[first], torch.where(second < len(moves), moves[partner], steps)
    d = (flips[first].unsqueeze(1) == shifts.unsqueeze(0)).all(-1).float().argmax(1)
    zero, last = torch.zeros_like(d), torch.full_like(i, steps)
    stop = (j + 1).clamp_max(steps)
    change = (_cross(view_sums, d, i, j) - _cross(view_sums, zero, i, j)
              + _cross(wall_sums, d, i + 1, stop) - _cross(wall_sums, zero, i + 1, stop))
    # Move i flips in place: against the moves outside i+1..j, and against those, moved.
    change = change + _span(row_sums, zero, i, zero, i) + _span(row_sums, zero, i, stop, last) \
        + _span(column_sums.transpose(1, 2), d, i, i + 1, stop)
    # Move j flips and moves: against the moves outside and inside i+1..j. Against i, flipped too, the
    # clash is what the shift alone makes: take back what i's flip counted for the pair.
    jj = j.clamp_max(steps - 1)
    j_change = _span(row_sums, d, jj, zero, i) + _span(row_sums, d, jj, stop, last) \
        - flipped[d, jj, i] + _span(row_sums, zero, jj, i + 1, jj)
    change = change + torch.where(pair, j_change, 0.0)
    prior = torch.where(blocked[moves], log_odds, -log_odds)  # freeing a blocked move costs its log-odds
    change = conflict_cost * change + prior[first] + torch.where(pair, prior[partner], 0.0)
    if behind_cost:
        # A blocked move with the world behind it that the change frees takes its cost away (the walls
        # behind that the shift makes or removes are left to the exact cost).
        behind = walls_behind(cells[None], signs[None], (blocked & moving)[None], cells[None])[0].any(-1)
        behind = behind.to(signs.dtype)
        change = change - behind_cost * (behind[i] + torch.where(pair, behind[jj], 0.0))
    return i, j, change


def _prefix_sums(table: Tensor) -> Tensor:
    """(D, T, T) → (D, T + 1, T + 1): sums over rows [0, r) and columns [0, c)."""
    return torch.nn.functional.pad(table.cumsum(1).cumsum(2), (1, 0, 1, 0))


def _cross(sums: Tensor, shift: Tensor, start: Tensor, stop: Tensor) -> Tensor:
    """Per candidate, the sum of table ``shift`` over rows [start, stop) and the columns outside them."""
    def block(r0, r1, c0, c1):
        return sums[shift, r1, c1] - sums[shift, r0, c1] - sums[shift, r1, c0] + sums[shift, r0, c0]
    zero, end = torch.zeros_like(start), torch.full_like(start, sums.shape[-1] - 1)
    return block(start, stop, zero, start) + block(start, stop, stop, end)


def _span(sums: Tensor, shift: Tensor, row: Tensor, start: Tensor, stop: Tensor) -> Tensor:
    """Per candidate, the sum of table ``shift``'s row ``row`` over columns [start, stop), from sums
    over columns (D, T, T + 1); empty where stop <= start."""
    return torch.where(stop > start, sums[shift, row, stop] - sums[shift, row, start.clamp_max(stop)], 0.0)

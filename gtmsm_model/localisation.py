"""Localisation that survives ambiguity: a multi-hypothesis tracker over the undecided moves of a walk.

A move whose outcome the views cannot tell apart — a flat view, where a free move leaves the crop
unchanged just as a wall does, or a learned localiser that is unsure — is not committed on a
threshold. ``track_moves`` keeps a beam of hypotheses (each a full blocked/free assignment of the
walk) and branches on every undecided move in time order. Each hypothesis is scored on the *whole*
observed walk, so evidence that arrives later (a loop closure many steps on) decides an early
move, the way a SLAM back-end revises its graph at loop closure:

* **consistency**: pairs of steps that the hypothesis puts on the same lattice cell but that saw
  different crops (the same cell always shows the same view) — each costs ``conflict_cost``;
* **the learned world span**: a hypothesis whose walk spans more moves along an axis than the
  worlds seen in training (``world_span``, learned by the wall model from the training walks)
  pays ``conflict_cost`` per extra move;
* **the prior on each undecided move**: ``-log p`` of its choice under the move's own lean
  (``p_blocked``: a prior that most moves are free, or a learned localiser's probability).

Positions are integer lattice coordinates (the cumulative sum of the free moves' action signs),
so nothing depends on the learned move vectors M, on the grid size, the border or the start cell.
Assumes: the same cell always gives the same view (up to observation noise below ``threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

CONFLICT_COST = 50.0
"""Cost of one conflicting pair of steps (or one move beyond the world span), in nats of the prior:
identical crops at one cell are near-certain evidence, so one conflict outweighs any prior lean."""


@dataclass
class MoveBeliefs:
    """What the evidence of each step says, (B, T) each; step 0 (the reset) is never undecided."""

    blocked: Tensor  # bool: the decision where decided, the lean where undecided
    undecided: Tensor  # bool: the views cannot tell "stayed" from "moved"
    p_blocked: Tensor  # float in (0, 1): the lean of an undecided move (ignored elsewhere)


def crop_differences(pixels: Tensor) -> Tensor:
    """(T, H, W, C) crops → (T, T) mean squared difference of every pair."""
    flat = pixels.flatten(1)
    return torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").square() / flat.shape[1]


def hypothesis_costs(blocked: Tensor, signs: Tensor, different: Tensor, world_span: Tensor | None,
                     conflict_cost: float = CONFLICT_COST) -> Tensor:
    """Consistency and span cost of C hypotheses: blocked (C, T) bool, signs (T, P) the action signs of
    each step, different (T, T) bool (the two crops differ) → (C,)."""
    coords = (signs.unsqueeze(0) * (~blocked).unsqueeze(-1).to(signs.dtype)).cumsum(1)  # (C, T, P)
    same = (coords.unsqueeze(1) == coords.unsqueeze(2)).all(-1)  # (C, T, T)
    conflicts = (same & different).sum((1, 2)).to(signs.dtype) / 2
    cost = conflict_cost * conflicts
    if world_span is not None:
        extent = coords.max(1).values - coords.min(1).values  # (C, P)
        span = world_span.to(signs.dtype)
        beyond = torch.where(span > 0, (extent - span).clamp_min(0), torch.zeros_like(extent))
        cost = cost + conflict_cost * beyond.sum(-1)
    return cost


def track_moves(pixels: Tensor, actions: Tensor, beliefs: MoveBeliefs, action_signs: Tensor,
                threshold: Tensor, *, world_span: Tensor | None = None, beam: int = 16,
                conflict_cost: float = CONFLICT_COST) -> Tensor:
    """Decide every undecided move of each walk by a beam search over hypotheses (see the module).

    Branching on the undecided moves in time order, a hypothesis is scored on the walk up to the
    next undecided move (all the evidence there is before the next choice) plus the prior of its
    choices. Hypotheses that end on the same cell are interchangeable for what comes next (they
    differ only inside views that could not tell them apart), so only the best of each is kept,
    and then the ``beam`` best: the beam holds different *places*, not near-copies of one — the
    place that only later evidence confirms survives until it arrives.

    pixels (B, T, H, W, C) in [0, 1], actions (B, T), ``action_signs`` (A, P) (one column per opposite
    pair), ``threshold`` (B,): two crops differ iff their MSE exceeds it (above observation noise),
    ``world_span`` (P,) in moves (0 or None: unknown). Returns the blocked mask (B, T): the decided
    moves as given, the undecided ones as the best hypothesis has them.
    """
    blocked = beliefs.blocked.clone()
    signs = action_signs[actions.long()].to(pixels.dtype)  # (B, T, P)
    p = beliefs.p_blocked.clamp(1e-4, 1 - 1e-4)
    steps = actions.shape[1]
    for b in torch.nonzero(beliefs.undecided.any(1)).flatten().tolist():
        different = crop_differences(pixels[b]) > threshold[b]
        moves = torch.nonzero(beliefs.undecided[b]).flatten().tolist()
        hypotheses = blocked[b].unsqueeze(0)  # (C, T): undecided moves at their lean until branched
        prior = torch.zeros(1, dtype=pixels.dtype, device=pixels.device)
        for i, t in enumerate(moves):
            as_blocked, as_free = hypotheses.clone(), hypotheses.clone()
            as_blocked[:, t], as_free[:, t] = True, False
            hypotheses = torch.cat([as_blocked, as_free])
            prior = torch.cat([prior - p[b, t].log(), prior - (1 - p[b, t]).log()])
            seen = moves[i + 1] if i + 1 < len(moves) else steps  # the evidence before the next choice
            total = prior + hypothesis_costs(hypotheses[:, :seen], signs[b, :seen], different[:seen, :seen],
                                             world_span, conflict_cost)
            place = (signs[b, :seen].unsqueeze(0) * (~hypotheses[:, :seen]).unsqueeze(-1).to(signs.dtype)).sum(1)
            order = total.argsort()
            _, group = torch.unique(place[order], dim=0, return_inverse=True)
            keep, places = [], set()
            for rank, where in enumerate(group.tolist()):  # cheapest first: the best of each place
                if where not in places:
                    places.add(where)
                    keep.append(int(order[rank]))
                    if len(keep) == beam:
                        break
            hypotheses, prior = hypotheses[keep], prior[keep]
        blocked[b] = hypotheses[0]
    return blocked

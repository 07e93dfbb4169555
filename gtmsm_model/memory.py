"""GTM-SM's memories and the math that reads them; ``model.py`` composes them, nothing here trains.

Two memories, each written during the memorisation phase (and the edge memory also while
imagining), each read when predicting (the third, the canvas of decoded crops, is in ``canvas.py``):

* **Key memory** (the paper's differentiable neural dictionary): keys s_k, values q(z_k | x_k).
  Read through the mixture prior ``p(z | s, m) = sum_k w_k N(z | mu_k, sigma_k^2)`` over the K
  nearest keys, ``w_k ∝ 1 / (d_k^2 + delta)``. Assumes: the same state means the same view.
* **Edge memory**: each memorised move writes (its midpoint s_{t-1} + M a_t / 2, was it
  blocked?). A midpoint names an edge between two cells from *either* side, so a wall learnt by
  bumping into it from the left is known when arriving from the right, and walls can be anywhere
  (border or interior). A move whose edge was never tried falls back to the *extent prior*:
  blocked iff its target lies beyond every state visited so far along the move's direction (the
  border of what has been seen is most likely a wall), corrected by the world span learned in
  training: a walk that saw less than the world's span along an axis, and bumped into the wall
  on the far side, has its missing room on this side. Assumes: moves live on a lattice (a move
  from the same cell in the same direction always ends the same way), walls do not change, and
  (for the span) the worlds predicted in are as wide as those trained in.

Blocked moves are inferred from the observations (``infer_blocked``): a move whose crop is
better explained by "the view stayed" than by "the view slid by the action's pixel shift" was
blocked (the fits are ``canvas.shift_errors``); a flat view that both explain is left undecided for the
multi-hypothesis tracker (``localisation.track_moves``).
None of this is told the grid size, the border or the start cell (the span prior learns the
world's width from the training walks).

Shapes: B sequences, M memorised steps, N queries, S = s_dim, Z = z_dim, crops (H, W, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor

# The canvas's names are part of the memory API too (the canvas is GTM-SM's third memory).
from gtmsm_model.canvas import (  # noqa: F401
    Canvas,
    best_shift,
    compose_canvas,
    estimate_pixel_map,
    read_canvas,
    shift_errors,
    shift_grid,
    to_pixel_offsets,
)
from gtmsm_model.localisation import walls_behind

# --------------------------------------------------------------------------- Gaussians


@dataclass
class Gaussian:
    """A diagonal Gaussian, parametrised by mean and log standard deviation."""

    mean: Tensor
    log_std: Tensor

    def rsample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def kl_to_standard_normal(self) -> Tensor:
        """KL(self ‖ N(0, I)), summed over the last dimension."""
        var = (2 * self.log_std).exp()
        return 0.5 * (var + self.mean.square() - 1.0 - 2 * self.log_std).sum(-1)

    def __getitem__(self, index) -> Gaussian:
        return Gaussian(self.mean[index], self.log_std[index])


def cat_gaussians(parts: list[Gaussian], dim: int) -> Gaussian:
    return Gaussian(torch.cat([p.mean for p in parts], dim), torch.cat([p.log_std for p in parts], dim))


def gaussian_kl(q: Gaussian, p: Gaussian) -> Tensor:
    """Closed-form KL(q ‖ p) of diagonal Gaussians, summed over the last dimension."""
    var_ratio = (2 * (q.log_std - p.log_std)).exp()
    mean_term = (q.mean - p.mean).square() / (2 * p.log_std).exp()
    return 0.5 * (var_ratio + mean_term - 1.0 - 2 * (q.log_std - p.log_std)).sum(-1)


def pairwise_gaussian_kl(q: Gaussian, p: Gaussian) -> Tensor:
    """KL(q_i ‖ p_j) for every pair: q is (B, N, D), p is (B, M, D) → (B, N, M).

    Expanded into matrix products so memory stays O(N·M), not O(N·M·D).
    """
    q_var = (2 * q.log_std).exp()
    p_inv_var = (-2 * p.log_std).exp()
    # sum_d [ (q_var + q_mu^2 - 2 q_mu p_mu + p_mu^2) / p_var ] / 2
    quad = (q_var + q.mean.square()) @ p_inv_var.transpose(1, 2)
    quad = quad - 2 * q.mean @ (p.mean * p_inv_var).transpose(1, 2)
    quad = quad + (p.mean.square() * p_inv_var).sum(-1).unsqueeze(1)
    log_det = p.log_std.sum(-1).unsqueeze(1) - q.log_std.sum(-1).unsqueeze(2)
    return 0.5 * quad + log_det - 0.5 * q.mean.shape[-1]


def mixture_kl_bound(component_kl: Tensor, log_weights: Tensor) -> Tensor:
    """Upper bound on KL(q ‖ sum_k w_k p_k) from the component KLs, ``-log sum_k w_k e^{-KL_k}``.

    The KL from a Gaussian to a Gaussian mixture has no closed form. Jensen's inequality on the
    convex log-sum-exp gives E_q[log sum_k w_k p_k(z)] >= log sum_k w_k exp(E_q[log p_k(z)]),
    hence KL(q ‖ sum_k w_k p_k) <= -log sum_k w_k exp(-KL(q ‖ p_k)) (Hershey & Olsen, 2007).
    It is deterministic (no sampling noise), differentiable in the weights, tighter than the
    convexity bound sum_k w_k KL_k, and exact for K = 1. Entries with weight -inf are ignored.
    """
    return -torch.logsumexp(log_weights - component_kl, dim=-1)


# --------------------------------------------------------------------------- key memory


def memory_log_weights(squared_distances: Tensor, delta: float, mask: Tensor | None = None) -> Tensor:
    """log w_k for w_k ∝ 1 / (d_k^2 + delta), normalised over the last dimension.

    ``mask`` (broadcastable, bool) marks usable keys; masked keys get weight 0 (log -inf).
    Every row must keep at least one usable key.
    """
    logits = -torch.log(squared_distances + delta)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


ALL_KEY_CHUNK = 512


def all_key_memory_kl(query_states: Tensor, keys: Tensor, queries: Gaussian, values: Gaussian,
                      usable: Tensor, delta: float, chunk: int = ALL_KEY_CHUNK) -> Tensor:
    """The training prior's KL for every query: KL(q_t ‖ sum_j w_tj N(values_j)) over all usable keys.

    query_states (B, N, S) and keys (B, M, S) give w_tj ∝ 1 / (d_tj^2 + delta) over the keys that
    ``usable`` (N, M) allows; queries (B, N, Z) and values (B, M, Z) give the component KLs; the
    mixture KL is ``mixture_kl_bound``. Returns (B, N).

    Squared differences, not cdist: exact gradients at d = 0 (repeated positions). Long sequences
    are cut into blocks of ``chunk`` queries, each recomputed in the backward pass (activation
    checkpointing) when gradients are needed, so memory grows with chunk·M, not N·M: linear in
    the sequence length for a fixed memory. Sequences of at most ``chunk`` queries (the presets up
    to tau 256 + 256) take the single-block path.
    """

    def block(states: Tensor, mean: Tensor, log_std: Tensor, allowed: Tensor) -> Tensor:
        squared = (states[:, :, None, :] - keys[:, None, :, :]).square().sum(-1)  # (B, n, M)
        log_weights = memory_log_weights(squared, delta, allowed)
        component_kl = pairwise_gaussian_kl(Gaussian(mean, log_std), values)  # (B, n, M)
        return mixture_kl_bound(component_kl, log_weights)

    count = query_states.shape[1]
    if count <= chunk:
        return block(query_states, queries.mean, queries.log_std, usable)
    parts = []
    for start in range(0, count, chunk):
        piece = slice(start, start + chunk)
        args = (query_states[:, piece], queries.mean[:, piece], queries.log_std[:, piece], usable[piece])
        if torch.is_grad_enabled():
            parts.append(torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False))
        else:
            parts.append(block(*args))
    return torch.cat(parts, dim=1)


def nearest_keys(queries: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k nearest keys of each query, batched over sequences.

    queries (B, N, S), keys (B, M, S) → distances (B, N, k) (differentiable) and indices
    (B, N, k) into the M keys, nearest first.
    """
    k = min(k, keys.shape[1])
    # The matrix-product shortcut loses precision exactly where it matters (d ≈ 0).
    distances = torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist")
    nearest, indices = distances.topk(k, dim=-1, largest=False)
    return nearest, indices


def gather_memory(values: Gaussian, indices: Tensor) -> Gaussian:
    """Select memory values (B, M, D) at indices (B, N, k) → Gaussian of shape (B, N, k, D)."""
    batch, n, k = indices.shape
    flat = indices.reshape(batch, n * k, 1).expand(-1, -1, values.mean.shape[-1])
    pick = lambda t: t.gather(1, flat).reshape(batch, n, k, -1)  # noqa: E731
    return Gaussian(pick(values.mean), pick(values.log_std))


@dataclass
class MemoryReadout:
    """What the key memory returns for N queries: the code to decode and how it was chosen."""

    z: Tensor  # (B, N, Z)
    distances: Tensor  # (B, N, K) to the chosen keys, nearest first
    indices: Tensor  # (B, N, K) into the memorised steps
    log_weights: Tensor  # (B, N, K)
    components: Gaussian  # (B, N, K, Z) the chosen values


def read_key_memory(keys: Tensor, values: Gaussian, queries: Tensor, k: int, delta: float,
                    mode: str = "mean") -> MemoryReadout:
    """Top-K read-out of the mixture prior p(z | s, m) at each query.

    mode "mean" returns the mixture mean sum_k w_k mu_k; "sample" draws a component by its weight,
    then z from it.
    """
    if mode not in ("mean", "sample"):
        raise ValueError(f"mode must be 'mean' or 'sample', got {mode!r}")
    distances, indices = nearest_keys(queries, keys, k)
    log_weights = memory_log_weights(distances.square(), delta)
    chosen = gather_memory(values, indices)
    if mode == "mean":
        z = (log_weights.exp().unsqueeze(-1) * chosen.mean).sum(-2)
    else:
        component = torch.distributions.Categorical(logits=log_weights).sample()
        pick = component[..., None, None].expand(-1, -1, 1, chosen.mean.shape[-1])
        z = Gaussian(chosen.mean.gather(2, pick).squeeze(2), chosen.log_std.gather(2, pick).squeeze(2)).rsample()
    return MemoryReadout(z, distances, indices, log_weights, chosen)


# --------------------------------------------------------------------------- blocked moves


def crop_change(pixels: Tensor) -> Tensor:
    """Mean squared pixel change between consecutive crops: (B, T, H, W, C) → (B, T); 0 at t = 0."""
    change = (pixels[:, 1:] - pixels[:, :-1]).square().flatten(2).mean(-1)
    return torch.cat([change.new_zeros(change.shape[0], 1), change], 1)


@dataclass
class MoveEvidence:
    """What the pixels say about each step of a walk (B, T); see ``infer_blocked``."""

    blocked: Tensor  # bool: the view stayed rather than moved
    ambiguous: Tensor  # bool: both explain the pixels equally well (a flat view)
    action_shifts: Tensor  # (B, A, 2) long: each action's pixel shift (row, col), from the observations
    best_shifts: Tensor  # (B, T-1) long: each step's shift (its action's where it slid, an index into shift_grid; (0, 0) otherwise)


def infer_blocked(pixels: Tensor, actions: Tensor, action_signs: Tensor, stay_action: int, margin: float,
                  max_shift: int) -> MoveEvidence:
    """Which moves were blocked, from the observations alone.

    Two hypotheses per move: the view stayed (x_t == x_{t-1}) or it slid by the action's pixel
    shift (x_t == x_{t-1} shifted, compared on the overlap). Each action's shift is estimated per
    sequence: every move votes for each non-zero shift that fits it as well as its best (within
    ``margin``) and better than "stayed" (a view uniform along some direction fits several shifts,
    and votes for all of them), the votes of opposite actions (``action_signs`` (A, P), one column per opposite pair) pooled with the
    sign flipped, and the most voted shift wins (the shortest among equals). A move is blocked iff "stayed" fits better. It
    is *ambiguous* iff the two fits differ by less than ``margin`` (mean squared error, pixels in
    [0, 1]): a flat view, where a free move also leaves the crop unchanged. Observation noise
    adds the same amount to both fits, so the comparison needs no noise threshold. Step 0 (the
    reset) and stay steps are never blocked.
    """
    batch, steps = actions.shape
    actions = actions.long()
    errors, shifts = shift_errors(pixels[:, :-1], pixels[:, 1:], max_shift)  # (B, T-1, n)
    n = shifts.shape[0]
    zero = n // 2  # the symmetric grid of shifts puts (0, 0) in the middle and -shift at n - 1 - index
    stayed = errors[..., zero]
    sliding = errors.masked_fill(torch.arange(n, device=errors.device) == zero, float("inf"))
    best_error = sliding.min(-1, keepdim=True).values
    moving = actions[:, 1:] != stay_action
    # Each move votes for every shift that fits it as well as its best and better than "stayed".
    fits = (sliding <= best_error + margin) & (stayed.unsqueeze(-1) - sliding > margin) & moving.unsqueeze(-1)
    signs = action_signs[actions[:, 1:]]  # (B, T-1, P)
    flipped = fits.flip(-1)  # a negative action votes for the opposite shift (index n - 1 - i)
    shortness = 1e-6 * shifts.square().sum(-1).to(errors.dtype)  # among equal votes, the shortest shift
    pair_shift = []
    for pair in range(action_signs.shape[1]):
        sign = signs[..., pair].unsqueeze(-1)
        votes = (torch.where(sign > 0, fits, torch.where(sign < 0, flipped, torch.zeros_like(fits)))).sum(1)
        pair_shift.append(shifts[(votes.to(errors.dtype) - shortness).argmax(-1)])  # (B, 2)
    per_pair = torch.stack(pair_shift, 1).float()  # (B, P, 2)
    action_shifts = torch.round(action_signs.unsqueeze(0) @ per_pair).long()  # (B, A, 2)
    span = 2 * max_shift + 1
    shift_index = (action_shifts[..., 0] + max_shift) * span + (action_shifts[..., 1] + max_shift)  # (B, A)
    step_index = shift_index.gather(1, actions[:, 1:])  # (B, T-1): each step's action's shift
    moved_error = errors.gather(-1, step_index.unsqueeze(-1)).squeeze(-1)
    blocked = torch.zeros(batch, steps, dtype=torch.bool, device=pixels.device)
    ambiguous = torch.zeros_like(blocked)
    blocked[:, 1:] = moving & (stayed < moved_error)
    ambiguous[:, 1:] = moving & ((stayed - moved_error).abs() < margin)
    # The shift of each step that slid (its action's); (0, 0) where it stayed or the views cannot tell.
    slid = moving & ~blocked[:, 1:] & ~ambiguous[:, 1:]
    best_shifts = torch.where(slid, step_index, torch.full_like(step_index, zero))
    return MoveEvidence(blocked, ambiguous, action_shifts, best_shifts)


# --------------------------------------------------------------------------- edge memory


@dataclass
class EdgeMemory:
    """(midpoint, blocked) pairs of the moves seen so far, per sequence: a wall map in state space."""

    midpoints: Tensor  # (B, E, S)
    blocked: Tensor  # (B, E) bool
    valid: Tensor  # (B, E) bool: a stay step writes nothing
    observed: Tensor | None = None  # (B, E) bool: tried while observing, not decided while imagining; None: all

    @classmethod
    def empty(cls, batch: int, s_dim: int, like: Tensor) -> EdgeMemory:
        return cls(like.new_zeros(batch, 0, s_dim), torch.zeros(batch, 0, dtype=torch.bool, device=like.device),
                   torch.zeros(batch, 0, dtype=torch.bool, device=like.device))

    def seen(self) -> Tensor:
        """(B, E) bool: the entries observed (a move tried), not decided while imagining."""
        return torch.ones_like(self.valid) if self.observed is None else self.observed

    def write(self, midpoints: Tensor, blocked: Tensor, valid: Tensor, *, observed: bool = False) -> EdgeMemory:
        """Append (B, n, S) midpoints with their (B, n) labels; ``valid`` False entries are ignored.
        ``observed``: these moves were tried (False: decided while imagining, a guess)."""
        return EdgeMemory(torch.cat([self.midpoints, midpoints], 1), torch.cat([self.blocked, blocked], 1),
                          torch.cat([self.valid, valid], 1),
                          torch.cat([self.seen(), torch.full_like(valid, observed)], 1))

    def lookup(self, midpoints: Tensor, radius: float) -> tuple[Tensor, Tensor]:
        """The label of the nearest remembered edge within ``radius`` of each (B, S) midpoint.

        Returns (known (B,) bool, blocked (B,) bool); blocked is False where nothing is known.
        """
        if self.midpoints.shape[1] == 0:
            none = torch.zeros(midpoints.shape[0], dtype=torch.bool, device=midpoints.device)
            return none, none
        distance = (self.midpoints - midpoints.unsqueeze(1)).square().sum(-1)
        distance = distance.masked_fill(~self.valid, float("inf"))
        nearest, index = distance.min(dim=1)
        known = nearest <= radius**2
        blocked = self.blocked.gather(1, index.unsqueeze(1)).squeeze(1) & known
        return known, blocked


def extent_prior(visited: Tensor, state: Tensor, move: Tensor, basis: Tensor | None = None, *,
                 edges: EdgeMemory | None = None, world_span: Tensor | None = None) -> Tensor:
    """The fallback for an edge never tried: blocked iff the move's target lies beyond every
    visited state along the move's axis (by more than half a move) — unless the world-span
    prior knows better.

    visited (B, N, S), state and move (B, S) → (B,) bool. A zero move is never blocked.
    ``basis`` (P, S): the lattice's move vectors (one per opposite-action pair), unit length.
    Positions are compared in lattice coordinates (s = c · basis), so a lattice whose axes are not
    orthogonal does not leak one axis into the other; without it, in the state's own coordinates.

    World-span prior (``world_span`` (P,) in moves, learned from the training walks, 0 = unknown;
    needs ``basis`` and ``edges``): a walk that stopped short of a wall, on the side
    opposite a wall it *did* bump into, has seen less than the world's span along that axis — so
    the room left must lie on this side, and the frontier edge is open. Without such a bumped
    wall on the far side (one tried while observing, not one decided while imagining), the room
    could be on either side and the extent rule stands. Assumes: the worlds predicted in are as
    wide as those trained in (true for one image size), and a wall at the far end of what was seen
    is the border (an interior maze wall there misleads it).
    """
    to_lattice = None if basis is None else torch.linalg.pinv(basis)  # (S, P)
    lattice = (lambda x: x) if to_lattice is None else (lambda x: x @ to_lattice)  # noqa: E731
    lattice_visited, lattice_state, lattice_move = lattice(visited), lattice(state), lattice(move)
    length = lattice_move.norm(dim=-1, keepdim=True)
    direction = lattice_move / length.clamp_min(1e-12)
    along = (lattice_visited * direction.unsqueeze(1)).sum(-1)  # (B, N)
    reach = along.max(dim=1).values
    step = length.squeeze(-1)
    target = ((lattice_state + lattice_move) * direction).sum(-1)
    beyond = (target > reach + 0.5 * step) & (step > 1e-6)
    if world_span is None or to_lattice is None or edges is None or not bool(beyond.any()):
        return beyond
    back = along.min(dim=1).values
    span = (world_span.to(direction.dtype) * direction.abs()).sum(-1)  # the span along this axis, in moves
    room = (span > 0) & (span > (reach - back) / step.clamp_min(1e-12) + 0.5)
    # A wall bumped into beyond the far end: an observed blocked edge half a move behind the lowest
    # visited state (a wall the extent rule only guessed while imagining is no evidence).
    edge_along = (lattice(edges.midpoints) * direction.unsqueeze(1)).sum(-1)  # (B, E)
    far_wall = (edges.blocked & edges.valid & edges.seen()
                & ((edge_along - (back - 0.5 * step).unsqueeze(1)).abs() < 0.25 * step.unsqueeze(1))).any(1)
    return beyond & ~(room & far_wall)


def world_span_counts(states: Tensor, basis: Tensor, bins: int) -> Tensor:
    """How many walks spanned 0, 1, ..., bins - 1 moves along each lattice axis: states (B, T, S) of
    observed walks, basis (P, S) unit move vectors → counts (P, bins) (spans ≥ bins land in the last bin)."""
    lattice = states @ torch.linalg.pinv(basis)  # (B, T, P): lattice coordinates, s = c · basis
    spans = (lattice.max(1).values - lattice.min(1).values).round().long().clamp(0, bins - 1)  # (B, P)
    counts = torch.zeros(basis.shape[0], bins, dtype=torch.long, device=states.device)
    return counts.scatter_add_(1, spans.T, torch.ones_like(spans.T))


def wall_behind_counts(states: Tensor, actions: Tensor, basis: Tensor, action_signs: Tensor) -> Tensor:
    """The blocked moves of observed walks and how many of them had the same walk behind them (some step
    on the cell the move tried to reach or beyond it along the move's direction, ``walls_behind``):
    states (B, T, S), actions (B, T), basis (P, S) unit move vectors, action_signs (A, P) → counts (2,)
    long: [blocked moves, of them with the walk behind]. A blocked move is a move action after which
    the state did not change."""
    lattice = (states @ torch.linalg.pinv(basis)).round()  # (B, T, P)
    signs = action_signs[actions.long()].to(lattice.dtype)  # (B, T, P)
    moving = signs.abs().sum(-1) > 0
    moving[:, 0] = False  # the reset
    stayed = torch.cat([torch.zeros_like(moving[:, :1]), (lattice[:, 1:] == lattice[:, :-1]).all(-1)], 1)
    blocked = moving & stayed
    behind = walls_behind(lattice, signs, blocked, lattice).any(-1)
    return torch.stack([blocked.sum(), behind.sum()])


def span_from_counts(counts: Tensor, share: float = 0.01) -> Tensor:
    """The world's span along each axis (P,), in moves: the largest span that at least ``share`` of
    the training walks reach or exceed (a rare mis-inferred move cannot stretch it). 0 where nothing
    was counted."""
    total = counts.sum(1, keepdim=True).clamp_min(1)
    reaching = counts.flip(1).cumsum(1).flip(1)  # walks whose span is >= each span
    often = (reaching.float() / total >= share) & (reaching > 0)
    index = torch.arange(counts.shape[1], device=counts.device).expand_as(counts)
    return torch.where(often, index, torch.zeros_like(index)).max(1).values

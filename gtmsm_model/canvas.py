"""The pixel side of GTM-SM: how far the view slides per move, and the canvas of decoded memories.

* **Pixel shifts** (``shift_errors``): how well each crop matches the previous one slid by every
  integer shift. The edge wall model reads blocked moves off these fits (``memory.infer_blocked``);
  the pixel map reads each action's shift off the best ones.
* **Pixel map** A (state units → pixel offsets), estimated from the observations alone
  (``estimate_pixel_map``): each action's most voted pixel shift regressed on its state step.
* **Canvas**: the decoded memorised crops pasted into one image at pixel offsets A·s_k (overlaps
  averaged), read at A·s_t for a query far from every key (``compose_canvas``, ``read_canvas``).
  Assumes: a move translates the view by a fixed pixel shift (true for ImageNav's sliding window,
  not for a 3-D first-person camera).

Shapes: B sequences, T steps, M memorised crops, N queries, S = s_dim, crops (H, W, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def shift_grid(max_shift: int, device: torch.device | str | None = None) -> Tensor:
    """Every integer pixel shift (dy, dx) with |dy|, |dx| <= max_shift, as (n_shifts, 2) long, row-major:
    (0, 0) is in the middle and the shift at index i is minus the one at n_shifts - 1 - i."""
    span = torch.arange(-max_shift, max_shift + 1, device=device)
    return torch.cartesian_prod(span, span)


def shift_errors(previous: Tensor, current: Tensor, max_shift: int) -> tuple[Tensor, Tensor]:
    """Mean squared error of aligning ``current`` with ``previous`` moved by every integer shift.

    previous, current (..., H, W, C). Shift (dy, dx) hypothesises ``current[i, j] ==
    previous[i + dy, j + dx]`` (the window moved by dy rows and dx columns), compared on the
    overlap. Returns errors (..., n_shifts) and the shifts (n_shifts, 2) as long.
    """
    shifts = shift_grid(max_shift, previous.device)
    height, width = previous.shape[-3], previous.shape[-2]
    errors = []
    for dy, dx in shifts.tolist():
        a = previous[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0), :]
        b = current[..., max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0), :]
        errors.append((a - b).square().flatten(-3).mean(-1))
    return torch.stack(errors, -1), shifts


def estimate_pixel_map(pixels: Tensor, actions: Tensor, states: Tensor, moved: Tensor,
                       num_actions: int, max_shift: int, *,
                       best_shifts: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The linear map A from state units to pixel offsets (row, col), per sequence, from observations.

    For each free move (``moved`` (B, T) True) the integer pixel shift that best aligns
    x_{t-1} with x_t is a vote for its action; each action's most voted shift is regressed on
    that action's mean state step (least squares over the actions). Returns A (B, 2, S) and a
    (B,) bool saying whether the sequence had enough moves to fix A. ``best_shifts`` (B, T-1):
    those best shifts as indices into ``shift_grid(max_shift)``, when already measured (the edge
    wall model measures them while observing, ``MoveEvidence.best_shifts``); else measured here.
    """
    batch, steps = actions.shape
    s_dim = states.shape[-1]
    shifts = shift_grid(max_shift, pixels.device)
    best = best_shifts if best_shifts is not None else best_shift(pixels, max_shift)  # (B, T-1)
    # A free move whose best shift is (0, 0) saw a view that any slide along it leaves unchanged (flat, or
    # uniform along the move): it says nothing about the action's shift, so it does not vote.
    moved = moved[:, 1:] & (best != shifts.shape[0] // 2)
    acts = actions[:, 1:].long()
    slot = acts * shifts.shape[0] + best
    votes = torch.zeros(batch, num_actions * shifts.shape[0], device=pixels.device)
    votes.scatter_add_(1, slot, moved.float())
    votes = votes.view(batch, num_actions, -1)
    count = votes.sum(-1)  # (B, A)
    mode_shift = shifts[votes.argmax(-1)].float()  # (B, A, 2)
    step = states[:, 1:] - states[:, :-1]  # (B, T-1, S)
    one_hot = torch.nn.functional.one_hot(acts, num_actions).float() * moved.unsqueeze(-1).float()
    mean_step = (one_hot.transpose(1, 2) @ step) / count.clamp_min(1).unsqueeze(-1)  # (B, A, S)
    weight = (count > 0).float().unsqueeze(-1)
    x, y = mean_step * weight, mode_shift * weight
    gram = x.transpose(1, 2) @ x + 1e-6 * torch.eye(s_dim, device=x.device)
    solution = torch.linalg.solve(gram, x.transpose(1, 2) @ y)  # (B, S, 2)
    rank_ok = torch.linalg.matrix_rank(x.transpose(1, 2) @ x) >= min(s_dim, 2)
    return solution.transpose(1, 2), rank_ok



def prefer_short(errors: Tensor, shifts: Tensor) -> Tensor:
    """``shift_errors``' errors with ties broken towards the shortest shift: a view uniform along one
    direction fits every shift along it equally, and the first in the grid's order (the longest)
    would otherwise win."""
    return errors + 1e-9 * shifts.square().sum(-1).to(errors.dtype)


def best_shift(pixels: Tensor, max_shift: int) -> Tensor:
    """The shift (an index into ``shift_grid(max_shift)``) that best aligns each crop with the next
    (the shortest among equals): pixels (B, T, H, W, C) → (B, T-1) long."""
    return prefer_short(*shift_errors(pixels[:, :-1], pixels[:, 1:], max_shift)).argmin(-1)


@dataclass
class Canvas:
    """Crops pasted into one image per sequence: pixel sums and counts, and the image origin."""

    total: Tensor  # (B, Hc, Wc, C)
    count: Tensor  # (B, Hc, Wc)
    origin: Tensor  # (B, 2) long: the canvas pixel (0, 0) is at this pixel offset


def _crop_index(offsets: Tensor, origin: Tensor, size: tuple[int, int], crop: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Flat canvas indices (B, N, h*w) of crops with top-left ``offsets`` (B, N, 2), and in-bounds mask."""
    rows = torch.arange(crop[0], device=offsets.device)
    cols = torch.arange(crop[1], device=offsets.device)
    local = offsets - origin.unsqueeze(1)
    r = local[..., 0, None, None] + rows[:, None]  # (B, N, h, 1)
    c = local[..., 1, None, None] + cols[None, :]  # (B, N, 1, w)
    r, c = torch.broadcast_tensors(r, c)
    inside = (r >= 0) & (r < size[0]) & (c >= 0) & (c < size[1])
    flat = (r.clamp(0, size[0] - 1) * size[1] + c.clamp(0, size[1] - 1)).flatten(2)
    return flat, inside.flatten(2)


def compose_canvas(crops: Tensor, offsets: Tensor, valid: Tensor | None = None, max_side: int = 1024) -> Canvas | None:
    """Paste crops (B, M, h, w, C) at integer pixel offsets (B, M, 2), overlaps averaged.

    ``valid`` (B, M) bool marks crops to paste. Returns None when the pasted extent exceeds
    ``max_side`` pixels (a compute guard against a nonsensical pixel map, not a grid size).
    """
    batch, _, h, w, channels = crops.shape
    valid = torch.ones(crops.shape[:2], dtype=torch.bool, device=crops.device) if valid is None else valid
    big = torch.iinfo(torch.long).max // 4
    low = torch.where(valid.unsqueeze(-1), offsets, torch.full_like(offsets, big)).min(1).values
    high = torch.where(valid.unsqueeze(-1), offsets, torch.full_like(offsets, -big)).max(1).values
    low = torch.where(valid.any(1, keepdim=True), low, torch.zeros_like(low))
    high = torch.where(valid.any(1, keepdim=True), high, torch.zeros_like(high))
    size = (high - low).max(0).values + torch.tensor([h, w], device=crops.device)
    if int(size.max()) > max_side:
        return None
    size = (int(size[0]), int(size[1]))
    flat, inside = _crop_index(offsets, low, size, (h, w))
    use = (inside & valid.unsqueeze(-1)).float()  # (B, M, h*w)
    total = crops.new_zeros(batch, size[0] * size[1], channels)
    count = crops.new_zeros(batch, size[0] * size[1])
    values = crops.flatten(2, 3) * use.unsqueeze(-1)  # (B, M, h*w, C)
    total.scatter_add_(1, flat.flatten(1).unsqueeze(-1).expand(-1, -1, channels), values.flatten(1, 2))
    count.scatter_add_(1, flat.flatten(1), use.flatten(1))
    return Canvas(total.view(batch, *size, channels), count.view(batch, *size), low)


def read_canvas(canvas: Canvas, offsets: Tensor, crop: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The crops (B, N, h, w, C) at integer offsets (B, N, 2) and where the canvas had a pixel (B, N, h, w)."""
    batch, height, width, channels = canvas.total.shape
    flat, inside = _crop_index(offsets, canvas.origin, (height, width), crop)
    total = canvas.total.reshape(batch, -1, channels)
    count = canvas.count.reshape(batch, -1)
    n = offsets.shape[1]
    gathered = total.gather(1, flat.flatten(1).unsqueeze(-1).expand(-1, -1, channels)).view(batch, n, -1, channels)
    counts = count.gather(1, flat.flatten(1)).view(batch, n, -1) * inside
    pixels = gathered / counts.clamp_min(1).unsqueeze(-1)
    return pixels.view(batch, n, *crop, channels), (counts > 0).view(batch, n, *crop)


def to_pixel_offsets(pixel_map: Tensor, states: Tensor) -> Tensor:
    """A·s rounded to integer pixel offsets: pixel_map (B, 2, S), states (B, N, S) → (B, N, 2) long."""
    return torch.round(states @ pixel_map.transpose(1, 2)).long()

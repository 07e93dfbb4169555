"""The no-learning reference: localise by path integration, predict by looking the crop up.

Nothing here is trained; it is the bar that tells what *learning* adds. Written for the sliding
window of ImageNav (any grid size, start or walls; it is never told the grid, the border or the start):

* **localise**: a move is blocked iff the crop did not change (mean squared change ≤ ``same``);
  the state is the running sum of the unblocked moves' unit steps (one lattice cell per move);
* **imagine**: a move whose edge (cell, direction) was tried while memorising goes as it went then;
  an untried edge is blocked iff its target leaves the box of cells visited so far (the border of
  what was seen is most likely a wall);
* **predict** (``LocaliseLookup``): the crop last memorised at the predicted cell; a cell never seen
  gets the memorisation mean crop. ``LocaliseCanvas``: every memorised raw crop pasted on a canvas
  at its cell's pixel offset (each action's pixel shift is the most common best-aligning shift of
  its unblocked moves), each predicted crop read off the canvas, pixels never seen = the
  memorisation mean colour — it composes novel views from overlapping memories.

Assumes: a free move changes the view (a flat view fools it, exactly like a wall), a move slides
the view by a fixed pixel shift (canvas), walls do not change.
"""

from __future__ import annotations

import numpy as np

from gtmsm_model.baselines.base import check_prediction_inputs
from gtmsm_model.baselines.bounds import FixedModel
from gtmsm_model.canvas import shift_errors

UNIT = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])  # stay, up, down, left, right: Action's order


def localise(pixels: np.ndarray, actions: np.ndarray, same: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """One walk: pixels (T, H, W, C) in [0, 1], actions (T,) → cells (T, 2) and blocked (T,) bool."""
    change = ((pixels[1:] - pixels[:-1]) ** 2).mean(axis=(1, 2, 3))
    moving = actions[1:] != 0
    blocked = np.concatenate([[False], moving & (change <= same)])
    steps = UNIT[actions] * (~blocked)[:, None]
    steps[0] = 0
    return np.cumsum(steps, axis=0), blocked


def imagine(cells: np.ndarray, blocked: np.ndarray, actions: np.ndarray, future: np.ndarray) -> np.ndarray:
    """Cells (N, 2) of the predicted steps: ``future`` (N,) actions from the last memorised cell."""
    edges = {(tuple(cells[t - 1]), int(actions[t])): bool(blocked[t]) for t in range(1, len(actions))}
    low, high = cells.min(0), cells.max(0)
    cell, out = cells[-1].copy(), np.empty((len(future), 2), dtype=np.int64)
    for i, action in enumerate(future):
        target = cell + UNIT[action]
        edge = (tuple(cell), int(action))
        stop = edges[edge] if edge in edges else bool(((target < low) | (target > high)).any())
        cell = cell if stop else target
        low, high = np.minimum(low, cell), np.maximum(high, cell)
        out[i] = cell
    return out


class LocaliseLookup(FixedModel):
    """No learning: path integration with "blocked iff the crop did not change", the raw crop last
    memorised at the predicted cell (the memorisation mean where the cell was never seen)."""

    name = "no-learning localise + lookup"

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau).astype(np.float32) / 255.0
        out = np.empty((len(actions), actions.shape[1] - tau, *memorised.shape[2:]), np.float32)
        for b in range(len(actions)):
            cells, blocked = localise(memorised[b], actions[b, :tau])
            future = imagine(cells, blocked, actions[b, :tau], actions[b, tau:])
            out[b] = self.read(memorised[b], actions[b, :tau], cells, blocked, future)
        return out

    def read(self, pixels: np.ndarray, actions: np.ndarray, cells: np.ndarray, blocked: np.ndarray,
             future: np.ndarray) -> np.ndarray:
        latest = {tuple(cell): t for t, cell in enumerate(cells)}  # the last visit wins
        mean = pixels.mean(0)
        return np.stack([pixels[latest[tuple(c)]] if tuple(c) in latest else mean for c in future])


class LocaliseCanvas(LocaliseLookup):
    """No learning: the same localisation, raw memorised crops pasted on a canvas at their pixel
    offsets, each predicted crop read off it (unseen pixels: the memorisation mean colour)."""

    name = "no-learning localise + canvas"

    def read(self, pixels: np.ndarray, actions: np.ndarray, cells: np.ndarray, blocked: np.ndarray,
             future: np.ndarray) -> np.ndarray:
        height, width, channels = pixels.shape[1:]
        max_shift = min(height, width) - 2
        errors, shifts = shift_errors(_torch(pixels[:-1]), _torch(pixels[1:]), max_shift)
        best = errors.argmin(-1).numpy()
        shift = {}
        for action in (1, 2, 3, 4):
            use = (actions[1:] == action) & ~blocked[1:]
            if use.any():
                shift[action] = shifts[np.bincount(best[use], minlength=len(shifts)).argmax()].numpy()
        # Pixels per cell along each axis, from whichever action of the axis moved (0 if none did).
        per_row = next((int(s[0]) // UNIT[a][0] for a, s in shift.items() if UNIT[a][0]), 0)
        per_col = next((int(s[1]) // UNIT[a][1] for a, s in shift.items() if UNIT[a][1]), 0)
        offsets = cells * np.array([per_row, per_col])
        wanted = future * np.array([per_row, per_col])
        low = np.minimum(offsets.min(0), wanted.min(0))
        high = np.maximum(offsets.max(0), wanted.max(0)) + np.array([height, width])
        total = np.zeros((*(high - low), channels), np.float64)
        count = np.zeros((*(high - low), 1), np.float64)
        for crop, (row, col) in zip(pixels, offsets - low, strict=True):
            total[row:row + height, col:col + width] += crop
            count[row:row + height, col:col + width] += 1
        mean_colour = pixels.mean(axis=(0, 1, 2))
        canvas = np.where(count > 0, total / np.maximum(count, 1), mean_colour)
        return np.stack([canvas[r:r + height, c:c + width] for r, c in wanted - low]).astype(np.float32)


def _torch(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))

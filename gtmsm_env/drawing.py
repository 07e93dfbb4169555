"""Frames as numpy arrays: the image upscaled, the window outlined, the maze's walls drawn.

Used by ``render_mode="rgb_array"`` of both envs and by the pygame views (which draw the same
wall segments); needs no display and no pygame.
"""

from __future__ import annotations

import numpy as np

from gtmsm_env.geometry import GridGeometry
from gtmsm_env.world import Action

WALL_CORE = (255, 255, 255)
"""The wall's bright core."""
WALL_OUTLINE = (0, 0, 0)
"""The dark outline around it: every background contrasts with one of the two tones."""


def wall_widths(scale: float) -> tuple[int, int]:
    """(core, outline) widths in pixels of a wall drawn at ``scale`` pixels per image pixel: the
    core a quarter of an image pixel (at least 1), the outline half the core (at least 1) each side."""
    core = max(1, round(scale / 4))
    return core, max(1, core // 2)


def wall_segments(
    blocked: np.ndarray, geometry: GridGeometry, scale: float
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The interior walls of ``blocked`` as line segments ``((x0, y0), (x1, y1))`` in pixels of an
    image drawn ``scale`` times its size. A cell is drawn at its window's centre; the wall between
    two cells is the segment, one grid step long, that crosses their link at its midpoint (so the
    walls form a maze over the window centres)."""
    rows, cols = blocked.shape[:2]
    step, half = geometry.step_size, geometry.crop_size / 2
    segments = []
    for row, col in zip(*np.nonzero(blocked[:, :-1, Action.RIGHT]), strict=True):
        x = (step * (col + 0.5) + half) * scale
        y = (step * row + half) * scale
        segments.append(((x, y - step * scale / 2), (x, y + step * scale / 2)))
    for row, col in zip(*np.nonzero(blocked[:-1, :, Action.DOWN]), strict=True):
        y = (step * (row + 0.5) + half) * scale
        x = (step * col + half) * scale
        segments.append(((x - step * scale / 2, y), (x + step * scale / 2, y)))
    return segments


def draw_frame(
    image: np.ndarray,
    position: tuple[int, int],
    geometry: GridGeometry,
    scale: int,
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """``image`` upscaled ``scale`` times (nearest neighbour) with the window at ``position``
    outlined in yellow and the interior walls of ``blocked`` (if any) two-toned, a white core in a
    black outline, so they show on any image: ``(H * scale, W * scale, 3)`` uint8."""
    frame = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    if blocked is not None:
        segments = wall_segments(blocked, geometry, scale)
        core, outline = wall_widths(scale)
        # Every outline first, then every core: where walls meet, no outline cuts through a core.
        for pad, color in ((outline, WALL_OUTLINE), (0, WALL_CORE)):
            for (x0, y0), (x1, y1) in segments:
                top = round(min(y0, y1)) - core // 2 - pad
                left = round(min(x0, x1)) - core // 2 - pad
                bottom = round(max(y0, y1)) + (core + 1) // 2 + pad
                right = round(max(x0, x1)) + (core + 1) // 2 + pad
                frame[max(top, 0) : bottom, max(left, 0) : right] = color
    top = geometry.step_size * position[0] * scale
    left = geometry.step_size * position[1] * scale
    size = geometry.crop_size * scale
    thickness = max(1, scale // 4)
    color = np.array([255, 220, 0], np.uint8)
    frame[top : top + thickness, left : left + size] = color
    frame[top + size - thickness : top + size, left : left + size] = color
    frame[top : top + size, left : left + thickness] = color
    frame[top : top + size, left + size - thickness : left + size] = color
    return frame

"""Where the window can be: the grid of window positions an image, a crop size and a step size make.

No flags here: errors name the keyword argument (``crop_size``, ``step_size``, ``image_size``);
entry points word them with their flags (:func:`gtmsm_cli.flags.flag_text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtmsm_env.images import ImageSize, canonical_image_size, image_shape_of, shape_text


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``: ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


@dataclass(frozen=True)
class GridGeometry:
    """Where the window can be: ``grid_shape`` = ``(rows, cols)`` positions, window top-left at
    ``step_size * (row, col)``, on ``image_height`` x ``image_width`` images."""

    image_height: int
    image_width: int
    crop_size: int
    step_size: int

    @classmethod
    def validated(cls, image_size: object, crop_size: object, step_size: object) -> GridGeometry:
        """``image_size``: an int (square) or a ``(height, width)`` pair."""
        height, width = image_shape_of(image_size)
        crop_size = check_int("crop_size", crop_size, 1)
        step_size = check_int("step_size", step_size, 1)
        if crop_size > min(height, width):
            raise ValueError(
                f"crop_size={crop_size} is larger than image_size="
                f"{canonical_image_size((height, width))}"
                + ("" if height == width else f" ({shape_text((height, width))})")
                + ": the window must fit inside the image"
            )
        return cls(height, width, crop_size, step_size)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the images."""
        return self.image_height, self.image_width

    @property
    def image_size(self) -> ImageSize:
        """The images' size as given: an int for square images, else ``(height, width)``."""
        return canonical_image_size(self.image_shape)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, cols)``: ``(height - crop) // step + 1`` by ``(width - crop) // step + 1``."""
        rows = (self.image_height - self.crop_size) // self.step_size + 1
        cols = (self.image_width - self.crop_size) // self.step_size + 1
        return rows, cols

    def windows(self, images: np.ndarray) -> np.ndarray:
        """All crops of ``images`` ``(n, H, W, 3)``: ``(n, rows * cols, crop, crop, 3)``, row-major."""
        rows, cols = self.grid_shape
        crop, step = self.crop_size, self.step_size
        view = np.lib.stride_tricks.sliding_window_view(images, (crop, crop), axis=(1, 2))
        view = view[:, : (rows - 1) * step + 1 : step, : (cols - 1) * step + 1 : step]
        # (n, rows, cols, 3, crop, crop) -> (n, rows * cols, crop, crop, 3)
        return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3)).reshape(
            len(images), rows * cols, crop, crop, 3
        )


def single_position_problem(image_size: object, crop_size: int, step_size: int) -> str | None:
    """Why a world is useless for collecting or modelling walks (``None`` if it is not): a 1x1 grid,
    where the window can never move. Worded with the fields that set it (``crop_size``,
    ``step_size``)."""
    height, width = image_shape_of(image_size)
    if (height - crop_size) // step_size + 1 > 1 or (width - crop_size) // step_size + 1 > 1:
        return None
    room = max(height, width) - crop_size
    if room <= 0:
        return (f"crop_size={crop_size} covers the whole {shape_text((height, width))} image: the window "
                "can never move (use a smaller crop_size)")
    return (f"step_size={step_size} leaves a {crop_size}-pixel window one position on "
            f"{shape_text((height, width))} images (a 1x1 grid): it can never move; use step_size <= {room}")

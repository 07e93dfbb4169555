"""Where the window can be: the grid of window positions an image, a crop size and a step size make.

No flags here: errors name the keyword argument (``crop_size``, ``step_size``, ``image_size``);
entry points word them with their flags (:func:`gtmsm_cli.flags.flag_text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtmsm_cli import checks
from gtmsm_cli.inputs import size_text
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


# Bytes an env holds per grid position besides its crop: the visited flag and the five blocked
# moves (bools); the single env also keeps the blocked moves as a list (8 bytes a pointer).
_POSITION_BYTES = 1 + 5
_LIST_BYTES = 5 * 8
# Bytes a vector env holds per env besides its images and tables: its generator (~0.9 kB measured
# with tracemalloc), positions, steps and masks.
_ENV_BYTES = 1000


def env_memory_bytes(geometry: GridGeometry, num_envs: int | None = None) -> tuple[int, int]:
    """``(per env, total)`` bytes the envs of ``geometry`` hold after ``reset``: the image, the table
    of every window's crop, the per-position flags. ``num_envs=None``: one :class:`ImageNavEnv`,
    else a vector env of ``num_envs``. A lower bound (temporaries come on top): what it refuses
    can never fit."""
    height, width = geometry.image_shape
    rows, cols = geometry.grid_shape
    cells = rows * cols
    table = cells * geometry.crop_size**2 * 3
    per_env = height * width * 3 + table + cells * _POSITION_BYTES
    if num_envs is None:
        return per_env + cells * _LIST_BYTES, per_env + cells * _LIST_BYTES
    per_env += _ENV_BYTES
    return per_env, per_env * num_envs


def env_memory_problem(
    geometry: GridGeometry, num_envs: int | None = None, available: float | None = None
) -> str | None:
    """Why the env(s) of ``geometry`` cannot fit in ``available`` bytes (default: this machine's
    memory; ``None`` if they fit or the OS does not say), naming the arguments that ask for most:
    ``image_size``/``crop_size``/``step_size`` when one env is too big, else ``num_envs``. Checked
    before anything is allocated, so an impossible size fails at once, not in a ``MemoryError``
    after minutes."""
    available = checks.physical_memory() if available is None else available
    per_env, total = env_memory_bytes(geometry, num_envs)
    if available is None or total <= available:
        return None
    rows, cols = geometry.grid_shape
    if per_env > available or num_envs is None:
        return (f"image_size={geometry.image_size}, crop_size={geometry.crop_size}, "
                f"step_size={geometry.step_size} make {rows}x{cols} window positions: "
                f"{'each env' if num_envs is not None else 'the env'} needs about {size_text(per_env)} "
                f"for its image and window table; this machine has {size_text(available)} of memory "
                "(use a smaller image_size or crop_size, or a larger step_size)")
    return (f"num_envs={num_envs} needs about {size_text(total)} for its images and crop tables "
            f"({size_text(per_env)} per env); this machine has {size_text(available)} of memory")


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

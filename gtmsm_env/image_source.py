"""The image-source API of ImageNav: image sizes and the :class:`ImageSource` base class.

Every source yields RGB ``uint8`` images of one fixed ``image_size``: an int for square images, or a
``(height, width)`` pair. The sources themselves live in :mod:`gtmsm_env.procedural` (the embedded
default) and :mod:`gtmsm_env.images` (arrays, files, folders, and :func:`make_image_source`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

ImageSize = int | tuple[int, int]


def image_shape_of(image_size: object) -> tuple[int, int]:
    """``(height, width)`` of an ``image_size``: an int ``S`` (square, ``(S, S)``) or a
    ``(height, width)`` pair of ints; ``TypeError``/``ValueError`` naming the problem otherwise."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(
                f"image_size must be an int or a (height, width) pair, got {len(image_size)} "
                f"values {tuple(image_size)}"
            )
        height = _check_side("image_size height", image_size[0])
        width = _check_side("image_size width", image_size[1])
        return height, width
    side = _check_side("image_size", image_size)
    return side, side


class ImageSizeError(ValueError):
    """Images whose size is not the ``image_size`` asked for; ``image_shape`` is their own
    ``(height, width)``, so an entry point can say which of its flags would match them."""

    def __init__(self, message: str, image_shape: tuple[int, int]) -> None:
        super().__init__(message)
        self.image_shape = image_shape


def canonical_image_size(image_size: object) -> ImageSize:
    """``image_size`` in its one stored form: an int for a square image, else ``(height, width)``."""
    height, width = image_shape_of(image_size)
    return height if height == width else (height, width)


def shape_text(shape: tuple[int, int]) -> str:
    """``(32, 48)`` -> ``"32x48 (height x width)"``; square shapes read ``"32x32"``."""
    height, width = shape
    return f"{height}x{width}" if height == width else f"{height}x{width} (height x width)"


class ImageSource(abc.ABC):
    """A supply of RGB uint8 images of ``image_size``: an int for square images, else
    ``(height, width)``; ``image_shape`` is always ``(height, width)``."""

    image_size: ImageSize

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return image_shape_of(self.image_size)

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Return ``n`` images, shape ``(n, height, width, 3)``, uint8, drawn with ``rng``."""

    def sample_each(self, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """One image per generator; image ``i`` equals ``sample(rngs[i], 1)[0]``.

        The vector env uses this so that env ``i`` draws exactly what a single env with the same
        generator would draw. Sources may override it with a batched implementation.
        """
        if len(rngs) == 0:
            return np.zeros((0, *self.image_shape, 3), np.uint8)
        return np.concatenate([self.sample(rng, 1) for rng in rngs], axis=0)

    def describe(self) -> str:
        """A short human-readable description, stored in dataset metadata."""
        return type(self).__name__


def _check_side(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_image_count(n: object) -> int:
    """``n`` as an int if it is a non-negative int (how many images a source is asked for)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)

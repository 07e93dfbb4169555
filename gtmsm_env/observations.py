"""Observation modes: which of the crop, the true position and the visited map an env returns."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

# Parts of an observation mode, in the order they appear in a Dict observation.
OBSERVATION_PARTS = ("crop", "position", "visited")
OBSERVATION_MODES = (
    "crop", "crop+position", "crop+visited", "crop+position+visited", "position+visited",
)


def validate_observation(observation: object) -> tuple[str, ...]:
    """The parts of an observation mode (``"crop+visited"`` -> ``("crop", "visited")``)."""
    if observation not in OBSERVATION_MODES:
        raise ValueError(f"observation must be one of {OBSERVATION_MODES}, got {observation!r}")
    return tuple(str(observation).split("+"))


def observation_space_for(
    parts: tuple[str, ...], crop_size: int, grid_shape: tuple[int, int]
) -> spaces.Space:
    """The observation space of one env: the crop's ``Box`` for ``("crop",)``, else a ``Dict``."""
    crop = spaces.Box(0, 255, (crop_size, crop_size, 3), np.uint8)
    if parts == ("crop",):
        return crop
    every = {
        "crop": crop,
        "position": spaces.Box(0.0, 1.0, (2,), np.float32),
        "visited": spaces.Box(0.0, 1.0, grid_shape, np.float32),
    }
    return spaces.Dict({part: every[part] for part in parts})


def observation_mode_of(space: spaces.Space) -> str:
    """The observation mode whose space has the structure of ``space`` (e.g. a trained policy's);
    ``ValueError`` if none does."""
    # (crop, crop, 3), or (3, crop, crop) as SB3 stores an image space it transposed
    if isinstance(space, spaces.Box) and len(space.shape) == 3 and 3 in (space.shape[0], space.shape[-1]):
        return "crop"
    if isinstance(space, spaces.Dict):
        mode = "+".join(part for part in OBSERVATION_PARTS if part in space.spaces)
        if mode in OBSERVATION_MODES and len(space.spaces) == mode.count("+") + 1:
            return mode
    raise ValueError(f"no ImageNav observation mode has the space {space}")

"""ImageNav-v0: a Gymnasium environment where an agent moves a small window over an image.

Importing the package registers ``ImageNav-v0`` (``gym.make("ImageNav-v0")``; also reachable as
``gym.make("gtmsm_env:ImageNav-v0")``), with a native vector env for
``gym.make_vec("ImageNav-v0", num_envs=N, vectorization_mode="vector_entry_point")``.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from gtmsm_env.env import (
    ACTION_NAMES,
    DEFAULT_MAX_EPISODE_STEPS,
    DOWN,
    LEFT,
    RIGHT,
    STAY,
    UP,
    GridGeometry,
    ImageNavEnv,
)
from gtmsm_env.images import (
    ArrayImages,
    FolderImages,
    ImageSource,
    NpzImages,
    ProceduralImages,
    make_image_source,
    procedural_images,
)
from gtmsm_env.vector_env import ImageNavVectorEnv

__version__ = "0.1.0"
ENV_ID = "ImageNav-v0"

# Guarded so that a re-import (or importlib.reload) does not warn about re-registration.
if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="gtmsm_env.env:ImageNavEnv",
        vector_entry_point="gtmsm_env.vector_env:ImageNavVectorEnv",
        max_episode_steps=DEFAULT_MAX_EPISODE_STEPS,
    )

__all__ = [
    "ACTION_NAMES",
    "DOWN",
    "ENV_ID",
    "LEFT",
    "RIGHT",
    "STAY",
    "UP",
    "ArrayImages",
    "FolderImages",
    "GridGeometry",
    "ImageNavEnv",
    "ImageNavVectorEnv",
    "ImageSource",
    "NpzImages",
    "ProceduralImages",
    "Rollouts",
    "collect_rollouts",
    "make_image_source",
    "procedural_images",
    "random_walk_actions",
]


def __getattr__(name: str) -> Any:
    # The rollout names load lazily, so `python -m gtmsm_env.rollouts` runs the module once.
    if name in ("Rollouts", "collect_rollouts", "random_walk_actions"):
        from gtmsm_env import rollouts

        return getattr(rollouts, name)
    raise AttributeError(f"module 'gtmsm_env' has no attribute {name!r}")

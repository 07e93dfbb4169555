"""ImageNav-v0: a Gymnasium environment where an agent moves a small window over an image.

Importing the package registers ``ImageNav-v0`` (``gym.make("ImageNav-v0")``; also reachable as
``gym.make("gtmsm_env:ImageNav-v0")``), with a native vector env for
``gym.make_vec("ImageNav-v0", num_envs=N, vectorization_mode="vector_entry_point")``, and the
variants in ``REGISTERED_ENVS`` (``ImageNavMaze-v0``, ``ImageNavCoverage-v0``,
``ImageNavCoverageMaze-v0``; see the "Registered Configurations" of ``ImageNavEnv``).

This package never imports torch; the Stable-Baselines3 helpers live in ``gtmsm_model.sb3``.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from gtmsm_env.env import DEFAULT_MAX_EPISODE_STEPS, DOWN, LEFT, RIGHT, STAY, UP, ImageNavEnv
from gtmsm_env.geometry import GridGeometry
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
from gtmsm_env.world import ACTION_NAMES, NUM_ACTIONS, Action, World

__version__ = "0.1.0"
ENV_ID = "ImageNav-v0"
COVERAGE_EPISODE_STEPS = 256
_COVERAGE = {"task": "coverage", "observation": "crop+position+visited"}
# id -> (kwargs, max_episode_steps)
REGISTERED_ENVS: dict[str, tuple[dict[str, Any], int]] = {
    ENV_ID: ({}, DEFAULT_MAX_EPISODE_STEPS),
    "ImageNavMaze-v0": ({"walls": "maze"}, DEFAULT_MAX_EPISODE_STEPS),
    "ImageNavCoverage-v0": (_COVERAGE, COVERAGE_EPISODE_STEPS),
    "ImageNavCoverageMaze-v0": ({**_COVERAGE, "walls": "maze"}, COVERAGE_EPISODE_STEPS),
}

for _env_id, (_kwargs, _steps) in REGISTERED_ENVS.items():
    # Guarded so that a re-import (or importlib.reload) does not warn about re-registration.
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point="gtmsm_env.env:ImageNavEnv",
            vector_entry_point="gtmsm_env.vector_env:ImageNavVectorEnv",
            max_episode_steps=_steps,
            kwargs=dict(_kwargs),
        )

__all__ = [
    "ACTION_NAMES",
    "NUM_ACTIONS",
    "Action",
    "World",
    "DOWN",
    "ENV_ID",
    "REGISTERED_ENVS",
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

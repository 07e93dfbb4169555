"""The evaluation conditions, one registry for every benchmark, and their held-out rollouts.

Every condition's test rollouts come from ``heldout_rollouts(..., seed=EVAL_SEED)``: the same for
every training seed, so the spread over seeds is the models' alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gtmsm_env.rollouts import Rollouts, collect_rollouts
from gtmsm_env.world import NUM_ACTIONS, World
from gtmsm_model.data import HELDOUT_SEED_OFFSET, heldout_rollouts

TRAINING_DISTRIBUTION = ("procedural images, centre start, border walls only, reference random walk "
                         "(held directions), 288-step sequences (tau 256)")
VALIDATION_SEED = 500
"""Validation rollouts of the sweep: ``heldout_rollouts(..., seed=VALIDATION_SEED)``, a stream
disjoint from training's and from the test conditions' (``EVAL_SEED``)."""
EVAL_SEED = 0
MAZE_WALL_DENSITY = 0.05
PHOTO_PATCH_SEED = 12345
"""The seed of the natural-photo patches the photos conditions draw their images from."""
IMAGE_SETS = ("procedural", "photos", "flat photos", "flat scenes")
"""Where a condition's images come from: the default procedural scenes (a held-out seed stream), or
an image file written for the benchmark (``image_file``): texture-rich photo patches (scikit-learn's
sample photos), photo patches with large flat areas (scikit-image's photos) or procedural scenes
with large flat areas (``gtmsm_env.flat_scenes``). No model trains on the last three."""


@dataclass(frozen=True)
class Condition:
    """One set of held-out rollouts: which images, starts and walls, how long memorisation and prediction are."""

    name: str
    description: str
    tau: int
    horizon: int
    quick_tau: int
    quick_horizon: int
    world: World = field(default_factory=World)
    """The world of its rollouts (a model trained on the reference world is asked to predict it)."""
    images: str = "procedural"
    """One of ``IMAGE_SETS``."""
    uniform_policy: bool = False

    def lengths(self, quick: bool) -> tuple[int, int]:
        return (self.quick_tau, self.quick_horizon) if quick else (self.tau, self.horizon)


CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("reference", "procedural images, centre start, reference random walk", 256, 256, 32, 16),
    Condition("photos", "32×32 natural-photo patches (scikit-learn's sample photos) no model trained on, "
              "centre start", 256, 256, 32, 16, images="photos"),
    Condition("flat photos", "32×32 patches of photos with large flat areas beside strong edges (scikit-image's "
              "astronaut, camera, coins, Hubble deep field, rocket, retina, moon, coffee, motorcycle), centre start",
              256, 256, 32, 16, images="flat photos"),
    Condition("flat scenes", "procedural scenes with large flat areas (uniform, often dark backgrounds and bands) "
              "beside sharp textured objects (gtmsm_env.flat_scenes), centre start", 256, 256, 32, 16,
              images="flat scenes"),
    Condition("random start", "procedural images, uniformly random start cell", 256, 256, 32, 16,
              world=World(start="random")),
    Condition("uniform policy", "procedural images, centre start, a uniformly random action (of 5) every step "
              "instead of held directions", 256, 256, 32, 16, uniform_policy=True),
    Condition("long horizon", "procedural images, centre start, three times the predicted steps", 256, 768, 32, 48),
    Condition("short memory", "procedural images, centre start, a quarter of the memorisation steps", 64, 256, 8, 16),
    Condition("maze", f"procedural images, random start, interior walls (walls='maze', {MAZE_WALL_DENSITY:.0%} of "
              "interior edges, a new layout per sequence)", 256, 256, 32, 16,
              world=World(start="random", walls="maze", wall_density=MAZE_WALL_DENSITY)),
)}


def uniform_policy(seed: int) -> Callable[[Any, dict[str, Any]], np.ndarray]:
    """A uniformly random action (stay included) each step, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 7])

    def policy(observations: Any, info: dict[str, Any]) -> np.ndarray:
        return rng.integers(NUM_ACTIONS, size=len(observations))

    return policy


IMAGE_SET_PACKAGES = {"photos": ("sklearn", "scikit-learn"), "flat photos": ("skimage", "scikit-image")}
"""The optional package (import name, distribution) that ships each photo set's photos; both come with
the ``dev`` extra."""


def missing_packages(conditions: list[str]) -> list[tuple[str, str]]:
    """(condition, distribution) for each condition whose photo package is not installed."""
    import importlib.util

    missing = []
    for name in conditions:
        needed = IMAGE_SET_PACKAGES.get(CONDITIONS[name].images)
        if needed is not None and importlib.util.find_spec(needed[0]) is None:
            missing.append((name, needed[1]))
    return missing


def image_file(folder: Path, images: str, count: int, *, reuse: bool) -> Path:
    """The image file of image set ``images`` (not "procedural") in ``folder`` (``count`` images),
    written unless ``reuse`` and it exists."""
    from gtmsm_env.flat_scenes import write_flat_scenes
    from gtmsm_env.photo_patches import write_photo_patches

    path = folder / f"{images.replace(' ', '_')}_{count}.npz"
    if reuse and path.exists():
        return path
    if images == "flat scenes":
        return Path(write_flat_scenes(path, count, seed=PHOTO_PATCH_SEED))
    photo_set = {"photos": "texture", "flat photos": "flat"}[images]
    return Path(write_photo_patches(path, count, seed=PHOTO_PATCH_SEED, photo_set=photo_set))


def condition_rollouts(condition: Condition, sequences: int, *, quick: bool, images: Callable[[str], Path],
                       seed: int = EVAL_SEED) -> Rollouts:
    """The held-out test rollouts of ``condition`` (images from a stream training never uses);
    ``images`` gives the file of an image set (``image_file``), asked for only by a condition that
    does not use the procedural default."""
    tau, horizon = condition.lengths(quick)
    kwargs: dict[str, Any] = {"world": condition.world}
    if condition.images != "procedural":
        kwargs["image_source"] = str(images(condition.images))
    if condition.uniform_policy:
        kwargs["policy"] = uniform_policy(seed)
    return heldout_rollouts(sequences, tau + horizon, seed, **kwargs)


def ppo_rollouts(policy_path: Path, sequences: int, tau: int, horizon: int, seed: int = EVAL_SEED) -> Rollouts:
    """The reference condition's rollouts (same images, starts and prediction-phase actions) with
    the saved SB3 policy choosing the memorisation actions (greedy)."""
    from gtmsm_env.policies import load_sb3_policy

    policy = load_sb3_policy(policy_path, deterministic=True, seed=seed)
    return collect_rollouts(sequences, tau + horizon, seed=seed + HELDOUT_SEED_OFFSET, policy=policy,
                            policy_steps=tau)

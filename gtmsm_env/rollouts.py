"""Random-walk rollouts of ImageNav: the reference random walk and batched collection into a
:class:`~gtmsm_env.dataset.Rollouts` dataset (re-exported here with its ``FORMAT_VERSION``).

The command line (``gtmsm-rollouts``, also ``python -m gtmsm_env.rollouts``) is
:mod:`gtmsm_env.rollouts_cli`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gtmsm_env.dataset import FORMAT_VERSION, Rollouts
from gtmsm_env.policies import SB3Policy, resolve_policy
from gtmsm_env.world import NUM_ACTIONS, Action, World

__all__ = ["FORMAT_VERSION", "MAX_MEAN_HOLD", "Rollouts", "collect_rollouts", "random_walk_actions"]

MAX_MEAN_HOLD = 1e6
"""The longest mean hold the random walk takes (a hold longer than a sequence is one straight run)."""

REFERENCE_WORLD = World()
"""The world rollouts are collected in unless told otherwise (a frozen value, safe as a default)."""


def random_walk_actions(
    rng: np.random.Generator, num_sequences: int, num_steps: int, mean_hold: float = 2.0
) -> np.ndarray:
    """The reference random walk, ``(num_sequences, num_steps)`` int64.

    Repeatedly pick a direction uniformly among the 4 moves and hold it for Poisson(``mean_hold``)
    steps; a draw of 0 gives one stay (``Action.STAY``). Draws: all directions ``(N, num_steps)``, then all hold
    lengths ``(N, num_steps)`` (every segment lasts >= 1 step, so that many always suffices).
    """
    if num_sequences < 0 or num_steps < 0:
        raise ValueError("num_sequences and num_steps must be >= 0")
    if not 0 < mean_hold <= MAX_MEAN_HOLD:
        raise ValueError(f"mean_hold must be > 0 and <= {MAX_MEAN_HOLD:g}, got {mean_hold}")
    directions = rng.integers(Action.UP, NUM_ACTIONS, size=(num_sequences, num_steps))
    holds = rng.poisson(mean_hold, size=(num_sequences, num_steps))
    segment_actions = np.where(holds == 0, Action.STAY, directions)
    lengths = np.maximum(holds, 1)
    out = np.empty((num_sequences, num_steps), np.int64)
    for i in range(num_sequences):
        # only the segments that start within num_steps (long holds would repeat far past it)
        used = int(np.searchsorted(np.cumsum(lengths[i]), num_steps)) + 1
        out[i] = np.repeat(segment_actions[i, :used], lengths[i, :used])[:num_steps]
    return out


def collect_rollouts(
    num_sequences: int,
    seq_len: int,
    *,
    seed: int,
    world: World = REFERENCE_WORLD,
    image_source: Any = None,
    mean_hold: float = 2.0,
    policy: Any = None,
    policy_steps: int | None = None,
    observation: str | None = None,
    deterministic: bool = True,
) -> Rollouts:
    """Collect sequences with the native vector env; reproducible from ``seed``.

    Sequence ``i`` is env ``i`` of an :class:`ImageNavVectorEnv` reset with ``seed`` (so it equals
    a single env reset with ``seed + i`` driven by the same actions). The reference random walk
    draws from its own generator ``np.random.default_rng([seed, 1])``.

    ``policy`` (default ``None``: the random walk everywhere) chooses the actions of the first
    ``policy_steps`` steps of every sequence (default: all; ``policy_steps=256`` drives the
    memorisation phase of a tau = 256 evaluation, i.e. ``actions[:, 1:256]``); the later steps
    keep the random walk, drawn exactly as without a policy, so two datasets with the same seed
    and different memorisation policies share images, starts, walls and prediction-phase actions.
    It is a callable ``(observations, info) -> (N,) actions`` (see :mod:`gtmsm_env.policies`;
    it sees observations in mode ``observation``, default ``"crop"``), an SB3 model, or the path
    of a saved SB3 model (loaded lazily; its observation mode is read from its space, and
    ``deterministic`` picks greedy or sampled actions, sampled from torch seeded with ``seed``).
    The dataset always stores crops.

    ``world`` (a :class:`~gtmsm_env.world.World`, default ``World()``) is the image geometry, the
    start and the walls; it is validated here (``ValueError`` naming the field). A maze world
    (``walls="maze"``) draws a wall layout per sequence, kept in ``Rollouts.blocked_moves`` and
    saved with the dataset. The metadata records the world (``world``, and its fields at the top
    level: ``image_size`` an int or ``[height, width]``, always ``image_shape`` ``[height, width]``).
    """
    from gtmsm_env.images import make_image_source
    from gtmsm_env.vector_env import ImageNavVectorEnv

    if not isinstance(world, World):
        raise TypeError(f"world must be a World, got {type(world).__name__}")
    if num_sequences < 1 or seq_len < 1:
        raise ValueError("num_sequences and seq_len must be >= 1")
    source = make_image_source(image_source, world.image_size)
    policy_fn, description = None, "random_walk"
    if policy is not None:
        policy_fn, mode, description = resolve_policy(policy, deterministic=deterministic, seed=seed)
        if mode is not None:
            if observation is not None and observation != mode:
                raise ValueError(f"the policy needs observation={mode!r}, not {observation!r}")
            observation = mode
        if policy_steps is None:
            policy_steps = seq_len
        if not 1 <= policy_steps <= seq_len:
            raise ValueError(f"policy_steps must be in 1..seq_len={seq_len}, got {policy_steps}")
    elif policy_steps is not None:
        raise ValueError("policy_steps needs a policy")
    env = ImageNavVectorEnv(
        num_sequences,
        world=world,
        image_source=source,
        max_episode_steps=None,
        observation=observation or "crop",
    )
    world = env.world
    crop_size = world.crop_size
    if isinstance(policy_fn, SB3Policy):
        policy_fn.check_geometry(crop_size, env.grid_shape)
    policy_rng = np.random.default_rng([seed, 1])
    actions = np.full((num_sequences, seq_len), Action.STAY, np.int64)
    actions[:, 1:] = random_walk_actions(policy_rng, num_sequences, seq_len - 1, mean_hold)
    observations = np.empty((num_sequences, seq_len, crop_size, crop_size, 3), np.uint8)
    positions = np.empty((num_sequences, seq_len, 2), np.int64)
    wall_hits = np.zeros((num_sequences, seq_len), bool)
    obs, info = env.reset(seed=seed)
    observations[:, 0], positions[:, 0] = env.crops(), info["position"]
    for t in range(1, seq_len):
        if policy_fn is not None and t < policy_steps:
            actions[:, t] = _checked_actions(policy_fn(obs, info), num_sequences)
        obs, _, _, _, info = env.step(actions[:, t])
        observations[:, t], positions[:, t], wall_hits[:, t] = (
            env.crops(),
            info["position"],
            info["wall_hit"],
        )
    from gtmsm_env import __version__

    metadata = {
        "seed": seed,
        "image_source": source.describe(),
        "image_size": list(env.image_size) if isinstance(env.image_size, tuple) else env.image_size,
        "image_shape": list(env.image_shape),
        "crop_size": crop_size,
        "step_size": world.step_size,
        "grid_shape": list(env.grid_shape),
        "policy": description,
        "policy_steps": policy_steps,
        "observation": observation or "crop",
        "deterministic": deterministic if policy is not None else None,
        "mean_hold": mean_hold,
        "start": world.start,
        "walls": world.walls,
        "wall_density": world.wall_density,
        "world": world.to_dict(),
        "created_by": "gtmsm_env.rollouts.collect_rollouts",
        "version": __version__,
        "format_version": FORMAT_VERSION,
    }
    blocked = env.blocked_moves.copy() if world.walls == "maze" else None
    return Rollouts(
        observations, actions, positions, wall_hits, env.images.copy(), metadata, blocked
    )


def _checked_actions(actions: Any, n: int) -> np.ndarray:
    actions = np.asarray(actions)
    if actions.shape != (n,) or actions.dtype.kind not in "iu":
        raise ValueError(
            f"the policy must return ({n},) integer actions, got shape {actions.shape} dtype "
            f"{actions.dtype}"
        )
    if n and (actions.min() < 0 or actions.max() >= NUM_ACTIONS):
        raise ValueError("the policy returned actions outside 0..4")
    return actions


def __getattr__(name: str) -> Any:
    # ``main`` loads lazily (rollouts_cli imports this module): console scripts that name
    # ``gtmsm_env.rollouts:main`` keep working.
    if name == "main":
        from gtmsm_env.rollouts_cli import main

        return main
    raise AttributeError(f"module 'gtmsm_env.rollouts' has no attribute {name!r}")


if __name__ == "__main__":
    from gtmsm_env.rollouts_cli import main

    main()

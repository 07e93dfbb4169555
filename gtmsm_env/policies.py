"""Policies that choose rollout actions: any callable, or a saved Stable-Baselines3 model.

A policy is called once per step with the vector env's batched observation and info and returns
``(N,)`` integer actions in 0..4::

    def policy(observations, info) -> np.ndarray: ...

``observations`` is in the env's observation mode (``"crop"``: ``(N, crop, crop, 3)`` uint8; a
``Dict`` mode: a dict of batched arrays). A saved SB3 model (``.zip``) is loaded lazily by
:func:`load_sb3_policy`: SB3 and torch are imported only then, so ``import gtmsm_env`` never
imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gtmsm_cli.inputs import input_file_problem
from gtmsm_env.observations import observation_mode_of
from gtmsm_env.world import NUM_ACTIONS

Policy = Callable[[Any, dict[str, Any]], Any]

# Tried in this order when loading a zip (the file does not name its algorithm).
_SB3_ALGORITHMS = ("PPO", "A2C", "DQN")


class SB3Policy:
    """A saved SB3 model as a rollout policy; ``observation`` is the mode its inputs need."""

    def __init__(self, model: Any, *, deterministic: bool = True, description: str = "") -> None:
        from gymnasium import spaces

        if not (isinstance(model.action_space, spaces.Discrete) and model.action_space.n == NUM_ACTIONS):
            raise ValueError(
                f"the policy's action space is {model.action_space}; ImageNav needs Discrete({NUM_ACTIONS})"
            )
        self.model = model
        self.observation = observation_mode_of(model.observation_space)
        self.deterministic = deterministic
        self.description = description or f"sb3:{type(model).__name__}"

    def __call__(self, observations: Any, info: dict[str, Any]) -> np.ndarray:
        actions, _ = self.model.predict(observations, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(-1)

    def check_geometry(self, crop_size: int, grid_shape: tuple[int, int]) -> None:
        """Raise ``ValueError`` if the model was trained on another crop size or grid."""
        space = self.model.observation_space
        crop = space["crop"] if self.observation != "crop" and "crop" in space.spaces else None
        if self.observation == "crop":
            crop = space
        if crop is not None and sorted(crop.shape)[1:] != [crop_size, crop_size]:
            raise ValueError(
                f"the policy sees crops of shape {crop.shape}; these rollouts have "
                f"{crop_size}x{crop_size} crops"
            )
        if "visited" in self.observation and tuple(space["visited"].shape) != tuple(grid_shape):
            raise ValueError(
                f"the policy was trained on a {space['visited'].shape} grid; these rollouts have "
                f"{tuple(grid_shape)}"
            )


def load_sb3_policy(
    path: str | Path, *, deterministic: bool = True, seed: int | None = None
) -> SB3Policy:
    """Load a saved SB3 model (PPO, A2C or DQN ``.zip``) on the CPU as a rollout policy.

    ``seed`` seeds SB3's (torch's) generator, which a stochastic policy (``deterministic=False``)
    samples from. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file
    that is not such a model or does not fit ImageNav.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"policy file does not exist: {path}")
    problem = input_file_problem(path, "policy file")  # a FIFO or device is never opened
    if problem is not None:
        raise ValueError(problem)
    import stable_baselines3

    problems = []
    for name in _SB3_ALGORITHMS:
        try:
            model = getattr(stable_baselines3, name).load(path, device="cpu")
        except Exception as error:  # noqa: BLE001  (foreign/corrupt zips fail in many ways)
            text = str(error).strip()
            problems.append(text.splitlines()[0] if text else type(error).__name__)
            continue
        if seed is not None:
            model.set_random_seed(seed)
        return SB3Policy(model, deterministic=deterministic, description=f"sb3:{name}:{path}")
    raise ValueError(f"{path} is not a saved SB3 model ({', '.join(_SB3_ALGORITHMS)}): {problems[0]}")


def resolve_policy(
    policy: Any, *, deterministic: bool = True, seed: int | None = None
) -> tuple[Policy, str | None, str]:
    """``(callable, observation mode or None, description)`` for a callable, an SB3 model object,
    an :class:`SB3Policy` or a path to a saved SB3 model."""
    if isinstance(policy, SB3Policy):
        return policy, policy.observation, policy.description
    if isinstance(policy, (str, Path)):
        loaded = load_sb3_policy(policy, deterministic=deterministic, seed=seed)
        return loaded, loaded.observation, loaded.description
    if hasattr(policy, "predict") and hasattr(policy, "observation_space"):
        wrapped = SB3Policy(policy, deterministic=deterministic)
        return wrapped, wrapped.observation, wrapped.description
    if callable(policy):
        name = getattr(policy, "__qualname__", type(policy).__name__)
        return policy, None, f"callable:{name}"
    raise TypeError(
        "policy must be None (the random walk), a callable (observations, info) -> actions, an "
        f"SB3 model or a path to a saved one, got {type(policy).__name__}"
    )

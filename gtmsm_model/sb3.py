"""Stable-Baselines3 on ImageNav: the benchmark's PPO settings, feature extractors for the 8x8
crop and the ``Dict`` observation modes, and an adapter from the native numpy vector env to SB3's
``VecEnv`` (wrapped in ``VecMonitor``, so SB3 reports episode rewards).

This module imports torch (through SB3), which is why it lives here and not in ``gtmsm_env``;
it needs the ``[sb3]`` extra (``pip install -e ".[sb3]"``). docs/sb3.md has the runnable
examples and the coverage they reach::

    import gtmsm_env
    from stable_baselines3 import PPO
    from gtmsm_model.sb3 import make_sb3_vec_env, ppo_kwargs

    venv = make_sb3_vec_env("ImageNavCoverage-v0", num_envs=16, seed=0)
    model = PPO("MultiInputPolicy", venv, seed=0, device="cpu", verbose=1, **ppo_kwargs())
    model.learn(300_000)

SB3's own ``NatureCNN`` needs images of at least 36 x 36 pixels; :class:`CropCNN` is a small CNN
for the 8 x 8 crop (``PPO("CnnPolicy", make_sb3_vec_env("ImageNavCoverage-v0",
observation="crop"), **ppo_kwargs(CropCNN))``), and :class:`ImageNavExtractor` combines it with
the ``"position"`` / ``"visited"`` parts of the ``Dict`` modes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn
from torch import nn

from gtmsm_env.vector_env import ImageNavVectorEnv

PPO_SETTINGS: dict[str, Any] = {
    "n_steps": 128,
    "batch_size": 512,
    "n_epochs": 4,
    "learning_rate": 3e-4,
    "gamma": 0.95,
    "ent_coef": 0.01,
}
"""PPO's hyperparameters in the coverage benchmark (``benchmarks/train_ppo.py``), with 16 envs:
a 2,048-step rollout, 4 epochs of 512-sample minibatches. SB3's defaults (2,048 steps per env,
10 epochs of 64) train about 20 times slower per environment step on a CPU."""

NET_ARCH = [128, 128]
"""The policy's and value function's hidden layers after the features extractor."""


class CropCNN(BaseFeaturesExtractor):
    """Two 3x3 convolutions (the second with stride 2) and a linear layer, for crops as small as
    1 x 1. Accepts channel-first (what SB3 hands an image policy after its transpose) or
    channel-last crops. Pixels arrive in [0, 1] (SB3 normalises image spaces)."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        shape = observation_space.shape
        if len(shape) != 3:
            raise ValueError(f"CropCNN needs an image space (H, W, C) or (C, H, W), got {shape}")
        self.channels_first = is_image_space_channels_first(observation_space)
        channels, height, width = shape if self.channels_first else (shape[2], shape[0], shape[1])
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        flat = 64 * ((height + 1) // 2) * ((width + 1) // 2)
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if not self.channels_first:
            observations = observations.permute(0, 3, 1, 2)
        return self.linear(self.cnn(observations.float()))


def egocentric_map(visited: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """The visited map ``(B, rows, cols)`` re-centred on the agent: ``(B, 2 rows - 1, 2 cols - 1)``
    whose centre is the agent's cell; cells outside the grid read 1 (nothing new there).
    ``position`` is the normalised ``(row, col)`` of the ``"position"`` part."""
    batch, rows, cols = visited.shape
    row = torch.round(position[:, 0] * (rows - 1)).long().clamp(0, rows - 1)
    col = torch.round(position[:, 1] * (cols - 1)).long().clamp(0, cols - 1)
    padded = torch.ones(batch, 3 * rows - 2, 3 * cols - 2, device=visited.device)
    padded[:, rows - 1 : 2 * rows - 1, cols - 1 : 2 * cols - 1] = visited
    # Window of padded rows row .. row + 2 rows - 2 (the agent at its centre), one per sample.
    offsets_r = torch.arange(2 * rows - 1, device=visited.device)
    offsets_c = torch.arange(2 * cols - 1, device=visited.device)
    index_r = (row[:, None] + offsets_r[None, :])[:, :, None].expand(-1, -1, 2 * cols - 1)
    index_c = (col[:, None] + offsets_c[None, :])[:, None, :].expand(-1, 2 * rows - 1, -1)
    batch_index = torch.arange(batch, device=visited.device)[:, None, None]
    return padded[batch_index, index_r, index_c]


class ImageNavExtractor(BaseFeaturesExtractor):
    """For the ``Dict`` observation modes: the crop through :class:`CropCNN` (``crop_dim``
    features), the position as is, the visited map flattened; concatenated.

    With both ``"position"`` and ``"visited"`` (``egocentric=True``, the default) the visited map
    is also given re-centred on the agent (:func:`egocentric_map`), so "is the cell to my left new?"
    is one input instead of a conjunction a memoryless policy must learn."""

    def __init__(
        self, observation_space: spaces.Dict, crop_dim: int = 64, egocentric: bool = True
    ) -> None:
        parts = observation_space.spaces
        size = 0
        if "crop" in parts:
            size += crop_dim
        if "position" in parts:
            size += int(np.prod(parts["position"].shape))
        if "visited" in parts:
            rows, cols = parts["visited"].shape
            size += rows * cols
        self.egocentric = egocentric and "position" in parts and "visited" in parts
        if self.egocentric:
            size += (2 * rows - 1) * (2 * cols - 1)
        super().__init__(observation_space, size)
        self.crop = CropCNN(parts["crop"], crop_dim) if "crop" in parts else None

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        features = []
        if self.crop is not None:
            features.append(self.crop(observations["crop"]))
        if "position" in observations:
            features.append(observations["position"].float())
        if "visited" in observations:
            features.append(observations["visited"].float().flatten(1))
        if self.egocentric:
            ego = egocentric_map(observations["visited"].float(), observations["position"].float())
            features.append(ego.flatten(1))
        return torch.cat(features, dim=1)


def ppo_kwargs(extractor: type[BaseFeaturesExtractor] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``PPO(policy, env, **ppo_kwargs())``: :data:`PPO_SETTINGS` and
    ``policy_kwargs`` with ``extractor`` (default :class:`ImageNavExtractor`, for the ``Dict``
    modes and ``"MultiInputPolicy"``; :class:`CropCNN` for the bare crop and ``"CnnPolicy"``) and
    :data:`NET_ARCH`. A fresh dict each call, so a caller may change it."""
    policy_kwargs = {"features_extractor_class": extractor or ImageNavExtractor, "net_arch": list(NET_ARCH)}
    return {**PPO_SETTINGS, "policy_kwargs": policy_kwargs}


def _slice(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {key: value[i].copy() for key, value in obs.items()}
    return obs[i].copy()


class ImageNavVecEnv(VecEnv):
    """SB3's ``VecEnv`` interface over the native :class:`~gtmsm_env.ImageNavVectorEnv`.

    Same semantics as SB3's ``DummyVecEnv`` of single envs: an env that ends (terminated or
    truncated) is reset in the same step; its last observation is in
    ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` says whether it
    was cut off. ``seed(s)`` makes the next reset seed env ``i`` with ``s + i``. So for the same
    seeds and actions the observations equal a ``DummyVecEnv`` of ``gym.make`` envs.
    """

    def __init__(self, env: ImageNavVectorEnv) -> None:
        if not isinstance(env, ImageNavVectorEnv):
            raise TypeError(f"expected an ImageNavVectorEnv, got {type(env).__name__}")
        self.env = env
        self._actions = np.zeros(env.num_envs, np.int64)
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if any(self._options) else None
        obs, _ = self.env.reset(seed=seeds, options=options or None)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [
            {
                "position": info["position"][i],
                "wall_hit": bool(info["wall_hit"][i]),
                "step": int(info["step"][i]),
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
            }
            for i in range(self.num_envs)
        ]
        if "coverage" in info:
            for i in range(self.num_envs):
                infos[i]["coverage"] = int(info["coverage"][i])
        if dones.any():
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = _slice(obs, i)
            obs, _ = self.env.reset(options={"reset_mask": dones})
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("ImageNavVecEnv steps all envs together; env_method is not supported")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def get_images(self) -> list[np.ndarray]:
        frames = self.env.render()
        return list(frames) if frames is not None else []


def make_sb3_vec_env(
    env_id: str = "ImageNavCoverage-v0",
    num_envs: int = 8,
    seed: int | None = None,
    monitor: bool = True,
    **kwargs: Any,
) -> VecMonitor | ImageNavVecEnv:
    """The registered env ``env_id`` (its registered kwargs and ``max_episode_steps``, updated by
    ``kwargs``) as ``num_envs`` native vector envs behind SB3's ``VecEnv`` interface.

    With ``monitor`` (the default) it is wrapped in ``VecMonitor``: without a monitor SB3 sees no
    finished episodes and never logs ``ep_rew_mean``. For the coverage task the monitor also
    records each episode's final ``coverage`` (positions seen) in its ``info["episode"]``."""
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    native = env.unwrapped
    venv = ImageNavVecEnv(native)
    if seed is not None:
        venv.seed(seed)
    if not monitor:
        return venv
    return VecMonitor(venv, info_keywords=("coverage",) if native.task == "coverage" else ())

"""The native vector env equals N single envs and steps fast."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

import gtmsm_env  # noqa: F401
from gtmsm_env import ImageNavVectorEnv


def run_single_envs(num_envs, seed, actions, **kwargs):
    envs = [gym.make("ImageNav-v0", **kwargs) for _ in range(num_envs)]
    vec = gym.vector.SyncVectorEnv([lambda e=e: e for e in envs])
    obs, info = vec.reset(seed=seed)
    out = [(obs, info["position"], np.zeros(num_envs, bool), np.zeros(num_envs, bool))]
    for a in actions:
        obs, _, _, truncated, info = vec.step(a)
        out.append((obs, info["position"], info["wall_hit"], truncated))
    return out, vec


@pytest.mark.parametrize("start", ["center", "random"])
def test_vector_env_equals_single_envs_across_autoreset(start):
    n, steps = 5, 40
    kwargs = {"start": start, "max_episode_steps": 13}
    actions = np.random.default_rng(0).integers(0, 5, (steps, n))
    expected, sync = run_single_envs(n, 7, actions, **kwargs)
    vec = gym.make_vec("ImageNav-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(vec.unwrapped, ImageNavVectorEnv)
    obs, info = vec.reset(seed=7)
    got = [(obs, info["position"], np.zeros(n, bool), np.zeros(n, bool))]
    for a in actions:
        obs, _, _, truncated, info = vec.step(a)
        got.append((obs, info["position"], info["wall_hit"], truncated))
    for t, (e, g) in enumerate(zip(expected, got, strict=True)):
        for name, x, y in zip(("obs", "position", "wall_hit", "truncated"), e, g, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"{name} differs at step {t}")
    assert any(g[3].any() for g in got)  # an autoreset happened
    envs = [sync.envs[i].unwrapped for i in range(n)]
    np.testing.assert_array_equal(vec.unwrapped.images, np.stack([e.image for e in envs]))


def test_vector_env_is_a_gymnasium_vector_env_with_batched_spaces():
    vec = ImageNavVectorEnv(3)
    assert isinstance(vec, VectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.observation_space.shape == (3, 8, 8, 3)
    assert vec.single_observation_space.shape == (8, 8, 3)
    assert vec.single_action_space.n == 5
    obs, info = vec.reset(seed=np.int64(0))
    assert vec.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, ImageNavVectorEnv(3).reset(seed=[0, 1, 2])[0])
    obs, rewards, terminated, truncated, info = vec.step(vec.action_space.sample())
    assert info["position"].shape == (3, 2) and info["wall_hit"].shape == (3,)
    assert rewards.shape == terminated.shape == truncated.shape == (3,)


def test_vector_env_coverage_rewards_and_pinned_images():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    vec = ImageNavVectorEnv(2, task="coverage")
    obs, _ = vec.reset(seed=0, options={"image": image})
    np.testing.assert_array_equal(obs[0], image[12:20, 12:20])
    _, rewards, _, _, _ = vec.step(np.array([0, 4]))
    np.testing.assert_array_equal(rewards, [0.0, 1.0])


def test_vector_env_rgb_array_render():
    vec = ImageNavVectorEnv(2, render_mode="rgb_array")
    vec.reset(seed=0)
    frames = vec.render()
    assert len(frames) == 2 and frames[0].shape == (256, 256, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_envs": 0}, ValueError, "num_envs must be >= 1"),
        ({"num_envs": 2, "crop_size": 33}, ValueError, "larger than image_size"),
        ({"num_envs": 2, "render_mode": "human"}, ValueError, "only 'rgb_array'"),
        ({"num_envs": 2, "max_episode_steps": 0}, ValueError, "max_episode_steps must be >= 1"),
    ],
)
def test_vector_env_bad_kwargs(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageNavVectorEnv(**kwargs)


def test_vector_env_bad_actions():
    vec = ImageNavVectorEnv(2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="actions of shape"):
        vec.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integers in 0..4"):
        vec.step(np.array([0, 5]))

"""Observation modes, the coverage task and the registered variants (env side; no torch)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import gtmsm_env
from gtmsm_env import REGISTERED_ENVS, ImageNavEnv
from gtmsm_env.observations import OBSERVATION_MODES, observation_mode_of

OBS_MODES = list(OBSERVATION_MODES)


@pytest.mark.parametrize("mode", OBS_MODES)
def test_gymnasium_check_env_on_every_mode(mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(ImageNavEnv(observation=mode, task="coverage"), skip_render_check=True)


@pytest.mark.parametrize("env_id", list(REGISTERED_ENVS))
def test_gymnasium_check_env_on_every_registered_id(env_id):
    env = gym.make(env_id)
    kwargs, steps = REGISTERED_ENVS[env_id]
    assert env.spec.max_episode_steps == steps
    for key, value in kwargs.items():
        assert getattr(env.unwrapped, key) == value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("mode", OBS_MODES)
def test_mode_parts_hold_crop_position_and_visited(mode):
    env = ImageNavEnv(observation=mode, start="random")
    obs, info = env.reset(seed=3)
    assert observation_mode_of(env.observation_space) == mode
    for a in [1, 1, 4, 4, 2]:
        obs, _, _, _, info = env.step(a)
    assert env.observation_space.contains(obs)
    if mode == "crop":
        assert isinstance(env.observation_space, spaces.Box)
        return
    assert list(obs) == mode.split("+")
    row, col = info["position"]
    if "crop" in obs:
        top, left = 3 * row, 3 * col
        np.testing.assert_array_equal(obs["crop"], env.image[top : top + 8, left : left + 8])
    if "position" in obs:
        np.testing.assert_allclose(obs["position"], [row / 8, col / 8])
        assert obs["position"].dtype == np.float32
    if "visited" in obs:
        expected = np.zeros((9, 9), np.float32)
        for r, c in env.path if env.path else []:
            expected[r, c] = 1
        assert obs["visited"][row, col] == 1 and obs["visited"].sum() == env.num_seen


def test_coverage_reward_counts_each_position_once_and_matches_info():
    env = gym.make("ImageNavCoverage-v0")
    obs, info = env.reset(seed=0)
    assert info["coverage"] == 1
    seen = {tuple(info["position"])}
    total = 0.0
    rng = np.random.default_rng(0)
    for _ in range(400):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(5)))
        new = tuple(info["position"]) not in seen
        seen.add(tuple(info["position"]))
        assert reward == float(new)
        total += reward
        assert info["coverage"] == len(seen) == total + 1
        np.testing.assert_array_equal(np.argwhere(obs["visited"]), sorted(seen))
        if truncated:
            assert env.unwrapped.elapsed_steps == 256
            obs, info = env.reset()
            seen, total = {tuple(info["position"])}, 0.0


def test_terminate_when_covered_ends_the_episode_on_the_last_new_position():
    env = ImageNavEnv(task="coverage", terminate_when_covered=True, image_size=14, crop_size=8)
    env.reset(seed=0)  # a 3 x 3 grid; a snake visits all 9
    assert env.grid_shape == (3, 3)
    snake = [1, 3, 2, 2, 4, 1, 1, 4, 2, 2]  # from the centre (1, 1)
    terminated = []
    for a in snake:
        terminated.append(env.step(a)[2])
        if terminated[-1]:
            break
    assert terminated[-1] and not any(terminated[:-1]) and env.num_seen == 9
    with pytest.raises(ValueError, match="needs task='coverage'"):
        ImageNavEnv(terminate_when_covered=True)
    with pytest.raises(TypeError, match="terminate_when_covered must be a bool"):
        ImageNavEnv(task="coverage", terminate_when_covered="yes")
    with pytest.raises(ValueError, match="observation must be one of"):
        ImageNavEnv(observation="pixels")


@pytest.mark.parametrize("mode", OBS_MODES)
def test_vector_env_equals_single_envs_in_every_mode(mode):
    n = 4
    kwargs = {"observation": mode, "task": "coverage", "start": "random", "max_episode_steps": 40,
              "terminate_when_covered": True, "image_size": 14, "walls": "maze"}
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("ImageNav-v0", **kwargs)] * n)
    vec = gym.make_vec("ImageNav-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    assert vec.single_observation_space == sync.single_observation_space
    results = [(sync.reset(seed=2), vec.reset(seed=2))]
    actions = np.random.default_rng(1).integers(0, 5, (150, n))
    results += [(sync.step(a), vec.step(a)) for a in actions]
    terminations = 0
    for t, (expected, got) in enumerate(results):
        for x, y in zip(expected, got, strict=True):
            if isinstance(x, dict):
                assert sorted(x) == sorted(y), f"step {t}"
                for key in x:
                    np.testing.assert_array_equal(x[key], y[key], err_msg=f"{key} at step {t}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"step {t}")
        if len(got) == 5:
            terminations += int(got[2].sum())
    assert terminations > 0  # a 3 x 3 grid is covered within 40 steps now and then


def test_env_package_never_imports_torch():
    code = (
        "import sys, gymnasium as gym, gtmsm_env, gtmsm_env.rollouts, gtmsm_env.policies;"
        "gym.make('ImageNavCoverage-v0').reset(seed=0);"
        "gtmsm_env.collect_rollouts(2, 5, seed=0, policy=lambda o, i: o['visited'].sum((1, 2)).astype(int) % 5,"
        " observation='crop+visited');"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_collect_rollouts_with_a_callable_policy_for_the_memorisation_steps():
    calls = []

    def always_right(observations, info):
        calls.append(observations["position"].copy())
        return np.full(len(info["position"]), gtmsm_env.RIGHT)

    driven = gtmsm_env.collect_rollouts(3, 30, seed=1, policy=always_right, policy_steps=10,
                                        observation="crop+position")
    walk = gtmsm_env.collect_rollouts(3, 30, seed=1)
    assert len(calls) == 9
    assert (driven.actions[:, 1:10] == gtmsm_env.RIGHT).all()
    np.testing.assert_array_equal(driven.actions[:, 10:], walk.actions[:, 10:])
    np.testing.assert_array_equal(driven.images, walk.images)
    assert driven.observations.shape == walk.observations.shape  # crops, whatever the mode
    assert driven.metadata["policy"].startswith("callable:")
    assert driven.metadata["policy_steps"] == 10
    with pytest.raises(ValueError, match=r"\(3,\) integer actions"):
        gtmsm_env.collect_rollouts(3, 5, seed=1, policy=lambda o, i: np.zeros(2, int))
    with pytest.raises(ValueError, match="policy_steps needs a policy"):
        gtmsm_env.collect_rollouts(3, 5, seed=1, policy_steps=3)

"""The native vector env equals N single envs and steps fast."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

import gtmsm_env  # noqa: F401
from gtmsm_env import ImageNavVectorEnv

FIELDS = ("obs", "reward", "terminated", "truncated", "position", "wall_hit", "step")


def record(env, seed, actions, options=None):
    """Reset, then step through ``actions``; every field of every step, as numpy arrays."""
    obs, info = env.reset(seed=seed, options=options)
    n = len(obs)
    zeros = np.zeros(n, bool)
    out = [(obs, np.zeros(n), zeros, zeros, info["position"], info["wall_hit"], info["step"])]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append(
            (obs, reward, terminated, truncated, info["position"], info["wall_hit"], info["step"])
        )
    return out


def assert_same(expected, got):
    for t, (e, g) in enumerate(zip(expected, got, strict=True)):
        for name, x, y in zip(FIELDS, e, g, strict=True):
            np.testing.assert_array_equal(
                np.asarray(x), np.asarray(y), err_msg=f"{name} differs at step {t}"
            )


def sync_of_single_envs(num_envs, **kwargs):
    return gym.vector.SyncVectorEnv(
        [lambda: gym.make("ImageNav-v0", **kwargs) for _ in range(num_envs)]
    )


def native(num_envs, **kwargs):
    return gym.make_vec(
        "ImageNav-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )


@pytest.mark.parametrize("start", ["center", "random"])
@pytest.mark.parametrize("task", [None, "coverage"])
def test_vector_env_equals_single_envs_across_autoreset(start, task):
    n, steps = 5, 40
    kwargs = {"start": start, "task": task, "max_episode_steps": 13}
    actions = np.random.default_rng(0).integers(0, 5, (steps, n))
    sync = sync_of_single_envs(n, **kwargs)
    expected = record(sync, 7, actions)
    vec = native(n, **kwargs)
    assert isinstance(vec.unwrapped, ImageNavVectorEnv)
    got = record(vec, 7, actions)
    assert_same(expected, got)
    assert sum(g[3].sum() for g in got) >= 2 * n  # every env autoreset at least twice
    if task == "coverage":
        assert sum(g[1].sum() for g in got) > 0
    envs = [sync.envs[i].unwrapped for i in range(n)]
    np.testing.assert_array_equal(vec.unwrapped.images, np.stack([e.image for e in envs]))


@pytest.mark.parametrize("start", ["center", "random"])
def test_vector_env_equals_single_envs_with_pinned_image_option(start):
    n = 3
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    actions = np.random.default_rng(2).integers(0, 5, (20, n))
    kwargs = {"start": start, "max_episode_steps": 8}
    expected = record(sync_of_single_envs(n, **kwargs), 3, actions, {"image": image})
    vec = native(n, **kwargs)
    got = record(vec, 3, actions, {"image": image})
    assert_same(expected, got)
    # Every env showed the pinned image until its autoreset after step 8, then drew new ones.
    for t in (0, 8):
        for obs, (row, col) in zip(got[t][0], got[t][4], strict=True):
            np.testing.assert_array_equal(obs, image[3 * row : 3 * row + 8, 3 * col : 3 * col + 8])
    assert not any(np.array_equal(im, image) for im in vec.unwrapped.images)


def test_vector_env_equals_single_envs_with_reset_mask_and_seed():
    n = 4
    # Truncation at 4 makes the unmasked envs autoreset (drawing from their generators) too.
    sync = sync_of_single_envs(n, start="random", max_episode_steps=4)
    vec = native(n, start="random", max_episode_steps=4)
    mask = np.array([True, False, True, False])
    actions = np.random.default_rng(0).integers(0, 5, (6, n))
    for env in (sync, vec):
        env.reset(seed=0)
        env.step(actions[0])
    before = [e.unwrapped.position for e in sync.envs]
    a = record(sync, 100, actions[1:], {"reset_mask": mask.copy()})
    b = record(vec, 100, actions[1:], {"reset_mask": mask.copy()})
    # Only the masked envs were reset (and reseeded); the others kept their position and count.
    # (SyncVectorEnv's reset info covers the masked envs only, so compare those.)
    np.testing.assert_array_equal(b[0][6], [0, 1, 0, 1])
    assert [tuple(p) for p in b[0][4][~mask]] == [before[i] for i in np.flatnonzero(~mask)]
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[0][4][mask], b[0][4][mask])
    assert_same(a[1:], b[1:])


def test_make_vec_honours_kwargs_and_registered_max_episode_steps(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    vec = native(2, image_source=str(tmp_path / "images.npy"), start="random", task="coverage")
    env = vec.unwrapped
    assert env.max_episode_steps == 1024  # as registered, like gym.make's TimeLimit
    assert (env.start, env.task) == ("random", "coverage")
    vec.reset(seed=0)
    assert all(any(np.array_equal(im, ref) for ref in images) for im in env.images)
    assert native(2, max_episode_steps=5).unwrapped.max_episode_steps == 5
    small = native(2, image_size=16, crop_size=4, step_size=2)
    assert small.reset(seed=0)[0].shape == (2, 4, 4, 3)
    assert small.unwrapped.grid_shape == (7, 7)


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


def test_vector_env_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        ImageNavVectorEnv(2).step(np.array([0, 0]))


@pytest.mark.parametrize(
    ("actions", "error", "match"),
    [
        (np.array([0, 1, 2]), ValueError, r"actions of shape \(2,\), got \(3,\)"),
        (np.array([[0, 1]]), ValueError, r"actions of shape \(2,\), got \(1, 2\)"),
        (3, ValueError, r"actions of shape \(2,\), got \(\)"),
        (np.array([0, 5]), ValueError, r"integers in 0..4.*got values \[5\]"),
        ([7, -1], ValueError, r"integers in 0..4.*got values \[-1, 7\]"),
        (np.array([0.0, 2.5]), TypeError, "integers in 0..4.*dtype float64"),
        (np.array([True, False]), TypeError, "integers in 0..4.*dtype bool"),
        (["a", "b"], TypeError, "integers in 0..4.*dtype <U1"),
    ],
)
def test_vector_env_bad_actions(actions, error, match):
    vec = ImageNavVectorEnv(2)
    vec.reset(seed=0)
    with pytest.raises(error, match=match):
        vec.step(actions)
    np.testing.assert_array_equal(vec.step(np.array([0, 0]))[4]["step"], [1, 1])


@pytest.mark.parametrize(
    ("seed", "options", "error", "match"),
    [
        (None, {"reset_mask": np.array([0, 1])}, ValueError, "bool array of shape"),
        (None, {"reset_mask": np.array([True])}, ValueError, "bool array of shape"),
        (None, {"mask": np.array([True, True])}, ValueError, "unknown reset option"),
        (None, {"image": np.zeros((3, 32, 32, 3), np.uint8)}, ValueError, "3 images for 2 envs"),
        (None, {"image": np.zeros((32, 32, 3))}, TypeError, "expected uint8"),
        (None, {"image": np.zeros((16, 16, 3), np.uint8)}, ValueError, "must have shape"),
        ([1, 2, 3], None, ValueError, "expected 2 seeds, got 3"),
        ("0", None, TypeError, "seed must be None, an int"),
    ],
)
def test_vector_env_bad_reset_arguments(seed, options, error, match):
    vec = ImageNavVectorEnv(2)
    with pytest.raises(error, match=match):
        vec.reset(seed=seed, options=options)


@pytest.mark.parametrize("kwargs", [{}, {"task": "coverage", "walls": "maze", "start": "random"}])
def test_vector_info_has_the_keys_masks_and_values_of_sync_vector_env(kwargs):
    n = 3
    sync = sync_of_single_envs(n, max_episode_steps=4, **kwargs)
    vec = native(n, max_episode_steps=4, **kwargs)
    actions = np.random.default_rng(0).integers(0, 5, (9, n))
    infos = [(sync.reset(seed=1)[1], vec.reset(seed=1)[1])]
    infos += [(sync.step(a)[4], vec.step(a)[4]) for a in actions]
    for t, (expected, got) in enumerate(infos):
        assert sorted(got) == sorted(expected), f"step {t}"
        for key, value in expected.items():
            assert np.asarray(got[key]).dtype == np.asarray(value).dtype, f"{key} at step {t}"
            np.testing.assert_array_equal(got[key], value, err_msg=f"{key} at step {t}")

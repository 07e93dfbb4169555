"""ImageNav-v0 single env: API checks, determinism, walls, observations, rendering, fuzz."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import warnings

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gtmsm_env
from gtmsm_env import ACTION_NAMES, DOWN, LEFT, RIGHT, STAY, UP, ImageNavEnv

MOVES = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1), STAY: (0, 0)}


def window(env: ImageNavEnv, position: np.ndarray) -> np.ndarray:
    top, left = env.step_size * position[0], env.step_size * position[1]
    return env.image[top : top + env.crop_size, left : left + env.crop_size]


def test_action_constants_follow_the_documented_order():
    assert (STAY, UP, DOWN, LEFT, RIGHT) == (0, 1, 2, 3, 4)
    assert ACTION_NAMES == ("stay", "up", "down", "left", "right")


def test_registration_both_ids_and_reimport_does_not_warn():
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(gtmsm_env)
    env = gym.make("gtmsm_env:ImageNav-v0")
    assert env.spec.max_episode_steps == 1024
    assert gym.make("ImageNav-v0", max_episode_steps=7).spec.max_episode_steps == 7
    obs, info = env.reset(seed=0)
    assert obs.shape == (8, 8, 3) and obs.dtype == np.uint8
    assert info["grid_shape"] == (9, 9)
    assert tuple(info["position"]) == (4, 4)


def test_gymnasium_check_env_with_render():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("ImageNav-v0", render_mode="rgb_array").unwrapped
    check_env(env)
    env.close()


def test_sb3_check_env():
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 notes 8x8 is below its CnnPolicy's minimum
        check_env(gym.make("ImageNav-v0").unwrapped)


def test_same_seed_same_images_and_observations():
    def run(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        env = gym.make("ImageNav-v0", start="random")
        rng = np.random.default_rng(123)
        images, observations = [], []
        for episode in range(3):
            obs, _ = env.reset(seed=seed if episode == 0 else None)
            images.append(env.unwrapped.image.copy())
            observations.append(obs)
            for action in rng.integers(0, 5, 50):
                observations.append(env.step(action)[0])
        return images, observations

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1], strict=True))
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][0], a[0][1])  # a new image each reset


@pytest.mark.parametrize("action", [UP, DOWN, LEFT, RIGHT, STAY])
@pytest.mark.parametrize("border", ["top", "bottom", "left", "right"])
def test_wall_behaviour_at_each_border(border: str, action: int):
    env = ImageNavEnv()
    env.reset(seed=0)
    rows, cols = env.grid_shape
    # Walk to the middle of the chosen border.
    to_border = {"top": UP, "bottom": DOWN, "left": LEFT, "right": RIGHT}[border]
    for _ in range(rows):
        env.step(to_border)
    before = np.array(env.position)
    obs, reward, terminated, truncated, info = env.step(action)
    target = before + MOVES[action]
    leaves = not (0 <= target[0] < rows and 0 <= target[1] < cols)
    assert info["wall_hit"] is leaves
    expected = before if leaves else target
    np.testing.assert_array_equal(info["position"], expected)
    np.testing.assert_array_equal(obs, window(env, expected))
    assert reward == 0.0 and not terminated and not truncated


def test_observation_is_fresh_array_equal_to_image_slice():
    env = ImageNavEnv(start="random")
    obs, info = env.reset(seed=1)
    obs2, _, _, _, info2 = env.step(STAY)
    np.testing.assert_array_equal(obs, window(env, info["position"]))
    assert obs is not obs2 and not np.shares_memory(obs, obs2)
    obs2[:] = 0
    assert env.step(STAY)[0].any()
    assert info["position"] is not info2["position"]


def test_pinned_image_and_truncation():
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    env = gym.make("ImageNav-v0", max_episode_steps=5)
    obs, info = env.reset(seed=0, options={"image": image})
    np.testing.assert_array_equal(env.unwrapped.image, image)
    np.testing.assert_array_equal(obs, image[12:20, 12:20])
    for t in range(5):
        _, _, terminated, truncated, info = env.step(RIGHT)
        assert info["step"] == t + 1 and not terminated
    assert truncated


def test_coverage_task_rewards_new_positions_only():
    env = ImageNavEnv(task="coverage")
    env.reset(seed=0)
    rewards = [env.step(a)[1] for a in (STAY, RIGHT, LEFT, LEFT, RIGHT, RIGHT)]
    assert rewards == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]


def test_default_task_gives_zero_reward():
    env = ImageNavEnv()
    env.reset(seed=0)
    assert all(env.step(a)[1] == 0.0 for a in (RIGHT, DOWN, LEFT))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"crop_size": 40}, ValueError, "larger than image_size"),
        ({"crop_size": 0}, ValueError, "crop_size must be >= 1"),
        ({"step_size": 2.5}, TypeError, "step_size must be an int"),
        ({"image_size": "32"}, TypeError, "image_size must be an int"),
        ({"start": "corner"}, ValueError, "start must be one of"),
        ({"task": "treasure"}, ValueError, "task must be one of"),
        ({"render_mode": "ansi"}, ValueError, "render_mode must be"),
        ({"image_source": 3}, TypeError, "image_source must be"),
    ],
)
def test_bad_kwargs_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageNavEnv(**kwargs)


def test_bad_step_and_pinned_image_raise_clear_errors():
    env = ImageNavEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be in 0..4"):
        env.step(5)
    with pytest.raises(ValueError, match=r"must have shape \(32, 32, 3\)"):
        env.reset(options={"image": np.zeros((16, 16, 3), np.uint8)})
    with pytest.raises(TypeError, match="expected uint8, got float64"):
        env.reset(options={"image": np.zeros((32, 32, 3))})


def test_rgb_array_frames_are_shaped_and_outline_the_window():
    env = ImageNavEnv(render_mode="rgb_array", render_scale=4)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[12 * 4, 12 * 4], [255, 220, 0])
    env.step(RIGHT)
    assert not np.array_equal(env.render(), frame)
    with pytest.warns(UserWarning, match="without a render_mode"):
        assert ImageNavEnv().render() is None


def test_nothing_touches_pygame_without_human_mode():
    import subprocess
    import sys

    code = (
        "import sys, gymnasium as gym, gtmsm_env\n"
        "e = gym.make('ImageNav-v0', render_mode='rgb_array'); e.reset(seed=0); e.step(1); e.render()\n"
        "assert 'pygame' not in sys.modules, 'pygame imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_human_render_under_dummy_driver_and_close_releases_pygame():
    import pygame

    env = gym.make("ImageNav-v0", render_mode="human")
    env.reset(seed=0)
    env.step(RIGHT)
    assert pygame.display.get_init()
    assert pygame.display.get_surface().get_size() == (512, 284)
    env.close()
    assert not pygame.display.get_init()


def test_keys_to_action_for_gymnasium_play():
    import pygame

    mapping = ImageNavEnv().get_keys_to_action()
    assert mapping[(pygame.K_UP,)] == UP and mapping[(pygame.K_d,)] == RIGHT
    assert STAY not in {v for k, v in mapping.items() if k != (pygame.K_SPACE,)}


@settings(max_examples=25, deadline=None)
@given(
    image_size=st.integers(4, 40),
    crop_frac=st.floats(0.05, 1.0),
    step_size=st.integers(1, 9),
    start=st.sampled_from(["center", "random"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fuzz_invariants_over_configs(image_size, crop_frac, step_size, start, seed):
    crop_size = max(1, round(crop_frac * image_size))
    env = ImageNavEnv(image_size=image_size, crop_size=crop_size, step_size=step_size, start=start)
    rows, cols = env.grid_shape
    assert rows == (image_size - crop_size) // step_size + 1
    obs, info = env.reset(seed=seed)
    assert env.observation_space.contains(obs)
    rng = np.random.default_rng(seed)
    position = info["position"]
    for action in rng.integers(0, 5, 500):  # 25 examples x 500 = 12.5k random actions
        obs, _, _, _, info = env.step(action)
        target = position + MOVES[int(action)]
        leaves = not (0 <= target[0] < rows and 0 <= target[1] < cols)
        assert info["wall_hit"] == leaves
        expected = position if leaves else target
        np.testing.assert_array_equal(info["position"], expected)
        assert 0 <= expected[0] < rows and 0 <= expected[1] < cols
        np.testing.assert_array_equal(obs, window(env, expected))
        position = info["position"]

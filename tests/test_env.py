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


def test_gymnasium_check_env_with_render_and_no_warnings():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("ImageNav-v0", render_mode="rgb_array").unwrapped
    assert isinstance(env, ImageNavEnv) and env.spec is not None  # so every render mode is checked
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any complaint of the checker fails the test
        check_env(env, skip_render_check=False)
    env.close()


def test_sb3_check_env_with_render():
    from stable_baselines3.common.env_checker import check_env

    env = gym.make("ImageNav-v0", render_mode="rgb_array").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True, skip_render_check=False)
    # The only expected note: 8x8 is below the minimum of SB3's default CnnPolicy.
    others = [str(w.message) for w in caught if "minimal resolution" not in str(w.message)]
    assert others == []


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
    np.testing.assert_array_equal(obs, window(env, info["position"]))
    obs2, _, _, _, info2 = env.step(STAY)
    assert not np.shares_memory(obs, obs2) and not np.shares_memory(obs2, env.image)
    expected = window(env, info2["position"]).copy()
    assert expected.any()
    obs2[:] = 0  # writing into a returned observation must not change the env
    info2["position"][:] = -1
    obs3, _, _, _, info3 = env.step(STAY)
    np.testing.assert_array_equal(obs3, expected)
    np.testing.assert_array_equal(info3["position"], info["position"])


def test_pinned_image_and_truncation():
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    env = gym.make("ImageNav-v0", max_episode_steps=5)
    obs, info = env.reset(seed=0, options={"image": image})
    np.testing.assert_array_equal(env.unwrapped.image, image)
    np.testing.assert_array_equal(obs, image[12:20, 12:20])
    image[:] = 0  # the env keeps its own copy of a pinned image
    assert env.unwrapped.image.any()
    flags = []
    for t in range(5):
        _, _, terminated, truncated, info = env.step(RIGHT)
        assert info["step"] == t + 1 and not terminated
        flags.append(truncated)
    assert flags == [False, False, False, False, True]
    env.reset()
    assert not env.step(STAY)[3]  # a reset restarts the count


@pytest.mark.parametrize("make", ["raw", "gym.make"])
def test_max_episode_steps_truncates_raw_and_registered_env(make):
    env = (
        ImageNavEnv(max_episode_steps=3)
        if make == "raw"
        else gym.make("ImageNav-v0", max_episode_steps=3)
    )
    for _ in range(2):
        env.reset(seed=0)
        assert [env.step(UP)[3] for _ in range(3)] == [False, False, True]
    assert ImageNavEnv().max_episode_steps is None
    raw = ImageNavEnv()
    raw.reset(seed=0)
    assert not any(raw.step(UP)[3] for _ in range(2000))  # the raw env never truncates by itself


def test_coverage_task_rewards_new_positions_only():
    env = ImageNavEnv(task="coverage")
    env.reset(seed=0)
    rewards = [env.step(a)[1] for a in (STAY, RIGHT, LEFT, LEFT, RIGHT, RIGHT)]
    assert rewards == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    # Wall hits earn nothing; the count restarts at reset.
    for _ in range(4):
        env.step(UP)
    assert env.position == (0, 5) and env.step(UP)[1] == 0.0
    env.reset()
    assert env.step(RIGHT)[1] == 1.0


def test_coverage_return_equals_positions_seen_minus_start():
    env = gym.make("ImageNav-v0", task="coverage", start="random", max_episode_steps=300)
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    visited = {tuple(env.unwrapped.position)}
    total, truncated = 0.0, False
    while not truncated:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(5)))
        new = tuple(info["position"]) not in visited
        visited.add(tuple(info["position"]))
        assert reward == (1.0 if new else 0.0) and not terminated
        total += reward
    assert total == len(visited) - 1 == env.unwrapped.num_seen - 1 > 10


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
        ({"image_source": "/no/such/folder"}, FileNotFoundError, "does not exist"),
        ({"image_size": True}, TypeError, "image_size must be an int"),
        ({"step_size": 0}, ValueError, "step_size must be >= 1"),
        ({"render_scale": 0}, ValueError, "render_scale must be >= 1"),
        ({"max_episode_steps": 0}, ValueError, "max_episode_steps must be >= 1"),
        ({"max_episode_steps": 1.5}, TypeError, "max_episode_steps must be an int"),
    ],
)
def test_bad_kwargs_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageNavEnv(**kwargs)


def test_bad_kwargs_through_gym_make():
    with pytest.raises(ValueError, match="start must be one of"):
        gym.make("ImageNav-v0", start="middle")


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        ImageNavEnv().step(0)


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        (7, ValueError, "action must be in 0..4.*got 7"),
        (5, ValueError, "action must be in 0..4.*got 5"),
        (-1, ValueError, "action must be in 0..4.*got -1"),
        (np.int64(-3), ValueError, "action must be in 0..4.*got -3"),
        (2.5, TypeError, "action must be an int.*got float 2.5"),
        (2.0, TypeError, "action must be an int.*got float"),
        (np.float32(1), TypeError, "action must be an int.*got float32"),
        (np.array([1, 2]), TypeError, r"action must be an int.*array of shape \(2,\)"),
        (np.array([1]), TypeError, r"action must be an int.*array of shape \(1,\)"),
        (np.array(1.0), TypeError, "action must be an int.*dtype float64"),
        (True, TypeError, "action must be an int.*got bool"),
        ("1", TypeError, "action must be an int.*got str"),
        (None, TypeError, "action must be an int.*got NoneType"),
    ],
)
def test_bad_actions_raise_clear_errors(action, error, match):
    env = ImageNavEnv()
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)
    assert env.elapsed_steps == 0 and env.position == (4, 4)  # a rejected action changes nothing


@pytest.mark.parametrize("action", [RIGHT, np.int64(RIGHT), np.uint8(RIGHT), np.array(RIGHT)])
def test_integer_like_actions_are_accepted(action):
    env = ImageNavEnv()
    env.reset(seed=0)
    assert tuple(env.step(action)[4]["position"]) == (4, 5)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"image": np.zeros((16, 16, 3), np.uint8)}, ValueError, r"must have shape \(32, 32, 3\)"),
        ({"image": np.zeros((32, 32), np.uint8)}, ValueError, r"must have shape \(32, 32, 3\)"),
        ({"image": np.zeros((32, 32, 4), np.uint8)}, ValueError, r"got \(32, 32, 4\)"),
        ({"image": np.zeros((1, 32, 32, 3), np.uint8)}, ValueError, "must have shape"),
        ({"image": np.zeros((32, 32, 3))}, TypeError, "expected uint8, got float64"),
        ({"image": np.zeros((32, 32, 3), np.int64)}, TypeError, "expected uint8, got int64"),
        ({"image": [[0] * 3] * 32}, TypeError, "must be a numpy array, got list"),
        ({"imgae": np.zeros((32, 32, 3), np.uint8)}, ValueError, r"unknown reset option.*imgae"),
        ("image", TypeError, "options must be a dict"),
    ],
)
def test_bad_reset_options_raise_clear_errors(options, error, match):
    env = ImageNavEnv()
    with pytest.raises(error, match=match):
        env.reset(seed=0, options=options)


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
        "for mode in (None, 'rgb_array'):\n"
        "    e = gym.make('ImageNav-v0', render_mode=mode); e.reset(seed=0); e.step(1)\n"
        "    e.render() if mode else None; e.close()\n"
        "v = gym.make_vec('ImageNav-v0', num_envs=2, vectorization_mode='vector_entry_point')\n"
        "v.reset(seed=0); v.step([1, 2]); v.close()\n"
        "assert 'pygame' not in sys.modules, 'pygame imported'\n"
    )
    # No display at all: without render_mode='human' nothing may need one.
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "SDL_VIDEODRIVER")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_human_render_under_dummy_driver_and_close_releases_pygame():
    import pygame

    env = gym.make("ImageNav-v0", render_mode="human")
    env.reset(seed=0)
    env.step(RIGHT)
    assert pygame.display.get_init()
    assert pygame.display.get_surface().get_size() == (512, 284)
    assert env.render() is None
    assert env.unwrapped.path == [(4, 4), (4, 5)]
    env.close()
    assert not pygame.display.get_init()
    env.close()  # closing twice is harmless
    ImageNavEnv(render_mode="human").close()  # never rendered: nothing to release
    assert not pygame.display.get_init()


def test_keys_to_action_for_gymnasium_play():
    import pygame

    mapping = ImageNavEnv().get_keys_to_action()
    assert mapping == {
        (pygame.K_UP,): UP,
        (pygame.K_DOWN,): DOWN,
        (pygame.K_LEFT,): LEFT,
        (pygame.K_RIGHT,): RIGHT,
        (pygame.K_w,): UP,
        (pygame.K_s,): DOWN,
        (pygame.K_a,): LEFT,
        (pygame.K_d,): RIGHT,
        (pygame.K_SPACE,): STAY,
    }


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


def test_human_render_without_a_usable_display_names_the_fix(monkeypatch):
    import pygame

    def no_display(*args, **kwargs):
        raise pygame.error("No available video device")

    monkeypatch.setattr(pygame.display, "set_mode", no_display)
    env = ImageNavEnv(render_mode="human")
    with pytest.raises(RuntimeError, match="SDL_VIDEODRIVER=dummy"):
        env.reset(seed=0)
    assert not pygame.display.get_init()
    env.close()


def test_env_and_vector_env_take_a_world_or_its_fields():
    from gtmsm_env import ImageNavVectorEnv, World

    world = World(image_size=40, crop_size=10, step_size=5, walls="maze", wall_density=0.1)
    for make in (lambda **k: ImageNavEnv(**k), lambda **k: ImageNavVectorEnv(2, **k)):
        assert make(world=world).world == make(**world.env_kwargs()).world == world
        with pytest.raises(ValueError, match="either as world= or as loose settings"):
            make(world=world, crop_size=4)
    assert gym.make("ImageNav-v0", world=world).unwrapped.grid_shape == (7, 7)

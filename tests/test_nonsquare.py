"""Rectangular (height x width) images end to end: env, vector env, maze, image sources, rollouts,
and GTM-SM trained and evaluated on a non-square world (and on 64 x 64)."""

from __future__ import annotations

import json
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import gtmsm_env  # noqa: F401
from gtmsm_env.env import DOWN, LEFT, RIGHT, UP, ImageNavEnv
from gtmsm_env.geometry import GridGeometry
from gtmsm_env.images import (
    ArrayImages,
    FolderImages,
    ImageSizeError,
    NpzImages,
    ProceduralImages,
    image_shape_of,
    make_image_source,
)
from gtmsm_env.maze import generate_maze, interior_edges, max_interior_walls, reachable_cells
from gtmsm_env.rollouts import collect_rollouts
from gtmsm_env.rollouts_cli import main as rollouts_main
from gtmsm_env.vector_env import ImageNavVectorEnv
from gtmsm_env.world import World

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # human render checks need no display

WIDE, TALL = (32, 48), (48, 32)


@pytest.mark.parametrize("image_size", [WIDE, TALL, [20, 44]])
def test_grid_of_a_rectangle_and_centre_start(image_size):
    env = ImageNavEnv(image_size=image_size)
    height, width = image_size
    rows, cols = (height - 8) // 3 + 1, (width - 8) // 3 + 1
    assert rows != cols
    assert env.grid_shape == (rows, cols)
    assert env.image_shape == (height, width) and env.image_size == (height, width)
    obs, info = env.reset(seed=0)
    assert env.image.shape == (height, width, 3)
    assert tuple(info["position"]) == (rows // 2, cols // 2)
    assert info["grid_shape"] == (rows, cols)


def test_square_image_size_keeps_its_int_form():
    for image_size in (32, (32, 32), [32, 32]):
        env = ImageNavEnv(image_size=image_size)
        assert env.image_size == 32 and env.image_shape == (32, 32) and env.grid_shape == (9, 9)
    assert GridGeometry.validated(32, 8, 3) == GridGeometry(32, 32, 8, 3)


@pytest.mark.parametrize("image_size", [WIDE, TALL])
def test_window_crosses_the_whole_rectangle_and_stops_at_each_border(image_size):
    env = ImageNavEnv(image_size=image_size)
    env.reset(seed=1)
    rows, cols = env.grid_shape
    for action, target in ((UP, (0, None)), (DOWN, (rows - 1, None)),
                           (LEFT, (None, 0)), (RIGHT, (None, cols - 1))):
        for _ in range(max(rows, cols) + 2):
            obs, _, _, _, info = env.step(action)
            row, col = info["position"]
            np.testing.assert_array_equal(obs, env.image[3 * row : 3 * row + 8, 3 * col : 3 * col + 8])
        assert info["wall_hit"]
        assert all(t is None or p == t for p, t in zip(info["position"], target, strict=True))


@pytest.mark.parametrize("image_size", [WIDE, TALL])
def test_checkers_accept_rectangular_worlds(image_size):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for observation in ("crop", "crop+position+visited"):
        env = gym.make("ImageNav-v0", image_size=image_size, walls="maze", observation=observation,
                       render_mode="rgb_array").unwrapped
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env, skip_render_check=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sb3_check_env(env, warn=True, skip_render_check=False)
        # Expected notes: 8x8 is below SB3's CnnPolicy minimum; the (rows, cols) visited map is
        # neither an image nor a vector (as on the square grid).
        expected = ("minimal resolution", "visited has an unconventional shape")
        others = [str(w.message) for w in caught if not any(e in str(w.message) for e in expected)]
        assert others == []
        env.close()


def test_observation_parts_on_a_rectangle():
    env = ImageNavEnv(image_size=WIDE, observation="crop+position+visited")
    obs, _ = env.reset(seed=0)
    rows, cols = env.grid_shape
    assert env.observation_space["visited"].shape == (rows, cols)
    assert obs["visited"].shape == (rows, cols) and obs["visited"][rows // 2, cols // 2] == 1.0
    for _ in range(cols):
        obs, *_ = env.step(RIGHT)
    np.testing.assert_allclose(obs["position"], [(rows // 2) / (rows - 1), 1.0])
    for _ in range(rows):
        obs, *_ = env.step(DOWN)
    np.testing.assert_allclose(obs["position"], [1.0, 1.0])
    assert obs["visited"][rows - 1, cols - 1] == 1.0
    assert env.observation_space.contains(obs)


def test_vector_env_equals_single_envs_on_a_rectangle():
    n, steps = 4, 60
    kwargs = dict(image_size=TALL, start="random", walls="maze", wall_density=0.2,
                  observation="crop+position+visited", task="coverage", max_episode_steps=25)
    actions = np.random.default_rng(3).integers(0, 5, (steps, n))
    singles = gym.vector.SyncVectorEnv([lambda: gym.make("ImageNav-v0", **kwargs) for _ in range(n)])
    native = ImageNavVectorEnv(n, **kwargs)
    for env in (singles, native):
        env.reset(seed=11)
    for t in range(steps):
        expected = singles.step(actions[t])
        got = native.step(actions[t])
        for key in expected[0]:
            np.testing.assert_array_equal(expected[0][key], got[0][key], err_msg=f"{key} at {t}")
        for e, g in zip(expected[1:4], got[1:4], strict=True):
            np.testing.assert_array_equal(e, g)
        for key in ("position", "wall_hit", "coverage"):
            np.testing.assert_array_equal(expected[4][key], got[4][key])
    assert native.images.shape == (n, *TALL, 3)
    assert native.blocked_moves.shape == (n, *native.grid_shape, 5)


def test_pinned_images_must_match_height_and_width():
    env = ImageNavEnv(image_size=WIDE)
    image = np.random.default_rng(0).integers(0, 256, (*WIDE, 3), dtype=np.uint8)
    env.reset(options={"image": image})
    np.testing.assert_array_equal(env.image, image)
    with pytest.raises(ValueError, match=r"must have shape \(32, 48, 3\).*got \(48, 32, 3\)"):
        env.reset(options={"image": image.transpose(1, 0, 2).copy()})
    vec = ImageNavVectorEnv(2, image_size=WIDE)
    vec.reset(options={"image": np.stack([image, image[::-1]])})
    np.testing.assert_array_equal(vec.images[1], image[::-1])
    with pytest.raises(ValueError, match=r"must have shape \(32, 48, 3\)"):
        vec.reset(options={"image": np.zeros((32, 32, 3), np.uint8)})


@pytest.mark.parametrize("grid_shape", [(9, 14), (14, 9), (2, 7), (1, 5)])
def test_maze_on_a_rectangle_keeps_every_cell_reachable(grid_shape):
    rows, cols = grid_shape
    perfect = max_interior_walls(grid_shape) / max(len(interior_edges(grid_shape)), 1)
    densities = [d for d in (0.05, 0.3) if d <= perfect] + [perfect]
    for seed in range(5):
        for density in densities:
            blocked = generate_maze(np.random.default_rng(seed), grid_shape, density)
            assert blocked.shape == (rows, cols, 5)
            assert reachable_cells(blocked, (rows // 2, cols // 2)).all()
            # walls are symmetric and the border is blocked
            assert blocked[0, :, UP].all() and blocked[-1, :, DOWN].all()
            assert blocked[:, 0, LEFT].all() and blocked[:, -1, RIGHT].all()
            np.testing.assert_array_equal(blocked[:, :-1, RIGHT], blocked[:, 1:, LEFT])
            np.testing.assert_array_equal(blocked[:-1, :, DOWN], blocked[1:, :, UP])
    env = ImageNavEnv(image_size=WIDE, walls="maze", wall_density=densities[-1])
    env.reset(seed=0)
    assert reachable_cells(env.blocked_moves, env.position).all()
    with pytest.raises(ValueError, match="9x14 grid"):
        ImageNavEnv(image_size=WIDE, walls="maze", wall_density=0.9)


def test_rgb_array_frame_is_the_rectangle_upscaled():
    env = ImageNavEnv(image_size=TALL, render_mode="rgb_array", render_scale=2, walls="maze")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 64, 3)
    vec = ImageNavVectorEnv(2, image_size=TALL, render_mode="rgb_array", render_scale=2)
    vec.reset(seed=0)
    assert [f.shape for f in vec.render()] == [(96, 64, 3)] * 2


def test_human_window_fits_a_rectangle_in_its_panel():
    import pygame

    env = ImageNavEnv(image_size=WIDE, render_mode="human")
    env.reset(seed=0)
    env.step(RIGHT)
    assert pygame.display.get_surface().get_size() == (512, 284)
    canvas = env._renderer.view.canvas
    # The 32x48 image fills the 256-pixel panel's width and 2/3 of its height, undistorted.
    image = env.image.astype(int)
    assert np.abs(np.array(canvas.get_at((255, 5))[:3]) - image[0, 47]).max() <= 8
    assert np.abs(np.array(canvas.get_at((5, 169))[:3]) - image[31, 0]).max() <= 8
    assert tuple(canvas.get_at((5, 180)))[:3] == (20, 20, 20)  # below the image: background
    env.close()


@pytest.mark.parametrize(
    ("image_size", "error", "match"),
    [
        ((32,), ValueError, "int or a .height, width. pair"),
        ((32, 48, 3), ValueError, "int or a .height, width. pair"),
        ((32, 0), ValueError, "image_size width must be >= 1"),
        ((32.0, 48), TypeError, "image_size height must be an int"),
        ("32x48", TypeError, "image_size must be an int"),
        ((32, 6), ValueError, r"crop_size=8 is larger than image_size=\(32, 6\)"),
    ],
)
def test_bad_image_sizes_name_the_problem(image_size, error, match):
    with pytest.raises(error, match=match):
        ImageNavEnv(image_size=image_size)


# -- image sources ------------------------------------------------------------------------------


def test_procedural_rectangle_is_the_centre_of_the_square_scene():
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    square = ProceduralImages(48).sample(rng(), 3)
    wide = ProceduralImages(WIDE).sample(rng(), 3)
    tall = ProceduralImages(TALL).sample(rng(), 3)
    assert wide.shape == (3, 32, 48, 3) and tall.shape == (3, 48, 32, 3)
    np.testing.assert_array_equal(wide, square[:, 8:40])
    np.testing.assert_array_equal(tall, square[:, :, 8:40])
    np.testing.assert_array_equal(ProceduralImages((32, 32)).sample(rng(), 2),
                                  ProceduralImages(32).sample(rng(), 2))
    rngs = [np.random.default_rng(i) for i in range(3)]
    np.testing.assert_array_equal(ProceduralImages(WIDE).sample_each(rngs),
                                  np.concatenate([ProceduralImages(WIDE).sample(np.random.default_rng(i), 1)
                                                  for i in range(3)]))
    assert ProceduralImages(WIDE).describe() == "procedural(image_size=(32, 48))"


def _thirds(height: int, width: int) -> np.ndarray:
    """Red / green / blue vertical thirds, or horizontal thirds when taller than wide."""
    image = np.zeros((height, width, 3), np.uint8)
    if width >= height:
        for k in range(3):
            image[:, k * width // 3 : (k + 1) * width // 3, k] = 255
    else:
        for k in range(3):
            image[k * height // 3 : (k + 1) * height // 3, :, k] = 255
    return image


def test_folder_of_mixed_aspect_ratios_gives_height_by_width_images(tmp_path):
    for name, (height, width) in {"wide": (90, 300), "tall": (300, 90), "square": (120, 120),
                                  "near": (100, 150)}.items():
        Image.fromarray(_thirds(height, width)).save(tmp_path / f"{name}.png")
    for image_size in (WIDE, TALL, 32):
        source = FolderImages(tmp_path, image_size=image_size)
        assert source.images.shape == (4, *image_shape_of(image_size), 3)
        assert source.image_shape == image_shape_of(image_size)
    # centre crop to the target aspect ratio: a 300-wide image cropped to a square keeps only
    # its green middle; cropped to 1:3 (height x width) it keeps all three thirds.
    square = FolderImages(tmp_path, image_size=30).images[3]  # sorted: near, square, tall, wide
    assert (square[..., 1] > 200).all() and (square[..., 0] < 50).all()
    strip = FolderImages(tmp_path, image_size=(10, 30)).images[3]
    assert strip[:, 2, 0].min() > 200 and strip[:, 15, 1].min() > 200 and strip[:, 27, 2].min() > 200
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(_thirds(40, 100)).save(small / "strip.png")
    assert FolderImages(small, image_size=(32, 80)).images.shape == (1, 32, 80, 3)
    with pytest.raises(ValueError, match=r"image is 40x100 \(height x width\), smaller than "
                                         r"image_size=\(48, 64\) after a centre crop"):
        make_image_source(str(small), image_size=(48, 64))


def test_arrays_and_files_must_match_height_and_width(tmp_path):
    images = np.zeros((3, *WIDE, 3), np.uint8)
    assert ArrayImages(images).image_size == WIDE
    assert make_image_source(images, WIDE).sample(np.random.default_rng(0), 2).shape == (2, *WIDE, 3)
    with pytest.raises(ValueError, match=r"images are 32x48 \(height x width\) but image_size=\(48, 32\)"):
        make_image_source(images, TALL)
    with pytest.raises(ImageSizeError, match=r"or use their size: image_size=\(32, 48\)\)$") as raised:
        make_image_source(images, 32)
    assert raised.value.image_shape == WIDE and "--image-size" not in str(raised.value)
    np.save(tmp_path / "wide.npy", images)
    assert NpzImages(tmp_path / "wide.npy", image_size=WIDE).image_shape == WIDE
    with pytest.raises(ValueError, match="wide.npy: images are 32x48"):
        make_image_source(tmp_path / "wide.npy", (32, 32))
    with pytest.raises(ValueError, match=r"makes 32x48 \(height x width\) images but image_size=\(48, 32\)"):
        make_image_source(ProceduralImages(WIDE), TALL)
    with pytest.raises(ValueError, match="images are 32x48"):
        ImageNavEnv(image_size=TALL, image_source=images)


# -- rollouts -----------------------------------------------------------------------------------


def test_collect_rollouts_on_a_rectangle():
    rollouts = collect_rollouts(3, 30, seed=0, world=World(image_size=WIDE, start="random", walls="maze"))
    assert rollouts.images.shape == (3, *WIDE, 3)
    assert rollouts.blocked_moves.shape == (3, 9, 14, 5)
    meta = rollouts.metadata
    assert meta["image_size"] == [32, 48] and meta["image_shape"] == [32, 48]
    assert meta["grid_shape"] == [9, 14]
    assert rollouts.positions[..., 0].max() <= 8 and rollouts.positions[..., 1].max() <= 13
    for i in range(3):
        for t in range(30):
            row, col = rollouts.positions[i, t]
            np.testing.assert_array_equal(rollouts.observations[i, t],
                                          rollouts.images[i, 3 * row : 3 * row + 8, 3 * col : 3 * col + 8])
    square = collect_rollouts(2, 5, seed=0).metadata
    assert square["image_size"] == 32 and square["image_shape"] == [32, 32]


def test_rollouts_cli_image_width(tmp_path, capsys):
    out = tmp_path / "r.npz"
    rollouts_main(["--num-sequences", "2", "--seq-len", "12", "--image-size", "48",
                   "--image-width", "64", "--walls", "maze", "--out", str(out)])
    from gtmsm_env.rollouts import Rollouts

    loaded = Rollouts.load(out)
    assert loaded.images.shape == (2, 48, 64, 3) and loaded.metadata["grid_shape"] == [14, 19]
    assert "of 14x19" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        rollouts_main(["--image-width", "6", "--out", str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2
    assert "--crop-size 8 is larger than --image-width 6" in capsys.readouterr().err
    assert json.loads(json.dumps(loaded.metadata))["image_size"] == [48, 64]


# -- GTM-SM on a non-square world and on 64 x 64 --------------------------------------------------


@pytest.mark.parametrize(("flags", "image_shape", "grid_shape"), [
    (["--image-size", "32", "--image-width", "48"], (32, 48), (9, 14)),
    (["--image-size", "64"], (64, 64), (19, 19)),
])
def test_gtmsm_debug_preset_trains_and_evaluates(tmp_path, capsys, flags, image_shape, grid_shape):
    import torch

    from gtmsm_model.cli import main as cli_main
    from gtmsm_model.train import TrainConfig

    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", *flags, "--out-dir", str(out), "--no-progress",
                     "--threads", "1"]) == 0
    payload = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    world = TrainConfig.from_dict(payload["train_config"]).world.env_kwargs()
    assert ImageNavEnv(**world).image_shape == image_shape
    capsys.readouterr()
    assert cli_main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--eval-sequences", "4",
                     "--eval-tau", "32", "--eval-horizon", "16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["eval_world"]["image_size"] in (list(image_shape), image_shape[0])
    assert 0 < metrics["mse"] < 1 and np.isfinite(metrics["smap_rms"])
    assert metrics["fraction_revisited"] + metrics["fraction_novel"] == pytest.approx(1.0)
    assert (out / "prediction.png").exists()  # the canvases are assembled at (height, width)
    rollouts = collect_rollouts(2, 8, seed=0, world=World(**world))
    assert rollouts.metadata["grid_shape"] == list(grid_shape)


def test_train_config_checks_the_crop_fits_both_sides():
    from gtmsm_model.train import make_config

    config = make_config("debug", image_size=32, image_width=48)
    config.validate()
    assert config.world.image_size == (32, 48)
    assert make_config("debug").world.image_size == 32
    with pytest.raises(ValueError, match=r"`crop_size` \(8\) must not exceed `image_width` \(6\)"):
        make_config("debug", image_width=6).validate()
    with pytest.raises(ValueError, match=r"`crop_size` \(8\) must not exceed `image_size` \(6\)"):
        make_config("debug", image_size=6, image_width=48).validate()

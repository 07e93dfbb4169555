"""Image sources: the procedural default and the array/file/folder loaders."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from gtmsm_env import ImageNavEnv
from gtmsm_env.images import (
    ArrayImages,
    FolderImages,
    ImageSource,
    NpzImages,
    ProceduralImages,
    make_image_source,
    procedural_images,
)


def test_procedural_images_are_reproducible_uint8_and_varied():
    a, b = procedural_images(16, seed=0), procedural_images(16, seed=0)
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, procedural_images(16, seed=1))
    assert len({im.tobytes() for im in a}) == 16
    # Photo-like: mid-range mean, real contrast, no saturation at the extremes.
    x = a.astype(np.float64) / 255
    assert 0.25 < x.mean() < 0.75
    assert x.std(axis=(1, 2, 3)).mean() > 0.08


def test_procedural_crops_at_different_positions_are_distinguishable():
    images = procedural_images(16, seed=3)
    env = ImageNavEnv()
    crops = env.geometry.windows(images).reshape(16, 81, -1).astype(np.float64) / 255
    # Mean squared distance between every pair of the 81 crops of one image.
    d = ((crops[:, :, None] - crops[:, None]) ** 2).mean(-1)
    off_diagonal = d[:, ~np.eye(81, dtype=bool)]
    assert np.median(off_diagonal) > 0.005
    assert (off_diagonal > 1e-4).mean() > 0.99


def test_procedural_is_smooth_not_white_noise():
    x = procedural_images(32, seed=0).astype(np.float64) / 255
    neighbour = np.abs(np.diff(x, axis=2)).mean()
    shuffled = np.abs(
        np.diff(np.random.default_rng(0).permutation(x.reshape(-1, 3)), axis=0)
    ).mean()
    assert neighbour < 0.4 * shuffled


def test_procedural_sample_each_matches_single_draws_and_is_fast():
    source = ProceduralImages()
    rngs = [np.random.default_rng(i) for i in range(4)]
    batched = source.sample_each([np.random.default_rng(i) for i in range(4)])
    for i, rng in enumerate(rngs):
        np.testing.assert_array_equal(batched[i], source.sample(rng, 1)[0])
    start = time.perf_counter()
    source.sample(np.random.default_rng(0), 512)
    assert time.perf_counter() - start < 3.0  # ~0.3 s expected; generous for slow CI


@pytest.mark.parametrize("image_size", [8, 17, 64])
def test_procedural_other_sizes(image_size):
    assert procedural_images(2, seed=0, image_size=image_size).shape == (
        2,
        image_size,
        image_size,
        3,
    )


def test_array_images_single_and_batch():
    batch = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    source = ArrayImages(batch)
    drawn = source.sample(np.random.default_rng(0), 10)
    assert drawn.shape == (10, 32, 32, 3)
    assert all(any(np.array_equal(d, b) for b in batch) for d in drawn)
    assert len(ArrayImages(batch[0])) == 1
    assert isinstance(make_image_source(batch), ImageSource)


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.zeros((2, 32, 32, 3)), TypeError, "expected uint8, got float64"),
        (np.zeros((32, 32), np.uint8), ValueError, "ndim=2"),
        (np.zeros((2, 32, 32, 4), np.uint8), ValueError, "3 colour channels"),
        (np.zeros((2, 32, 16, 3), np.uint8), ValueError, r"32x16 \(height x width\) but image_size=32"),
        (np.zeros((2, 16, 16, 3), np.uint8), ValueError, "must match image_size exactly"),
        (np.zeros((0, 32, 32, 3), np.uint8), ValueError, "contains no images"),
    ],
)
def test_bad_arrays_fail_at_construction(array, error, match):
    with pytest.raises(error, match=match):
        make_image_source(array, image_size=32)
    with pytest.raises(error, match=match):
        ImageNavEnv(image_source=array)


def test_image_smaller_than_window_is_rejected():
    with pytest.raises(ValueError, match="larger than image_size"):
        ImageNavEnv(image_size=4, image_source=np.zeros((4, 4, 3), np.uint8))


def test_npz_and_npy_files(tmp_path):
    images = procedural_images(3, seed=0)
    np.save(tmp_path / "a.npy", images)
    np.savez(tmp_path / "b.npz", images=images, labels=np.arange(3))
    np.savez(tmp_path / "c.npz", anything=images)
    np.savez(tmp_path / "d.npz", x=images, y=images)
    for name in ("a.npy", "b.npz", "c.npz"):
        np.testing.assert_array_equal(NpzImages(tmp_path / name).images, images)
    with pytest.raises(ValueError, match="named 'images' or exactly one array"):
        NpzImages(tmp_path / "d.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not read image file"):
        NpzImages(tmp_path / "bad.npz")
    np.savez_compressed(tmp_path / "e.npz", images=images)
    data = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="could not read image file .*truncated.npz"):
        NpzImages(tmp_path / "truncated.npz")
    damaged = bytearray(data)
    damaged[200:600] = bytes(400)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="could not read array 'images'"):
        NpzImages(tmp_path / "damaged.npz")
    np.save(tmp_path / "objects.npy", np.array([images], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"pickled objects \(never loaded\)"):
        NpzImages(tmp_path / "objects.npy")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"must be .npy or .npz, got x.png"):
        NpzImages(tmp_path / "x.png")
    env = ImageNavEnv(image_source=str(tmp_path / "a.npy"))
    env.reset(seed=0)
    assert any(np.array_equal(env.image, im) for im in images)


def test_folder_images_centre_crop_resize_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L").save(tmp_path / "grey.jpg")
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "sub" / "rgba.webp"
    )
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped 1 of 4 files"):
        source = FolderImages(tmp_path, image_size=32)
    assert source.images.shape == (3, 32, 32, 3) and len(source.skipped) == 1
    with pytest.warns(UserWarning, match="broken.png"):
        source16 = make_image_source(tmp_path, image_size=16)
    assert source16.images.shape == (3, 16, 16, 3)


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_image_source(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageNavEnv(image_source=tmp_path / "missing")
    with pytest.raises(ValueError, match="max_images must be None or an int >= 1"):
        FolderImages(tmp_path, max_images=0)
    with pytest.raises(ValueError, match="image folder is empty"):
        FolderImages(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no readable images"):
        FolderImages(tmp_path)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="smaller than image_size=32"):
        FolderImages(tmp_path)


def test_source_with_wrong_size_is_rejected():
    with pytest.raises(ValueError, match="image_size=32"):
        make_image_source(ProceduralImages(16), image_size=32)

"""Natural-photo test images: 32×32 patches cut at random scales from photos a package ships.

Two photo sets, both inside their packages (no download), both never trained on:

* ``texture``: scikit-learn's two sample photos (china.jpg, flower.jpg, 427×640), texture-rich
  everywhere;
* ``flat``: scikit-image's bundled photographs with large flat areas beside strong edges (dark
  skies, uniform backgrounds: astronaut, camera, coins, hubble_deep_field, rocket, retina, moon,
  coffee, motorcycle_left) — the stress set for localisation, where a free move across a flat area
  leaves the crop unchanged. Grey photos are repeated over the three channels.

Each patch is a random square of side uniform in [32, half the photo's short side] px, downsampled to
32×32 with Pillow's antialiasing LANCZOS filter. Written as an ``.npz`` (key ``images``), which
ImageNav's npz image source reads.

    python -m gtmsm_env.photo_patches --count 512 --seed 0 --out data/photo_patches.npz
    python -m gtmsm_env.photo_patches --photo-set flat --out data/flat_photo_patches.npz

Needs scikit-learn (``texture``) or scikit-image (``flat``), both in the ``dev`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtmsm_cli.flags import bounded, parse_dataclass

FLAT_PHOTOS = ("astronaut.png", "camera.png", "coins.png", "hubble_deep_field.jpg", "rocket.jpg", "retina.jpg",
               "moon.png", "coffee.png", "motorcycle_left.png")
"""scikit-image's bundled photographs in the ``flat`` set (files in ``skimage/data``, read directly: no download)."""
PHOTO_SETS = {"texture": "scikit-learn", "flat": "scikit-image"}
"""Each photo set and the package (an extra of ``dev``) that ships its photos."""


def load_photos(photo_set: str) -> list[np.ndarray]:
    """The photos of ``photo_set`` as (H, W, 3) uint8 arrays. ``ImportError`` names the package it needs."""
    if photo_set not in PHOTO_SETS:
        raise ValueError(f"photo_set must be one of {list(PHOTO_SETS)}, got {photo_set!r}")
    if photo_set == "texture":
        from sklearn.datasets import load_sample_images

        return list(load_sample_images().images)
    from PIL import Image
    from skimage import data

    photos = []
    for name in FLAT_PHOTOS:
        with Image.open(Path(data.__file__).parent / name) as file:
            photo = np.asarray(file.convert("RGB") if file.mode not in ("L", "RGB") else file)
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=-1)
        photos.append(np.ascontiguousarray(photo[..., :3]).astype(np.uint8))
    return photos


def photo_patches(count: int, seed: int, image_size: int = 32, photo_set: str = "texture") -> np.ndarray:
    """(count, image_size, image_size, 3) uint8 patches of ``photo_set``, reproducible from ``seed``."""
    from PIL import Image

    photos = load_photos(photo_set)
    rng = np.random.default_rng(seed)
    patches = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for index in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(image_size, max(image_size, min(photo.shape[:2]) // 2) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        patch = Image.fromarray(photo[top:top + side, left:left + side])
        patches[index] = np.asarray(patch.resize((image_size, image_size), Image.LANCZOS))
    return patches


def write_photo_patches(path: str | Path, count: int, seed: int, image_size: int = 32,
                        photo_set: str = "texture") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=photo_patches(count, seed, image_size, photo_set))
    return path


@dataclass
class Args:
    """Options of ``python -m gtmsm_env.photo_patches``."""

    count: int = bounded(512, ge=1)
    """Number of patches."""
    seed: int = bounded(0, ge=0)
    """Seed of the patch positions and scales."""
    image_size: int = bounded(32, ge=1, le=213)
    """Patch side in pixels."""
    photo_set: str = "texture"
    """Which photos: "texture" (scikit-learn's sample photos) or "flat" (scikit-image's, large flat areas)."""
    out: Path = Path("data/photo_patches.npz")
    """Output .npz path."""


def main(argv: list[str] | None = None) -> None:
    args = parse_dataclass(Args, argv, prog="photo_patches", description=__doc__,
                           choices={"photo_set": list(PHOTO_SETS)})
    path = write_photo_patches(args.out, args.count, args.seed, args.image_size, args.photo_set)
    print(f"wrote {args.count} patches to {path}")


if __name__ == "__main__":
    main()

"""Natural-photo test images: 32×32 patches cut at random scales from scikit-learn's sample photos.

scikit-learn ships two photos (china.jpg, flower.jpg, 427×640) inside the package, so this needs no
download. Each patch is a random square of side uniform in [32, 213] px (up to half the short side),
downsampled to 32×32 with Pillow's antialiasing LANCZOS filter. Written as an ``.npz`` (key
``images``), which ImageNav's npz image source reads.

    python -m gtmsm_env.photo_patches --count 512 --seed 0 --out data/photo_patches.npz

Needs scikit-learn (in the ``dev`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtmsm_cli.flags import bounded, parse_dataclass


def photo_patches(count: int, seed: int, image_size: int = 32) -> np.ndarray:
    """(count, image_size, image_size, 3) uint8 patches, reproducible from ``seed``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    patches = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for index in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(image_size, min(photo.shape[:2]) // 2 + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        patch = Image.fromarray(photo[top:top + side, left:left + side])
        patches[index] = np.asarray(patch.resize((image_size, image_size), Image.LANCZOS))
    return patches


def write_photo_patches(path: str | Path, count: int, seed: int, image_size: int = 32) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=photo_patches(count, seed, image_size))
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
    out: Path = Path("data/photo_patches.npz")
    """Output .npz path."""


def main(argv: list[str] | None = None) -> None:
    args = parse_dataclass(Args, argv, prog="photo_patches", description=__doc__)
    path = write_photo_patches(args.out, args.count, args.seed, args.image_size)
    print(f"wrote {args.count} patches to {path}")


if __name__ == "__main__":
    main()

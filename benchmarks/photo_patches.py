"""Natural-photo test images: 32×32 patches cut at random scales from scikit-learn's sample photos.

scikit-learn ships two photos (china.jpg, flower.jpg, 427×640) inside the package, so this needs no
download. Each patch is a random square of side uniform in [32, 213] px (up to half the short side),
downsampled to 32×32 with Pillow's antialiasing LANCZOS filter. Written as an ``.npz`` (key
``images``), which ImageNav's npz image source reads.

    python benchmarks/photo_patches.py --count 512 --seed 0 --out data/photo_patches.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=512, help="number of patches (default: 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch positions and scales")
    parser.add_argument("--image-size", type=int, default=32, help="patch side in pixels (default: 32)")
    parser.add_argument("--out", default="data/photo_patches.npz", help="output .npz path")
    args = parser.parse_args()
    path = write_photo_patches(args.out, args.count, args.seed, args.image_size)
    print(f"wrote {args.count} patches to {path}")


if __name__ == "__main__":
    main()

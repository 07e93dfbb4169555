"""Stress images for localisation: procedural scenes with large flat areas beside strong edges.

The default procedural scenes (``procedural.py``) are textured everywhere, so every move changes the
crop. These are the opposite: a uniform background (dark half of the time) with one to three
sharp-edged, textured objects and sometimes a uniform band of a second colour, so that large parts
of the image give identical crops on neighbouring cells — there a free move leaves the view
unchanged, exactly like a move into a wall. Nothing is trained on them; ``benchmarks`` evaluate on them.

    python -m gtmsm_env.flat_scenes --count 256 --seed 0 --out data/flat_scenes.npz
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtmsm_cli.flags import bounded, parse_dataclass


def flat_scenes(count: int, seed: int, image_size: int = 32) -> np.ndarray:
    """(count, image_size, image_size, 3) uint8 scenes, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 31])
    rows, cols = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for index in range(count):
        background = rng.random(3) * (0.15 if rng.random() < 0.5 else 1.0)  # dark half of the time
        image = np.broadcast_to(background, (image_size, image_size, 3)).astype(np.float32).copy()
        if rng.random() < 0.4:  # a uniform band of a second colour (a wall, a table top, the sky)
            horizontal = rng.random() < 0.5
            axis = rows if horizontal else cols
            start = rng.uniform(0.0, 0.7)
            band = (axis >= start) & (axis < start + rng.uniform(0.15, 0.4))
            image[band] = rng.random(3)
        for _ in range(int(rng.integers(1, 4))):
            centre, radius = rng.uniform(0.15, 0.85, 2), rng.uniform(0.08, 0.25, 2)
            if rng.random() < 0.5:
                inside = ((rows - centre[0]) / radius[0]) ** 2 + ((cols - centre[1]) / radius[1]) ** 2 <= 1
            else:
                inside = (np.abs(rows - centre[0]) <= radius[0]) & (np.abs(cols - centre[1]) <= radius[1])
            angle, frequency = rng.uniform(0, 2 * np.pi), rng.uniform(6.0, 14.0)
            wave = np.sin(2 * np.pi * frequency * (rows * np.cos(angle) + cols * np.sin(angle)))
            colour0, colour1 = rng.random(3), rng.random(3)
            mix = (0.5 + 0.5 * wave)[..., None]
            fill = colour0 * (1 - mix) + colour1 * mix + rng.normal(0, 0.04, (image_size, image_size, 3))
            image[inside] = fill[inside]
        images[index] = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return images


def write_flat_scenes(path: str | Path, count: int, seed: int, image_size: int = 32) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=flat_scenes(count, seed, image_size))
    return path


@dataclass
class Args:
    """Options of ``python -m gtmsm_env.flat_scenes``."""

    count: int = bounded(256, ge=1)
    """Number of scenes."""
    seed: int = bounded(0, ge=0)
    """Seed of the scenes."""
    image_size: int = bounded(32, ge=8)
    """Scene side in pixels."""
    out: Path = Path("data/flat_scenes.npz")
    """Output .npz path."""


def main(argv: list[str] | None = None) -> None:
    args = parse_dataclass(Args, argv, prog="flat_scenes", description=__doc__)
    path = write_flat_scenes(args.out, args.count, args.seed, args.image_size)
    print(f"wrote {args.count} scenes to {path}")


if __name__ == "__main__":
    main()

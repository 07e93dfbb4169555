"""The training data path: a folder source is decoded once, however many batches are drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gtmsm_env.images as images
from gtmsm_env.images import procedural_images
from gtmsm_model.data import RolloutSampler
from gtmsm_model.train import make_config, make_sampler


def test_the_sampler_decodes_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index, image in enumerate(procedural_images(12, seed=0, image_size=40)):
        Image.fromarray(image).save(tmp_path / f"{index:02d}.png")
    decoded: list[Path] = []
    original = images._load_image_file

    def counting(path: Path, *args, **kwargs) -> np.ndarray:
        decoded.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(images, "_load_image_file", counting)
    sampler = RolloutSampler(0, image_source=str(tmp_path))
    batches = [sampler.sample(4, 20, key=key) for key in range(5)]
    assert len(decoded) == 12 and len(set(decoded)) == 12
    assert all(batch.observations.shape == (4, 20, 8, 8, 3) for batch in batches)


def test_the_training_sampler_builds_the_configured_world(tmp_path: Path) -> None:
    config = make_config("debug", out_dir=str(tmp_path), image_size=40, step_size=4, start="random")
    batch = make_sampler(config).sample(3, 30, key=0)
    positions = batch.positions.numpy()
    assert positions.max() <= (40 - 8) // 4 and len({tuple(p) for p in positions[:, 0]}) > 1

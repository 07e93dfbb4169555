"""Incremental imagination agrees with GTMSM.predict on the same sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtmsm_env import collect_rollouts
from gtmsm_model.imagination import Imagination
from gtmsm_model.model import GTMSM, GTMSMConfig

TINY = dict(z_dim=6, vae_hidden=24, gate_hidden=8, knn_k=3)


@pytest.mark.parametrize("seed", [0, 1])
def test_step_by_step_imagination_equals_predict_on_the_whole_sequence(seed):
    torch.manual_seed(seed)
    model = GTMSM(GTMSMConfig(**TINY)).eval()
    rollouts = collect_rollouts(1, 60, seed=seed)
    observations, actions = rollouts.observations[0], rollouts.actions[0]
    tau = 40
    expected = model.predict(torch.as_tensor(observations)[None], torch.as_tensor(actions)[None], tau)
    expected_crops = (expected.pixels[0] * 255).round().to(torch.uint8).numpy()

    imagination = Imagination(model, tau)
    for t in range(tau):
        assert imagination.memorising and imagination.memorised == t
        imagination.observe(observations[t], None if t == 0 else int(actions[t]))
    assert not imagination.memorising
    for t in range(tau, len(actions)):
        imagined = imagination.imagine(int(actions[t]))
        np.testing.assert_allclose(imagination.state, expected.states[0, t].numpy(), atol=1e-5)
        # Rounding to uint8 may differ by one level where batched and single-row float math differ.
        diff = np.abs(imagined.crop.astype(int) - expected_crops[t - tau].astype(int))
        assert diff.max() <= 1, f"step {t}: imagined crop differs from predict by {diff.max()}"
        np.testing.assert_allclose(imagined.weights, expected.log_weights[0, t - tau].exp().numpy(), atol=1e-5)
        assert imagined.crop.dtype == np.uint8 and imagined.crop.shape == (8, 8, 3)


def test_misuse_is_reported():
    model = GTMSM(GTMSMConfig(**TINY))
    with pytest.raises(ValueError, match="tau"):
        Imagination(model, 0)
    imagination = Imagination(model, 2)
    crop = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(RuntimeError, match="still memorising"):
        imagination.imagine(1)
    imagination.observe(crop)
    with pytest.raises(ValueError, match="needs its action"):
        imagination.observe(crop)
    imagination.observe(crop, 1)
    with pytest.raises(RuntimeError, match="memorisation has ended"):
        imagination.observe(crop, 1)
    assert imagination.imagine(2).near_memory  # back at step 0's state
    imagination.reset()
    assert imagination.memorised == 0 and imagination.state is None


def test_checkpoint_world_is_the_world_of_the_nested_train_config():
    from gtmsm_env.world import World
    from gtmsm_model.checkpoint import CheckpointError
    from gtmsm_model.config import TrainConfig
    from gtmsm_model.imagination import checkpoint_world, world_text

    trained = World(image_size=(40, 44), crop_size=12, step_size=4, start="random", walls="maze",
                    wall_density=0.1)
    payload = {"train_config": TrainConfig(world=trained).to_dict(), "model_config": {"crop_size": 12}}
    assert checkpoint_world(payload) == trained
    assert world_text(checkpoint_world(payload)) == "40x44 images, 12x12 crops, step 4"
    assert checkpoint_world({"train_config": {}, "model_config": {"crop_size": 6}}) == World(crop_size=6)
    with pytest.raises(CheckpointError, match="says 12x12 crops but its model reads 8x8"):
        checkpoint_world({**payload, "model_config": {"crop_size": 8}})


def test_stopping_memorisation_early_equals_predict_with_that_tau():
    torch.manual_seed(0)
    model = GTMSM(GTMSMConfig(**TINY)).eval()
    rollouts = collect_rollouts(1, 30, seed=0)
    observations, actions = rollouts.observations[0], rollouts.actions[0]
    stop_at = 12
    expected = model.predict(torch.as_tensor(observations)[None], torch.as_tensor(actions)[None], stop_at)

    imagination = Imagination(model, tau=256)
    with pytest.raises(RuntimeError, match="nothing memorised"):
        imagination.stop_memorising()
    for t in range(stop_at):
        imagination.observe(observations[t], None if t == 0 else int(actions[t]))
    assert imagination.memorising and imagination.first_predicted_step == 256
    imagination.stop_memorising()
    assert not imagination.memorising and imagination.first_predicted_step == stop_at
    with pytest.raises(RuntimeError, match="memorisation has ended"):
        imagination.observe(observations[stop_at], int(actions[stop_at]))
    for t in range(stop_at, len(actions)):
        imagined = imagination.imagine(int(actions[t]))
        np.testing.assert_allclose(imagination.state, expected.states[0, t].numpy(), atol=1e-5)
        np.testing.assert_allclose(imagined.weights, expected.log_weights[0, t - stop_at].exp().numpy(), atol=1e-5)
    imagination.reset()  # a new walk memorises the full tau again
    assert imagination.memorising and imagination.tau == 256 and imagination.first_predicted_step == 256
    with pytest.raises(ValueError, match="tau"):
        imagination.tau = 0

"""Long memories: a 4096-entry memory predicts, and training at tau 1024 runs through the chunked prior KL."""

from __future__ import annotations

import numpy as np
import torch

from gtmsm_env.rollouts import collect_rollouts
from gtmsm_env.world import World
from gtmsm_model.model import GTMSM
from gtmsm_model.train import make_config


def tiny_model() -> GTMSM:
    torch.manual_seed(0)
    return GTMSM(make_config("debug").model)


def test_a_memory_of_4096_entries_predicts_every_step() -> None:
    rollouts = collect_rollouts(1, 4096 + 32, seed=1, world=World(image_size=64, step_size=4))
    prediction = tiny_model().predict(torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions), 4096)
    assert prediction.pixels.shape == (1, 32, 8, 8, 3) and torch.isfinite(prediction.pixels).all()


def test_training_at_tau_1024_back_propagates_through_the_chunked_prior() -> None:
    rollouts = collect_rollouts(2, 1024 + 64, seed=2)
    model = tiny_model()
    parts = model.loss(torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions), tau=1024)
    parts["loss"].backward()
    grads = [p.grad for p in model.vae.parameters() if p.grad is not None]
    assert np.isfinite(parts["loss"].item()) and grads and all(torch.isfinite(g).all() for g in grads)

"""Training-time augmentation: random crops for the VAE warm-up and random appearance changes.

Both draw their random numbers from torch's global CPU generator (or from streams keyed on the
step), so a seeded or resumed run draws the same ones on any device.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gtmsm_model.data import RolloutSampler


def random_crops(sampler: RolloutSampler, count: int, key: int, shard: int | None = None) -> torch.Tensor:
    """``count`` crops from short fresh rollouts (one key → one reproducible draw).

    ``shard=None`` is the single-stream draw (its permutation uses torch's RNG); a shard number
    draws from that shard's stream with a permutation keyed on (key, shard) alone.
    """
    sequences = max(1, math.ceil(count / 16))
    observations = sampler.sample(sequences, 16, key=key, shard=shard or 0).observations.flatten(0, 1)
    if shard is None:
        order = torch.randperm(observations.shape[0])
    else:
        order = torch.from_numpy(np.random.default_rng([sampler.seed, key, shard, 2]).permutation(observations.shape[0]))
    return observations[order[:count]]


def augment_pixels(pixels: torch.Tensor, geometric: bool) -> torch.Tensor:
    """A random appearance change per leading index of pixels (N, ..., H, W, C) in [0, 1].

    Each of the N items gets one random channel order, negation (x → 1 − x) with probability 1/2,
    and a contrast factor in [0.6, 1.4] about its own mean plus a brightness shift in [−0.15, 0.15]
    (clipped to [0, 1]); ``geometric`` adds one of the square's 8 symmetries (flips, 90° turns),
    for single crops only (turning a sequence's crops would break the moves). Every step of an item
    gets the same map.
    """
    count, device = pixels.shape[0], pixels.device
    view = (count,) + (1,) * (pixels.dim() - 1)
    if geometric:
        turned = pixels.transpose(-3, -2)
        symmetry = torch.randint(0, 8, (count,)).to(device).view(view)
        pixels = torch.where(symmetry >= 4, turned, pixels)
        pixels = torch.where(symmetry % 2 == 1, pixels.flip(-3), pixels)
        pixels = torch.where((symmetry // 2) % 2 == 1, pixels.flip(-2), pixels)
    order = torch.argsort(torch.rand(count, pixels.shape[-1]), dim=1).to(device)
    pixels = torch.gather(pixels, -1, order.view(view[:-1] + (pixels.shape[-1],)).expand_as(pixels))
    negate = (torch.rand(count) < 0.5).to(device).view(view)
    pixels = torch.where(negate, 1.0 - pixels, pixels)
    contrast = torch.empty(count).uniform_(0.6, 1.4).to(device).view(view)
    brightness = torch.empty(count).uniform_(-0.15, 0.15).to(device).view(view)
    mean = pixels.flatten(1).mean(1).view(view)
    return ((pixels - mean) * contrast + mean + brightness).clamp(0.0, 1.0)

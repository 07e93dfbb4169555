"""GTM-SM's crop codec: the VAE q(z | x), p(x | z) over single observation crops, and the
semi-amortised refinement of the codes written into memory (``CropVAE.infer``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from gtmsm_model.memory import Gaussian

if TYPE_CHECKING:
    from gtmsm_model.model import GTMSMConfig


class CropVAE(nn.Module):
    """Encoder q(z | x) and decoder p(x | z) over single crops.

    MLPs rather than convolutions: an 8×8 crop is only 192 numbers, and at this size a
    two-layer MLP is both sharper and faster on a CPU than the seed's 2-conv VAE.
    """

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        width = config.vae_hidden
        self.encoder = nn.Sequential(
            nn.Linear(config.pixels, width),
            nn.ELU(),
            nn.Linear(width, width),
            nn.ELU(),
            nn.Linear(width, 2 * config.z_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.z_dim, width),
            nn.ELU(),
            nn.Linear(width, width),
            nn.ELU(),
            nn.Linear(width, config.pixels),
        )

    def encode(self, pixels: Tensor) -> Gaussian:
        """pixels (..., H, W, C) in [0, 1] → q(z | x) with tensors (..., z_dim)."""
        flat = pixels.flatten(-3) * 2.0 - 1.0
        mean, log_std = self.encoder(flat).chunk(2, dim=-1)
        return Gaussian(mean, log_std.clamp(-7.0, 2.0))

    def decode(self, z: Tensor) -> Tensor:
        """z (..., z_dim) → mean pixels (..., H, W, C) in [0, 1]."""
        c = self.config
        return torch.sigmoid(self.decoder(z)).unflatten(-1, (c.crop_size, c.crop_size, c.channels))

    def infer(self, pixels: Tensor, chunk: int = 8192) -> Gaussian:
        """q(z | x) for memory: the encoder's Gaussian with its mean refined towards the posterior's
        mode by ``refine_steps`` Adam steps on -log p(x | z) - log p(z) (decoder fixed; each crop on
        its own, so chunking — ``chunk`` crops at a time, to bound memory — changes nothing)."""
        posterior = self.encode(pixels)
        c = self.config
        if c.refine_steps == 0:
            return posterior
        flat_pixels, flat_mean = pixels.reshape(-1, *pixels.shape[-3:]), posterior.mean.reshape(-1, c.z_dim)
        refined = [self._refine(flat_pixels[i:i + chunk], flat_mean[i:i + chunk]) for i in range(0, len(flat_mean), chunk)]
        mean = torch.cat(refined).reshape(posterior.mean.shape) if refined else posterior.mean
        return Gaussian(mean, posterior.log_std)

    def _refine(self, pixels: Tensor, start: Tensor) -> Tensor:
        c = self.config
        # Gradients w.r.t. z only, also when the caller runs under no_grad or inference_mode.
        with torch.inference_mode(False), torch.enable_grad():
            pixels = pixels.clone()
            z = start.detach().clone().requires_grad_(True)
            optimiser = torch.optim.Adam([z], lr=c.refine_lr)
            for _ in range(c.refine_steps):
                # -log p(x | z) - log p(z), up to constants, times 2 sigma^2.
                objective = ((self.decode(z) - pixels).square().sum() + c.pixel_sigma**2 * z.square().sum())
                (z.grad,) = torch.autograd.grad(objective, z)
                optimiser.step()
        return z.detach()

    def log_likelihood(self, pixels: Tensor, decoded: Tensor) -> Tensor:
        """log p(x | z) under the Gaussian pixel model, summed over the crop → (...)."""
        sigma = self.config.pixel_sigma
        sq = (pixels - decoded).square().flatten(-3).sum(-1)
        return -0.5 * sq / sigma**2 - self.config.pixels * math.log(sigma * math.sqrt(2 * math.pi))

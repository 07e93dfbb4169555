"""PlaNet/Dreamer's recurrent state-space model (RSSM) as a peer: no spatial memory, its whole
memory is the GRU state h_t and the stochastic state z_t."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtmsm_env.world import NUM_ACTIONS
from gtmsm_model.baselines.base import CropNet, TrainedModel, mlp, to_pixels


@dataclass
class RSSMConfig:
    """Sizes and loss settings of the RSSM baseline (Dreamer's defaults where they fit 8×8 crops)."""

    num_actions: int = NUM_ACTIONS
    """Number of discrete actions."""
    deter: int = 256
    """Size of the GRU's deterministic state h_t."""
    stoch: int = 32
    """Size of the Gaussian stochastic state z_t."""
    hidden: int = 256
    """Width of the encoder, decoder and prior/posterior MLPs."""
    pixel_sigma: float = 0.05
    """Std of the Gaussian pixel likelihood (GTM-SM's value, so the ELBOs weigh pixels alike)."""
    free_nats: float = 1.0
    """KL below this many nats per step is free (Dreamer)."""
    kl_balance: float = 0.8
    """Share of the KL gradient that trains the prior rather than the posterior (DreamerV2)."""
    open_loop_weight: float = 1.0
    """Weight of the reconstruction of the prediction steps from the prior alone (open loop), so
    the prior is trained on exactly the task it is evaluated on."""
    train_horizon: int = 256
    """Open-loop steps after the memorisation of each training sequence: the whole predicted horizon of
    the evaluation, not the 32 of a 288-step sequence (Memory Maze found Dreamer-style models must be
    trained over the horizon they are asked to remember across)."""
    bptt: int = 64
    """Gradients through the open-loop rollout are cut every this many steps (truncated BPTT)."""
    min_std: float = 0.1
    """Floor of the stochastic state's std."""
    grad_clip: float = 100.0
    """Gradient-norm clip."""


class _RSSMNet(CropNet):
    def __init__(self, config: RSSMConfig, crop_shape: tuple[int, int, int]) -> None:
        super().__init__(config, crop_shape)
        c, pixels = config, self.pixels
        self.encoder = mlp(pixels, c.hidden, c.hidden)
        self.gru_input = nn.Sequential(nn.Linear(c.stoch + c.num_actions, c.hidden), nn.ELU())
        self.gru = nn.GRUCell(c.hidden, c.deter)
        # One hidden layer each, as in PlaNet/Dreamer.
        self.prior_net = nn.Sequential(nn.Linear(c.deter, c.hidden), nn.ELU(), nn.Linear(c.hidden, 2 * c.stoch))
        self.posterior_net = nn.Sequential(
            nn.Linear(c.deter + c.hidden, c.hidden), nn.ELU(), nn.Linear(c.hidden, 2 * c.stoch)
        )
        self.decoder = mlp(c.deter + c.stoch, c.hidden, pixels)

    def gaussian(self, stats: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_std = stats.chunk(2, -1)
        return mean, F.softplus(raw_std) + self.config.min_std

    def step(self, h: Tensor, z: Tensor, action: Tensor) -> Tensor:
        one_hot = F.one_hot(action, self.config.num_actions).float()
        return self.gru(self.gru_input(torch.cat([z, one_hot], -1)), h)

    def decode(self, h: Tensor, z: Tensor) -> Tensor:
        return self.to_crops(self.decoder(torch.cat([h, z], -1)))


def _kl(mean_q: Tensor, std_q: Tensor, mean_p: Tensor, std_p: Tensor) -> Tensor:
    return (
        torch.log(std_p / std_q) + (std_q.square() + (mean_q - mean_p).square()) / (2 * std_p.square()) - 0.5
    ).sum(-1)


class RSSM(TrainedModel):
    """Recurrent state-space model (Hafner et al.'s PlaNet/Dreamer), action-conditioned.

    h_t = GRU(h_{t-1}, [z_{t-1}, a_t]); prior p(z_t | h_t); posterior q(z_t | h_t, e_t) with e_t an
    MLP embedding of x_t; decoder p(x_t | h_t, z_t). Training: the ELBO over every step with the
    posterior (KL balancing and free nats), plus the prediction steps' reconstruction decoded from
    an open-loop prior rollout started at tau. Prediction: posterior on t < tau, prior means after.
    """

    name = "RSSM"

    config_class = RSSMConfig

    def build(self, crop_shape) -> nn.Module:
        return _RSSMNet(self.config, crop_shape)

    def _filter(self, net: _RSSMNet, pixels: Tensor, actions: Tensor, sample: bool):
        """Posterior pass: h (B, T, deter), z (B, T, stoch), prior and posterior (mean, std)."""
        batch, steps = pixels.shape[:2]
        embed = net.encoder(net.flat_input(pixels))
        h = pixels.new_zeros(batch, self.config.deter)
        z = pixels.new_zeros(batch, self.config.stoch)
        hs, zs, means, stds = [], [], [], []
        for t in range(steps):
            h = net.step(h, z, actions[:, t])
            mean, std = net.gaussian(net.posterior_net(torch.cat([h, embed[:, t]], -1)))
            z = mean + std * torch.randn_like(mean) if sample else mean
            hs.append(h)
            zs.append(z)
            means.append(mean)
            stds.append(std)
        h = torch.stack(hs, 1)
        # The prior depends on h alone, so it runs once over all steps, outside the loop.
        prior = net.gaussian(net.prior_net(h))
        return h, torch.stack(zs, 1), prior, (torch.stack(means, 1), torch.stack(stds, 1))

    def _imagine(self, net: _RSSMNet, h: Tensor, z: Tensor, actions: Tensor, sample: bool, bptt: int = 0):
        hs, zs = [], []
        for t in range(actions.shape[1]):
            if bptt and t and t % bptt == 0:  # truncated BPTT: no gradient further back than bptt steps
                h, z = h.detach(), z.detach()
            h = net.step(h, z, actions[:, t])
            mean, std = net.gaussian(net.prior_net(h))
            z = mean + std * torch.randn_like(mean) if sample else mean
            hs.append(h)
            zs.append(z)
        return torch.stack(hs, 1), torch.stack(zs, 1)

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        c, net = self.config, self.net
        h, z, (prior_m, prior_s), (post_m, post_s) = self._filter(net, pixels, actions, sample=True)
        sq = (net.decode(h, z) - pixels).square().flatten(-3).sum(-1)  # (B, T)
        nll = 0.5 * sq / c.pixel_sigma**2
        # KL balancing: the prior moves towards the posterior faster than the reverse.
        kl_prior = _kl(post_m.detach(), post_s.detach(), prior_m, prior_s)
        kl_post = _kl(post_m, post_s, prior_m.detach(), prior_s.detach())
        kl = c.kl_balance * kl_prior.clamp(min=c.free_nats) + (1 - c.kl_balance) * kl_post.clamp(
            min=c.free_nats
        )
        loss = (nll + kl).mean()
        if c.open_loop_weight > 0 and tau < pixels.shape[1]:
            h_open, z_open = self._imagine(net, h[:, tau - 1], z[:, tau - 1], actions[:, tau:], sample=True,
                                           bptt=c.bptt)
            sq_open = (net.decode(h_open, z_open) - pixels[:, tau:]).square().flatten(-3).sum(-1)
            loss = loss + c.open_loop_weight * (0.5 * sq_open / c.pixel_sigma**2).mean()
        return loss / math.prod(pixels.shape[2:])  # per pixel, so one clip norm fits every crop size

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised, actions = self.prediction_inputs(observations, actions, tau)
        h, z, _, _ = self._filter(self.net, to_pixels(memorised, self.device), actions[:, :tau], sample=False)
        h, z = self._imagine(self.net, h[:, -1], z[:, -1], actions[:, tau:], sample=False)
        return self.net.decode(h, z).cpu().numpy().astype(np.float32)



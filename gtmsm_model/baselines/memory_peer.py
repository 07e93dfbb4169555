"""What the two generic memory peers (``retrieval_transformer``, ``pose_retrieval``) share: the bit they are
given, their place signal, and their training and prediction (``MemoryPeer``).

The bit: one per memorised step, "did the view change?" ("unknown" where no view was seen: the reset and
every predicted step). A learned integrator over (action, bit) can express a blocked move (the bit says
the window did not slide), which a per-action count of moves cannot. The bit is a fixed function of the
memorised crops, not privileged information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gtmsm_env.world import NUM_ACTIONS
from gtmsm_model.baselines.base import TrainedModel, to_pixels, withheld_and_future, withheld_steps
from gtmsm_model.memory import crop_change

UNCHANGED, CHANGED, UNKNOWN = 0, 1, 2
BIT_VALUES = 3
SAME = 1e-7
"""Two consecutive crops whose mean squared difference is at most this count as the same view."""


def view_change_bits(memorised: Tensor, steps: int) -> Tensor:
    """memorised (B, tau, H, W, C) pixels in [0, 1] → (B, steps) long: CHANGED / UNCHANGED for memorised
    steps 1..tau-1, UNKNOWN for step 0 and for steps tau..steps-1. Training's withheld memorised crops
    keep their bits: they say where the walk went, which is what the peer must learn (that an unchanged
    bit also says a withheld crop equals its neighbour is a shortcut of training only: no predicted
    step has a bit)."""
    batch, tau = memorised.shape[:2]
    bits = torch.full((batch, steps), UNKNOWN, dtype=torch.long, device=memorised.device)
    if tau > 1:
        bits[:, 1:tau] = (crop_change(memorised)[:, 1:] > SAME).long()
    return bits


def step_features(actions: Tensor, bits: Tensor, num_actions: int) -> Tensor:
    """(B, T) actions and bits → (B, T, num_actions + BIT_VALUES) one-hot features."""
    return torch.cat([F.one_hot(actions, num_actions).float(), F.one_hot(bits, BIT_VALUES).float()], -1)


class Integrator(torch.nn.Module):
    """A learned place signal per step from (action, view-change bit): the running sum of a learned vector
    per (action, bit) pair — a linear integrator, which can learn that a move whose view did not change
    went nowhere — plus a GRU over the same features for what a sum cannot say (walls ahead on the
    predicted steps, where the bit is unknown). Returns (B, T, size)."""

    def __init__(self, num_actions: int, size: int, hidden: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.step = torch.nn.Embedding(num_actions * BIT_VALUES, size)
        torch.nn.init.normal_(self.step.weight, std=0.5)
        self.gru = torch.nn.GRU(num_actions + BIT_VALUES, hidden, batch_first=True)
        self.correction = torch.nn.Linear(hidden, size)

    def forward(self, actions: Tensor, bits: Tensor) -> Tensor:
        summed = self.step(actions * BIT_VALUES + bits).cumsum(1)
        recurrent, _ = self.gru(step_features(actions, bits, self.num_actions))
        return summed + self.correction(recurrent)


@dataclass
class MemoryPeerConfig:
    """What ``MemoryPeer``'s training and prediction read; each peer's config adds its sizes."""

    num_actions: int = NUM_ACTIONS
    """Number of discrete actions."""
    min_tau: int = 16
    """Smallest memorisation length drawn for a training batch."""
    train_horizon: int = 256
    """Training sequences are the budget's tau memorised steps plus this many more (the evaluation's
    horizon), the memorisation split drawn anywhere in them."""
    hide_share: float = 0.25
    """Share of a training batch's memorised steps whose crops are withheld, recalled from the rest and
    predicted (the memorisation phase's own revisits: many and near)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    eval_chunk: int = 8
    """Sequences per forward pass at prediction time."""


class MemoryPeer(TrainedModel):
    """Training and prediction of a memory peer whose network maps (memorised crops, actions, withheld
    memorised steps) to the withheld crops and the future ones.

    Training: MSE of the predicted crops — the future after a random memorisation split in
    ``[min_tau, T)`` (short and long memories in one run) and a ``hide_share`` of the memorised crops,
    withheld and predicted from the rest: the memorisation phase's own revisits are many and near, the
    easy lessons in where-am-I that the far predicted steps alone teach slowly (GTM-SM's memory loss on
    the memorisation phase is the same idea). Prediction: every future crop in one pass, in chunks of
    ``eval_chunk`` sequences."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._rng = np.random.default_rng(0)

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        steps = pixels.shape[1]
        low = min(self.config.min_tau, steps - 1)
        split = int(self._rng.integers(low, steps)) if steps - 1 > low else low
        hidden = withheld_steps(pixels.shape[0], split, self.config.hide_share, pixels.device)
        target = withheld_and_future(pixels, split, hidden)
        return (self.net(pixels[:, :split], actions, hidden) - target).square().mean()

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised, actions = self.prediction_inputs(observations, actions, tau)
        parts = []
        for start in range(0, len(actions), self.config.eval_chunk):
            end = start + self.config.eval_chunk
            parts.append(self.net(to_pixels(memorised[start:end], self.device), actions[start:end]).cpu())
        return torch.cat(parts).numpy().astype(np.float32)

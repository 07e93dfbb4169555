"""What a generic memory peer is given besides the crops and the actions: one bit per memorised step,
"did the view change?" (and "unknown" where no view was seen: the reset and every predicted step).

A learned integrator over (action, bit) can express a blocked move (the bit says the window did not
slide), which a per-action count of moves cannot. The bit is a fixed function of the memorised
crops, not privileged information.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

UNCHANGED, CHANGED, UNKNOWN = 0, 1, 2
BIT_VALUES = 3
SAME = 1e-7
"""Two consecutive crops whose mean squared difference is at most this count as the same view."""


def view_change_bits(memorised: Tensor, steps: int) -> Tensor:
    """memorised (B, tau, H, W, C) pixels in [0, 1] → (B, steps) long: CHANGED / UNCHANGED for memorised
    steps 1..tau-1, UNKNOWN for step 0 and for steps tau..steps-1."""
    batch, tau = memorised.shape[:2]
    bits = torch.full((batch, steps), UNKNOWN, dtype=torch.long, device=memorised.device)
    if tau > 1:
        change = (memorised[:, 1:] - memorised[:, :-1]).square().flatten(2).mean(-1)
        bits[:, 1:tau] = (change > SAME).long()
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

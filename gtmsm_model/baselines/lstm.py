"""An action-conditioned LSTM as a peer: encoder → LSTM → decoder, fed its own predictions
after the memorisation phase."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtmsm_env.world import NUM_ACTIONS
from gtmsm_model.baselines.base import Budget, CropNet, TrainedModel, mlp, to_pixels
from gtmsm_model.data import RolloutSampler


@dataclass
class ActionLSTMConfig:
    """Sizes of the action-conditioned LSTM baseline."""

    num_actions: int = NUM_ACTIONS
    """Number of discrete actions."""
    hidden: int = 256
    """LSTM state size and encoder/decoder width."""
    embed: int = 256
    """Size of the crop embedding fed to the LSTM."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    train_horizon: int = 256
    """Free-running steps after the memorisation of each training sequence: the whole predicted horizon
    of the evaluation (a 288-step sequence has 32)."""
    bptt: int = 64
    """Gradients through the free-running steps are cut every this many steps (truncated BPTT)."""
    teacher_weight: float = 0.1
    """Weight of the teacher-forced one-step loss of the memorisation steps beside the free-running loss
    (equal weights made the loss 89 % one-step prediction, the task it is not evaluated on)."""


class _ActionLSTMNet(CropNet):
    def __init__(self, config: ActionLSTMConfig, crop_shape: tuple[int, int, int]) -> None:
        super().__init__(config, crop_shape)
        pixels = self.pixels
        self.encoder = mlp(pixels, config.hidden, config.embed)
        self.lstm = nn.LSTM(config.embed + config.num_actions, config.hidden, batch_first=True)
        self.decoder = mlp(config.hidden, config.hidden, pixels)

    def inputs(self, pixels: Tensor, actions: Tensor) -> Tensor:
        one_hot = F.one_hot(actions, self.config.num_actions).float()
        return torch.cat([self.encoder(self.flat_input(pixels)), one_hot], -1)

    def decode(self, out: Tensor) -> Tensor:
        return self.to_crops(self.decoder(out))

    def run(self, pixels: Tensor, actions: Tensor, tau: int, bptt: int = 0) -> Tensor:
        """Predictions of steps 1..T-1: teacher-forced from observed x_{t-1} for t < tau, then
        fed back its own prediction x̂_{t-1} (the input of step tau is still the observed x_{tau-1});
        ``bptt``: gradients through the free-running steps cut every this many steps."""
        out, state = self.lstm(self.inputs(pixels[:, : tau - 1], actions[:, 1:tau]))
        predictions = [self.decode(out)]
        previous = pixels[:, tau - 1]
        for t in range(tau, actions.shape[1]):
            if bptt and t > tau and (t - tau) % bptt == 0:
                state, previous = tuple(s.detach() for s in state), previous.detach()
            out, state = self.lstm(self.inputs(previous, actions[:, t]).unsqueeze(1), state)
            previous = self.decode(out[:, 0])
            predictions.append(previous.unsqueeze(1))
        return torch.cat(predictions, 1)


class ActionLSTM(TrainedModel):
    """encoder → LSTM over [embedding of x_{t-1}, one-hot a_t] → decoder → x̂_t.

    Training matches prediction: teacher forcing on the memorisation steps, then free-running (fed its
    own predictions, gradients through them, truncated every ``bptt`` steps) over ``train_horizon``
    steps — the evaluation's whole horizon; the loss is the free-running MSE plus ``teacher_weight``
    times the teacher-forced one.
    """

    name = "action LSTM"

    config_class = ActionLSTMConfig

    def build(self, crop_shape) -> nn.Module:
        return _ActionLSTMNet(self.config, crop_shape)

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        if budget.tau < 2:
            raise ValueError(f"the LSTM needs tau >= 2 (one observed transition), got budget.tau={budget.tau}")
        super().fit(sampler, budget)

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        error = (self.net.run(pixels, actions, tau, self.config.bptt) - pixels[:, 1:]).square()
        return error[:, tau - 1:].mean() + self.config.teacher_weight * error[:, :tau - 1].mean()

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised, actions = self.prediction_inputs(observations, actions, tau)
        if tau < 2:
            raise ValueError("the LSTM needs tau >= 2 (one observed transition)")
        predicted = self.net.run(to_pixels(memorised, self.device), actions, tau)
        return predicted[:, tau - 1 :].cpu().numpy().astype(np.float32)



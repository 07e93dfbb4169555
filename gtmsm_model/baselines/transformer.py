"""A transformer world model as a peer: attention over the whole episode, every future crop in
one pass.

Design (and why):

* **One token per step, one pass, no compounding.** Memorisation step t is the token
  ``embed(x_t) + embed(a_t) + counts_t``; prediction step t is ``mask + embed(a_t) + counts_t``
  with one learned mask vector in place of the crop. A bidirectional encoder reads all tokens
  and a decoder maps each prediction token to its crop. This is the masked-prediction design
  (MaskGIT/BERT-style world models) rather than an autoregressive one: an autoregressive
  decoder would feed its own blurry predictions back for 256–768 steps (the LSTM's failure
  mode), and would cost one forward pass per predicted step on 2 cores. Prediction tokens see
  only actions and memorised crops, so nothing from the future leaks.
* **Where am I: action counts, not a learned time embedding.** The answer for step t is in the
  memorised crop taken at the same place, and the place is a function of all actions so far.
  Attention can learn prefix sums, but not within a few minutes of 2-core training, so every
  token carries ``counts_t`` = a linear map of the running count of each action (a prefix sum
  of the one-hot actions, divided by ``count_scale``). It is no privileged information (a fixed
  function of the actions the model is given), it says nothing about which action moves where
  or where the walls are (the model must learn that a blocked move does not count), and unlike
  a learned position embedding it is defined for any episode length (the long-horizon
  condition runs 1024 steps; training sequences have 288).
* **A split that moves.** Each training batch splits its 288 steps at a random ``tau`` in
  ``[min_tau, seq_len - 1]``, so the model learns short and long memories and every query
  distance in one run (the ``short memory`` condition has tau = 64).
* **Sized for 2 CPU cores**: d 96, 3 layers, 4 heads, feed-forward 192, pre-norm; ≈ 0.45 M
  parameters; one training step (16 × 288 tokens) takes about 0.1 s on one thread. Full
  attention over 1024 tokens is still cheap at evaluation (8 sequences per chunk).

Loss: mean squared error of the predicted crops (the benchmark's metric; the prediction is the
mean, as for the other deterministic peers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtmsm_env.world import NUM_ACTIONS
from gtmsm_model.baselines.base import CropNet, TrainedModel, mlp, to_pixels


@dataclass
class TransformerConfig:
    """Sizes of the transformer world model."""

    num_actions: int = NUM_ACTIONS
    """Number of discrete actions."""
    d_model: int = 96
    """Token width."""
    layers: int = 3
    """Encoder layers."""
    heads: int = 4
    """Attention heads."""
    feedforward: int = 192
    """Width of each layer's feed-forward block."""
    hidden: int = 192
    """Width of the crop encoder and decoder MLPs."""
    count_scale: float = 32.0
    """Running action counts are divided by this before their linear embedding."""
    min_tau: int = 16
    """Smallest memorisation length drawn for a training batch."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    eval_chunk: int = 8
    """Sequences per forward pass at prediction time (attention memory grows with T²)."""


class _TransformerNet(CropNet):
    def __init__(self, config: TransformerConfig, crop_shape: tuple[int, int, int]) -> None:
        super().__init__(config, crop_shape)
        c, pixels = config, self.pixels
        self.crop_embed = mlp(pixels, c.hidden, c.d_model)
        self.action_embed = nn.Embedding(c.num_actions, c.d_model)
        self.count_embed = nn.Linear(c.num_actions, c.d_model)
        self.mask = nn.Parameter(torch.zeros(c.d_model))
        layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.feedforward, dropout=0.0,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.decoder = mlp(c.d_model, c.hidden, pixels)

    def forward(self, memorised: Tensor, actions: Tensor) -> Tensor:
        """memorised (B, tau, H, W, C) pixels; actions (B, T) → predicted pixels (B, T - tau, H, W, C)."""
        batch, tau = memorised.shape[:2]
        steps = actions.shape[1]
        one_hot = F.one_hot(actions, self.config.num_actions).float()
        tokens = self.action_embed(actions) + self.count_embed(one_hot.cumsum(1) / self.config.count_scale)
        content = torch.cat([self.crop_embed(self.flat_input(memorised)),
                             self.mask.expand(batch, steps - tau, -1)], 1)
        out = self.norm(self.encoder(tokens + content))[:, tau:]
        return self.to_crops(self.decoder(out))


class TransformerWorldModel(TrainedModel):
    """Masked-token transformer over the whole episode (see the module docstring for the design)."""

    name = "transformer"

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig | None = None) -> None:
        super().__init__(config)
        self._rng = np.random.default_rng(0)

    def build(self, crop_shape) -> nn.Module:
        return _TransformerNet(self.config, crop_shape)

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        steps = pixels.shape[1]
        low = min(self.config.min_tau, steps - 1)
        split = int(self._rng.integers(low, steps)) if steps - 1 > low else low
        predicted = self.net(pixels[:, :split], actions)
        return (predicted - pixels[:, split:]).square().mean()

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised, actions = self.prediction_inputs(observations, actions, tau)
        parts = []
        for start in range(0, len(actions), self.config.eval_chunk):
            end = start + self.config.eval_chunk
            parts.append(self.net(to_pixels(memorised[start:end], self.device), actions[start:end]).cpu())
        return torch.cat(parts).numpy().astype(np.float32)

"""A pose-retrieval peer in the spirit of WorldMem / Context-as-Memory: a learned state per step,
memory retrieved by that state, an attention decoder over what was retrieved.

Design (and why):

* **A learned pose per step** (``memory_peer.Integrator``): the running sum of a learned vector per
  (action, "did the view change" bit) pair gives every step a pose vector p_t (``pose`` numbers); a
  predicted step (no bit) keeps its move unless it leaves the memory's extent that way. Nothing tells it the
  grid: the vectors are learned from the prediction loss and the place loss (``memory_peer.place_loss``:
  identical memorised crops were at one place, different ones were not).
* **Retrieval by pose.** A predicted step retrieves the ``neighbours`` memorised steps whose poses
  are nearest its own, weighted by softmax(−β‖p_t − p_k‖²) with β learned — the copy of their raw crops
  is the answer for a revisited place.
* **An attention decoder** for what the copy cannot give (a place between memories): the query pose
  attends over the retrieved steps, each a token of its crop embedding and the pose difference
  p_k − p_t, and an MLP draws a crop; a learned gate mixes it with the copy.
* Trained like the retrieval transformer: a random memorisation split per batch and a quarter of the
  memorised crops withheld and predicted from the rest, MSE on the predicted crops.

It is given the crops, the actions and nothing else (no grid, no positions, no pixel shifts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gtmsm_model.baselines.base import CropNet, mlp
from gtmsm_model.baselines.memory_peer import (
    LOG_SHARPNESS,
    Integrator,
    MemoryPeer,
    MemoryPeerConfig,
    view_change_bits,
)


@dataclass
class PoseRetrievalConfig(MemoryPeerConfig):
    """Sizes of the pose-retrieval peer."""

    pose: int = 8
    """Size of the learned pose p_t."""
    neighbours: int = 8
    """Memorised steps retrieved per predicted step."""
    d_model: int = 64
    """Width of the decoder's tokens."""
    heads: int = 4
    """Attention heads of the decoder."""
    hidden: int = 192
    """Width of the crop encoder and decoder MLPs."""
    eval_chunk: int = 16
    """Sequences per forward pass at prediction time."""


class _PoseNet(CropNet):
    def __init__(self, config: PoseRetrievalConfig, crop_shape: tuple[int, int, int]) -> None:
        super().__init__(config, crop_shape)
        c, pixels = config, self.pixels
        self.integrator = Integrator(c.num_actions, c.pose)
        self.log_beta = nn.Parameter(torch.tensor(LOG_SHARPNESS))
        self.crop_embed = mlp(pixels, c.hidden, c.d_model)
        self.offset_embed = nn.Linear(c.pose, c.d_model)
        self.query_embed = nn.Linear(c.pose, c.d_model)
        self.attention = nn.MultiheadAttention(c.d_model, c.heads, batch_first=True)
        self.decoder = mlp(c.d_model, c.hidden, pixels)
        self.gate = nn.Linear(c.d_model, 1)

    def forward(self, memorised: Tensor, actions: Tensor, hidden: Tensor | None = None) -> Tensor:
        """memorised (B, tau, H, W, C) pixels; actions (B, T) → predicted pixels (B, T - tau, H, W, C).
        ``hidden`` (B, tau) bool: memorised steps whose crop is withheld (training); their crops are
        predicted too, in front of the future ones."""
        batch, tau = memorised.shape[:2]
        steps = actions.shape[1]
        poses = self.integrator(actions, view_change_bits(memorised, steps), tau)  # (B, T, pose)
        queries, keys = poses[:, tau:], poses[:, :tau]
        if hidden is not None:
            queries = torch.cat([keys[hidden].view(batch, -1, keys.shape[-1]), queries], 1)
        distance = (queries.unsqueeze(2) - keys.unsqueeze(1)).square().sum(-1)  # (B, N, tau)
        if hidden is not None:  # a withheld crop cannot be retrieved
            distance = distance.masked_fill(hidden.unsqueeze(1), float("inf"))
        k = min(self.config.neighbours, tau if hidden is None else int((~hidden[0]).sum()))  # never a withheld one
        nearest, index = distance.topk(k, dim=-1, largest=False)  # (B, N, k)
        weights = torch.softmax(-self.log_beta.exp() * nearest, -1)
        flat = memorised.flatten(2)  # (B, tau, pixels)
        picked = torch.gather(flat.unsqueeze(1).expand(-1, queries.shape[1], -1, -1), 2,
                              index.unsqueeze(-1).expand(-1, -1, -1, flat.shape[-1]))  # (B, N, k, pixels)
        copy = (weights.unsqueeze(-1) * picked).sum(2)
        offsets = torch.gather(keys.unsqueeze(1).expand(-1, queries.shape[1], -1, -1), 2,
                               index.unsqueeze(-1).expand(-1, -1, -1, keys.shape[-1])) - queries.unsqueeze(2)
        tokens = self.crop_embed(picked * 2.0 - 1.0) + self.offset_embed(offsets)  # (B, N, k, d)
        query = self.query_embed(queries).reshape(-1, 1, tokens.shape[-1])
        pooled, _ = self.attention(query, tokens.flatten(0, 1), tokens.flatten(0, 1))
        pooled = pooled.reshape(batch, -1, tokens.shape[-1])
        gate = torch.sigmoid(self.gate(pooled))
        drawn = torch.sigmoid(self.decoder(pooled))
        return (gate * copy + (1 - gate) * drawn).unflatten(-1, self.crop_shape)


class PoseRetrieval(MemoryPeer):
    """A learned pose per step, memory retrieved by pose, an attention decoder (see the module docstring)."""

    name = "pose retrieval"

    config_class = PoseRetrievalConfig

    def build(self, crop_shape) -> nn.Module:
        return _PoseNet(self.config, crop_shape)

"""The one interface every model in the comparison answers, the training budget, and the shared
training loop of the learned peers.

Every model answers the benchmark's one question (docs/results.md) the same way: given the
memorisation phase (the first ``tau`` observations) and all actions, predict the crops of steps
``tau..T-1``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from gtmsm_model.data import RolloutSampler


@dataclass
class Budget:
    """What every learned model may spend on training: the same batches, a step and a time cap."""

    iterations: int = 2000
    """Gradient steps (one batch each), counted over every ``fit`` call of a model."""
    batch_size: int = 16
    """Sequences per batch."""
    seq_len: int = 288
    """Steps per training sequence."""
    tau: int = 256
    """Memorisation steps of a training sequence; the rest are predicted."""
    lr: float = 3e-4
    """Adam learning rate."""
    device: str = "cpu"
    """Torch device for training and prediction."""
    seed: int = 0
    """Seeds the parameters (the sampler carries its own seed)."""
    max_seconds: float | None = None
    """Stop training once the model's total training time passes this many CPU seconds of its process
    (None: no cap). CPU seconds, not wall-clock: another job on the machine does not shrink a budget."""
    snapshot_seconds: list[float] = field(default_factory=list)
    """Keep a copy of the weights when the training CPU time first passes each of these
    (``use_snapshot(seconds)`` restores it), so one run gives several budgets."""
    first_key: int = 0
    """Iteration i trains on ``sampler.sample(..., key=first_key + i)``: pass GTM-SM's first
    main-phase key to train on the same sequences."""

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.batch_size < 1 or self.seq_len < 2:
            raise ValueError("iterations must be >= 0, batch_size >= 1 and seq_len >= 2")
        if not 1 <= self.tau < self.seq_len:
            raise ValueError(f"tau must lie in [1, seq_len={self.seq_len}), got {self.tau}")


@runtime_checkable
class WorldModel(Protocol):
    """What the benchmark needs from a model (see the README's "Add your model")."""

    name: str
    uses_true_positions: bool
    """Oracles read the privileged true positions; the benchmark table says so."""

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        """Train on ``sampler``'s batches within ``budget`` (a no-op for fixed models)."""

    def predict(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        tau: int,
        positions: np.ndarray | None = None,
    ) -> np.ndarray:
        """observations (B, >=tau, H, W, C) uint8 (only the first tau are read); actions (B, T);
        positions (B, T, 2), read by oracles only. Returns (B, T - tau, H, W, C) float32 in [0, 1]."""


def check_prediction_inputs(
    observations: np.ndarray,
    actions: np.ndarray,
    tau: int,
    positions: np.ndarray | None = None,
    *,
    needs_positions: bool = False,
) -> np.ndarray:
    """Validate ``predict``'s arguments; return the memorisation-phase observations only."""
    observations = np.asarray(observations)
    actions = np.asarray(actions)
    if observations.ndim != 5:
        raise ValueError(
            f"observations must have shape (batch, time, H, W, C), got {observations.shape}"
        )
    if observations.dtype != np.uint8:
        raise TypeError(f"observations must be uint8 as the env emits them, got {observations.dtype}")
    if actions.ndim != 2 or actions.shape[0] != observations.shape[0]:
        raise ValueError(
            f"actions must have shape (batch, T) = ({observations.shape[0]}, T), got {actions.shape}"
        )
    if actions.dtype.kind not in "iu":
        raise TypeError(f"actions must be integers, got {actions.dtype}")
    if not 1 <= tau < actions.shape[1]:
        raise ValueError(f"tau must lie in [1, T={actions.shape[1]}), got {tau}")
    if observations.shape[1] < tau:
        raise ValueError(f"need at least tau={tau} observations, got {observations.shape[1]}")
    if needs_positions:
        if positions is None:
            raise ValueError("this oracle reads the true positions; pass positions (B, T, 2)")
        positions = np.asarray(positions)
        if positions.shape != (*actions.shape, 2):
            raise ValueError(
                f"positions must have shape (batch, T, 2) = {(*actions.shape, 2)}, got {positions.shape}"
            )
    return observations[:, :tau]


def to_pixels(observations: np.ndarray | Tensor, device: str | torch.device = "cpu") -> Tensor:
    """uint8 crops → float pixels in [0, 1] on ``device``."""
    return torch.as_tensor(np.asarray(observations), device=device).float() / 255.0


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two ELU hidden layers: the encoders and decoders of the learned peers."""
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, outputs)
    )


class CropNet(nn.Module):
    """Base of the learned peers' networks: crops go in flattened and scaled to [-1, 1]
    (``flat_input``) and come out through a sigmoid, reshaped to ``crop_shape`` (``to_crops``)."""

    def __init__(self, config: Any, crop_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.crop_shape = crop_shape
        self.pixels = math.prod(crop_shape)  # values per flattened crop

    @staticmethod
    def flat_input(pixels: Tensor) -> Tensor:
        """(..., H, W, C) pixels in [0, 1] → (..., H * W * C) in [-1, 1]."""
        return pixels.flatten(-3) * 2.0 - 1.0

    def to_crops(self, logits: Tensor) -> Tensor:
        """(..., H * W * C) decoder outputs → (..., H, W, C) pixels in (0, 1)."""
        return torch.sigmoid(logits).unflatten(-1, self.crop_shape)


class TrainedModel:
    """Shared training loop of the learned peers: Adam, gradient clipping, a step budget, a
    wall-clock cap and weight snapshots at given wall-clock times.

    A second ``fit`` call continues the same run (same optimiser, next data keys), so a model
    trained to 1× a budget and then to 4× is one run, not two.

    A subclass names its sizes' dataclass in ``config_class``; ``config`` (default: that class's
    defaults) becomes ``self.config``, and its ``num_actions`` and ``grad_clip`` drive the loop.
    """

    name = "trained"
    uses_true_positions = False
    grad_clip = 100.0
    num_actions = 5
    config_class: type | None = None

    def __init__(self, config: Any = None) -> None:
        if config is None and self.config_class is not None:
            config = self.config_class()
        self.config = config
        if config is not None:
            self.num_actions = config.num_actions
            self.grad_clip = config.grad_clip
        self.net: nn.Module | None = None
        self.optimiser: torch.optim.Optimizer | None = None
        self.device = torch.device("cpu")
        self.iterations_done = 0
        self.train_seconds = 0.0
        self.history: list[float] = []
        self.snapshots: dict[float, dict[str, Any]] = {}

    def build(self, crop_shape: tuple[int, int, int]) -> nn.Module:
        raise NotImplementedError

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        raise NotImplementedError

    def prediction_inputs(self, observations: np.ndarray, actions: np.ndarray, tau: int) -> tuple[np.ndarray, Tensor]:
        """``predict``'s checked arguments: the memorisation-phase observations and the actions
        as a long tensor on the model's device (raises before ``fit``)."""
        memorised = check_prediction_inputs(observations, actions, tau)
        if self.net is None:
            raise RuntimeError("call fit() before predict()")
        return memorised, torch.as_tensor(np.asarray(actions), device=self.device).long()

    def _snapshot(self) -> dict[str, Any]:
        return {"state": copy.deepcopy(self.net.state_dict()), "iterations": self.iterations_done,
                "seconds": self.train_seconds}

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        self.device = torch.device(budget.device)
        if self.net is None:
            torch.manual_seed(budget.seed)
            first = sampler.sample(budget.batch_size, budget.seq_len, key=budget.first_key)
            self.net = self.build(tuple(first.observations.shape[2:])).to(self.device)
            self.optimiser = torch.optim.Adam(self.net.parameters(), lr=budget.lr)
        pending = sorted(s for s in budget.snapshot_seconds if s not in self.snapshots)
        self.net.train()
        start, seconds_before = time.process_time(), self.train_seconds  # CPU seconds of this process
        # A model trained over a longer horizon than the budget's sequences (a config's train_horizon) draws
        # longer sequences with the same keys (other walks than GTM-SM's, from the same distribution):
        # tau memorised steps, then that many predicted.
        horizon = getattr(self.config, "train_horizon", None)
        length = budget.tau + horizon if horizon else budget.seq_len
        while self.iterations_done < budget.iterations:
            if budget.max_seconds is not None and self.train_seconds >= budget.max_seconds:
                break
            batch = sampler.sample(budget.batch_size, length, key=budget.first_key + self.iterations_done)
            pixels = to_pixels(batch.observations, self.device)
            loss = self.loss(pixels, batch.actions.to(self.device), budget.tau)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
            self.optimiser.step()
            self.history.append(float(loss.detach()))
            self.iterations_done += 1
            self.train_seconds = seconds_before + time.process_time() - start
            while pending and self.train_seconds >= pending[0]:
                self.snapshots[pending.pop(0)] = self._snapshot()
        for seconds in pending:  # the budget ended first: the final weights stand for these
            self.snapshots[seconds] = self._snapshot()
        self.net.eval()

    def use_snapshot(self, seconds: float) -> dict[str, Any]:
        """Load the weights kept at ``seconds`` of training; returns the snapshot (iterations, seconds)."""
        snapshot = self.snapshots[seconds]
        self.net.load_state_dict(snapshot["state"])
        self.net.eval()
        return snapshot

    def latest(self) -> dict[str, Any]:
        """A snapshot of the current weights (to come back to after ``use_snapshot``)."""
        return self._snapshot()

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.net.load_state_dict(snapshot["state"])
        self.net.eval()


def withheld_steps(batch: int, split: int, share: float, device: torch.device | str) -> Tensor | None:
    """A random ``share`` of memorised steps 1..split-1 per sequence, the same count in each (B, split) bool,
    whose crops a memory peer's training withholds and predicts (None if none)."""
    count = int(share * (split - 1))
    if count == 0:
        return None
    picks = torch.rand(batch, split - 1, device=device).argsort(1)[:, :count] + 1
    return torch.zeros(batch, split, dtype=torch.bool, device=device).scatter_(1, picks, True)


def withheld_and_future(pixels: Tensor, split: int, hidden: Tensor | None) -> Tensor:
    """The crops a memory peer predicts in training: the withheld memorised ones, then steps split..T-1."""
    if hidden is None:
        return pixels[:, split:]
    withheld = pixels[:, :split][hidden].view(pixels.shape[0], -1, *pixels.shape[2:])
    return torch.cat([withheld, pixels[:, split:]], 1)

"""Baselines for the model-comparison benchmark, behind one small interface.

Every model answers the SPEC's question the same way: given the memorisation phase (the first
``tau`` observations) and all actions, predict the crops of steps ``tau..T-1``.

Reference bounds (no learning over time):

* ``DatasetMean`` — the mean training crop, every step;
* ``CopyLastObserved`` — the last memorised crop, repeated;
* ``OracleMemory`` — *reads the true positions*: the crop last seen at the true position, the
  memorisation phase's mean crop where the position was never seen (MSE 0 on revisited steps:
  the limit of any model);
* ``OraclePositionVAE`` — *reads the true positions*: GTM-SM's own VAE and memory read-out with the
  true (row, col) as memory keys instead of the learned states s_t. It isolates what the learned
  state space costs.

Learned temporal models (no spatial memory; trained on the same sampler with the same budget):

* ``RSSM`` — PlaNet/Dreamer's recurrent state-space model;
* ``ActionLSTM`` — an action-conditioned LSTM that predicts the next crop and is fed its own
  predictions after ``tau``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtmsm_model.data import RolloutSampler
from gtmsm_model.model import GTMSM, CropVAE


@dataclass
class Budget:
    """What every learned model may spend on training: the same batches, the same steps."""

    iterations: int = 2000
    """Gradient steps (one batch each)."""
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
    """Stop training early after this much wall-clock time (None: no cap)."""
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
    """What the benchmark needs from a model."""

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


def _pixels(observations: np.ndarray | Tensor, device: str | torch.device = "cpu") -> Tensor:
    return torch.as_tensor(np.asarray(observations), device=device).float() / 255.0


# --------------------------------------------------------------------------- bounds


class DatasetMean:
    """The mean training crop, predicted at every step."""

    name = "dataset mean"
    uses_true_positions = False

    def __init__(self, num_batches: int = 8) -> None:
        self.num_batches = num_batches
        self.mean: np.ndarray | None = None

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        total, count = None, 0
        for index in range(self.num_batches):
            crops = sampler.sample(budget.batch_size, budget.seq_len, key=budget.first_key + index).observations
            crops = crops.double().flatten(0, 1) / 255.0
            total = crops.sum(0) if total is None else total + crops.sum(0)
            count += len(crops)
        self.mean = (total / count).float().numpy()

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        check_prediction_inputs(observations, actions, tau)
        if self.mean is None:
            raise RuntimeError("call fit() before predict()")
        horizon = actions.shape[1] - tau
        shape = (len(actions), horizon, *self.mean.shape)
        return np.broadcast_to(self.mean, shape).astype(np.float32)


class CopyLastObserved:
    """The last memorised crop, repeated for every predicted step."""

    name = "copy last observed"
    uses_true_positions = False

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        pass

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau)
        last = memorised[:, -1:].astype(np.float32) / 255.0
        return np.repeat(last, actions.shape[1] - tau, axis=1)


class OracleMemory:
    """True position → the crop last seen there during memorisation; the memorisation phase's
    mean crop where the position was never seen. Exact (MSE 0) on every revisited step."""

    name = "oracle memory"
    uses_true_positions = True

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        pass

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau, positions, needs_positions=True)
        positions = np.asarray(positions, dtype=np.int64)
        batch = len(memorised)
        if positions.min() < 0:
            raise ValueError("positions must be >= 0")
        width = int(positions[..., 1].max()) + 1
        cells = positions[..., 0] * width + positions[..., 1]  # (B, T)
        num_cells = int(cells.max()) + 1
        pixels = memorised.astype(np.float32) / 255.0
        table = np.broadcast_to(
            pixels.mean(1, keepdims=True), (batch, num_cells, *pixels.shape[2:])
        ).copy()
        rows = np.arange(batch)
        for t in range(tau):  # in time order, so the latest visit wins
            table[rows, cells[:, t]] = pixels[:, t]
        return table[rows[:, None], cells[:, tau:]]


class OraclePositionVAE:
    """GTM-SM's read-out with the true positions as memory keys.

    Memorisation writes (true (row, col), q(z_t | x_t)) pairs; step t >= tau decodes the mixture
    mean over the K nearest stored positions with w_k ∝ 1 / (d_k^2 + delta) — exactly GTM-SM's
    predictor (``GTMSM.read_memory``) with s_t replaced by the true position. A revisited
    position therefore decodes the average posterior mean of up to K visits there; an unseen one
    mixes its nearest neighbours.

    ``model`` is a trained ``GTMSM`` (or, for older call sites, its ``CropVAE``); ``k`` and
    ``delta`` default to the model's.
    """

    name = "oracle-position VAE"
    uses_true_positions = True

    def __init__(self, model: GTMSM | CropVAE, k: int | None = None, delta: float | None = None) -> None:
        if isinstance(model, CropVAE):
            vae = model
            model = GTMSM(model.config).to(next(vae.parameters()).device)
            model.vae = vae
        self.model = model
        self.k = k or model.config.knn_k
        self.delta = model.config.delta if delta is None else delta

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        pass  # the VAE comes trained (it is GTM-SM's)

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau, positions, needs_positions=True)
        device = next(self.model.parameters()).device
        self.model.eval()
        keys = torch.as_tensor(np.asarray(positions), device=device).float()
        pixels = self.model.read_memory(keys[:, :tau], torch.as_tensor(memorised).to(device), keys[:, tau:],
                                        k=self.k, delta=self.delta)
        return pixels.cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- learned temporal models


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, outputs)
    )


class _TrainedModel:
    """Shared training loop: Adam, gradient clipping, a step budget and a wall-clock cap."""

    name = "trained"
    uses_true_positions = False
    grad_clip = 100.0

    def __init__(self) -> None:
        self.net: nn.Module | None = None
        self.device = torch.device("cpu")
        self.iterations_done = 0
        self.train_seconds = 0.0
        self.history: list[float] = []

    def build(self, crop_shape: tuple[int, int, int], num_actions: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        raise NotImplementedError

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        torch.manual_seed(budget.seed)
        self.device = torch.device(budget.device)
        start = time.perf_counter()
        batch = sampler.sample(budget.batch_size, budget.seq_len, key=budget.first_key)
        if self.net is None:
            self.net = self.build(tuple(batch.observations.shape[2:]), self.num_actions).to(self.device)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=budget.lr)
        self.net.train()
        for iteration in range(budget.iterations):
            if iteration:
                batch = sampler.sample(budget.batch_size, budget.seq_len, key=budget.first_key + iteration)
            pixels = _pixels(batch.observations, self.device)
            loss = self.loss(pixels, batch.actions.to(self.device), budget.tau)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
            optimiser.step()
            self.history.append(float(loss.detach()))
            self.iterations_done = iteration + 1
            if budget.max_seconds is not None and time.perf_counter() - start > budget.max_seconds:
                break
        self.net.eval()
        self.train_seconds = time.perf_counter() - start


@dataclass
class RSSMConfig:
    """Sizes and loss settings of the RSSM baseline (Dreamer's defaults where they fit 8×8 crops)."""

    num_actions: int = 5
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
    min_std: float = 0.1
    """Floor of the stochastic state's std."""
    grad_clip: float = 100.0
    """Gradient-norm clip."""


class _RSSMNet(nn.Module):
    def __init__(self, config: RSSMConfig, crop_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c = self.config = config
        self.crop_shape = crop_shape
        pixels = math.prod(crop_shape)
        self.encoder = _mlp(pixels, c.hidden, c.hidden)
        self.gru_input = nn.Sequential(nn.Linear(c.stoch + c.num_actions, c.hidden), nn.ELU())
        self.gru = nn.GRUCell(c.hidden, c.deter)
        # One hidden layer each, as in PlaNet/Dreamer.
        self.prior_net = nn.Sequential(nn.Linear(c.deter, c.hidden), nn.ELU(), nn.Linear(c.hidden, 2 * c.stoch))
        self.posterior_net = nn.Sequential(
            nn.Linear(c.deter + c.hidden, c.hidden), nn.ELU(), nn.Linear(c.hidden, 2 * c.stoch)
        )
        self.decoder = _mlp(c.deter + c.stoch, c.hidden, pixels)

    def gaussian(self, stats: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_std = stats.chunk(2, -1)
        return mean, F.softplus(raw_std) + self.config.min_std

    def step(self, h: Tensor, z: Tensor, action: Tensor) -> Tensor:
        one_hot = F.one_hot(action, self.config.num_actions).float()
        return self.gru(self.gru_input(torch.cat([z, one_hot], -1)), h)

    def decode(self, h: Tensor, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(torch.cat([h, z], -1))).unflatten(-1, self.crop_shape)


def _kl(mean_q: Tensor, std_q: Tensor, mean_p: Tensor, std_p: Tensor) -> Tensor:
    return (
        torch.log(std_p / std_q) + (std_q.square() + (mean_q - mean_p).square()) / (2 * std_p.square()) - 0.5
    ).sum(-1)


class RSSM(_TrainedModel):
    """Recurrent state-space model (Hafner et al.'s PlaNet/Dreamer), action-conditioned.

    h_t = GRU(h_{t-1}, [z_{t-1}, a_t]); prior p(z_t | h_t); posterior q(z_t | h_t, e_t) with e_t an
    MLP embedding of x_t; decoder p(x_t | h_t, z_t). Training: the ELBO over every step with the
    posterior (KL balancing and free nats), plus the prediction steps' reconstruction decoded from
    an open-loop prior rollout started at tau. Prediction: posterior on t < tau, prior means after.
    """

    name = "RSSM"

    def __init__(self, config: RSSMConfig | None = None) -> None:
        super().__init__()
        self.config = config or RSSMConfig()
        self.num_actions = self.config.num_actions
        self.grad_clip = self.config.grad_clip

    def build(self, crop_shape, num_actions) -> nn.Module:
        return _RSSMNet(self.config, crop_shape)

    def _filter(self, net: _RSSMNet, pixels: Tensor, actions: Tensor, sample: bool):
        """Posterior pass: h (B, T, deter), z (B, T, stoch), prior and posterior (mean, std)."""
        batch, steps = pixels.shape[:2]
        embed = net.encoder(pixels.flatten(-3) * 2.0 - 1.0)
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

    def _imagine(self, net: _RSSMNet, h: Tensor, z: Tensor, actions: Tensor, sample: bool):
        hs, zs = [], []
        for t in range(actions.shape[1]):
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
            h_open, z_open = self._imagine(net, h[:, tau - 1], z[:, tau - 1], actions[:, tau:], sample=True)
            sq_open = (net.decode(h_open, z_open) - pixels[:, tau:]).square().flatten(-3).sum(-1)
            loss = loss + c.open_loop_weight * (0.5 * sq_open / c.pixel_sigma**2).mean()
        return loss / math.prod(pixels.shape[2:])  # per pixel, so one clip norm fits every crop size

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau)
        if self.net is None:
            raise RuntimeError("call fit() before predict()")
        actions = torch.as_tensor(np.asarray(actions), device=self.device).long()
        h, z, _, _ = self._filter(self.net, _pixels(memorised, self.device), actions[:, :tau], sample=False)
        h, z = self._imagine(self.net, h[:, -1], z[:, -1], actions[:, tau:], sample=False)
        return self.net.decode(h, z).cpu().numpy().astype(np.float32)


@dataclass
class ActionLSTMConfig:
    """Sizes of the action-conditioned LSTM baseline."""

    num_actions: int = 5
    """Number of discrete actions."""
    hidden: int = 256
    """LSTM state size and encoder/decoder width."""
    embed: int = 256
    """Size of the crop embedding fed to the LSTM."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""


class _ActionLSTMNet(nn.Module):
    def __init__(self, config: ActionLSTMConfig, crop_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.crop_shape = crop_shape
        pixels = math.prod(crop_shape)
        self.encoder = _mlp(pixels, config.hidden, config.embed)
        self.lstm = nn.LSTM(config.embed + config.num_actions, config.hidden, batch_first=True)
        self.decoder = _mlp(config.hidden, config.hidden, pixels)

    def inputs(self, pixels: Tensor, actions: Tensor) -> Tensor:
        one_hot = F.one_hot(actions, self.config.num_actions).float()
        return torch.cat([self.encoder(pixels.flatten(-3) * 2.0 - 1.0), one_hot], -1)

    def decode(self, out: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(out)).unflatten(-1, self.crop_shape)

    def run(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        """Predictions of steps 1..T-1: teacher-forced from observed x_{t-1} for t < tau, then
        fed back its own prediction x̂_{t-1} (the input of step tau is still the observed x_{tau-1})."""
        out, state = self.lstm(self.inputs(pixels[:, : tau - 1], actions[:, 1:tau]))
        predictions = [self.decode(out)]
        previous = pixels[:, tau - 1]
        for t in range(tau, actions.shape[1]):
            out, state = self.lstm(self.inputs(previous, actions[:, t]).unsqueeze(1), state)
            previous = self.decode(out[:, 0])
            predictions.append(previous.unsqueeze(1))
        return torch.cat(predictions, 1)


class ActionLSTM(_TrainedModel):
    """encoder → LSTM over [embedding of x_{t-1}, one-hot a_t] → decoder → x̂_t.

    Training matches prediction: teacher forcing on the memorisation steps, free-running (fed its
    own predictions, gradients through them) on the training sequence's last ``seq_len - tau``
    steps, MSE on every step.
    """

    name = "action LSTM"

    def __init__(self, config: ActionLSTMConfig | None = None) -> None:
        super().__init__()
        self.config = config or ActionLSTMConfig()
        self.num_actions = self.config.num_actions
        self.grad_clip = self.config.grad_clip

    def build(self, crop_shape, num_actions) -> nn.Module:
        return _ActionLSTMNet(self.config, crop_shape)

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        if budget.tau < 2:
            raise ValueError(f"the LSTM needs tau >= 2 (one observed transition), got budget.tau={budget.tau}")
        super().fit(sampler, budget)

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        return (self.net.run(pixels, actions, tau) - pixels[:, 1:]).square().mean()

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau)
        if self.net is None:
            raise RuntimeError("call fit() before predict()")
        if tau < 2:
            raise ValueError("the LSTM needs tau >= 2 (one observed transition)")
        actions = torch.as_tensor(np.asarray(actions), device=self.device).long()
        predicted = self.net.run(_pixels(memorised, self.device), actions, tau)
        return predicted[:, tau - 1 :].cpu().numpy().astype(np.float32)


__all__ = [
    "ActionLSTM",
    "ActionLSTMConfig",
    "Budget",
    "CopyLastObserved",
    "DatasetMean",
    "OracleMemory",
    "OraclePositionVAE",
    "RSSM",
    "RSSMConfig",
    "WorldModel",
    "check_prediction_inputs",
]

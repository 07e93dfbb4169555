"""Reference bounds: no learning over time, every table of docs/results.md shows them.

* ``DatasetMean`` — the mean training crop, every step;
* ``MemorisationMean`` — each sequence's mean memorised crop, every step: the trivial bar every
  learned model must clear;
* ``CopyLastObserved`` — the last memorised crop, repeated;
* ``OracleMemory`` — *reads the true positions*: the crop last seen at the true position, the
  memorisation mean crop where the position was never seen (MSE 0 on revisited steps: the limit);
* ``CanvasOracle`` — *reads the true positions*: every memorised crop pasted at its true place in
  the image canvas, each future crop read from it, unseen pixels = the memorisation mean colour
  (0 on revisited steps; the honest novel-step limit for a model that composes overlapping
  memories without inpainting). The computation lives in ``gtmsm_model.evaluate``;
* ``OraclePositionVAE`` — *reads the true positions*: GTM-SM's own VAE and memory read-out with
  the true (row, col) as keys. It isolates what the learned state space costs.
"""

from __future__ import annotations

import numpy as np
import torch

from gtmsm_model.baselines.base import Budget, check_prediction_inputs
from gtmsm_model.data import RolloutSampler
from gtmsm_model.evaluate import canvas_oracle_predict
from gtmsm_model.model import GTMSM, CropVAE


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


class FixedModel:
    """A model with nothing to learn: ``fit`` is a no-op."""

    uses_true_positions = False

    def fit(self, sampler: RolloutSampler, budget: Budget) -> None:
        pass


class RepeatedCrop(FixedModel):
    """One crop per sequence, made from its memorised crops by ``crop``, predicted at every step."""

    def crop(self, memorised: np.ndarray) -> np.ndarray:
        """memorised (B, tau, H, W, C) uint8 → (B, 1, H, W, C) float32 in [0, 1]."""
        raise NotImplementedError

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau)
        return np.repeat(self.crop(memorised), actions.shape[1] - tau, axis=1)


class MemorisationMean(RepeatedCrop):
    """Each sequence's mean memorised crop (pixel by pixel), predicted at every step."""

    name = "memorisation mean"

    def crop(self, memorised: np.ndarray) -> np.ndarray:
        return memorised.astype(np.float32).mean(1, keepdims=True) / 255.0


class CopyLastObserved(RepeatedCrop):
    """The last memorised crop, repeated for every predicted step."""

    name = "copy last observed"

    def crop(self, memorised: np.ndarray) -> np.ndarray:
        return memorised[:, -1:].astype(np.float32) / 255.0


class OracleMemory(FixedModel):
    """True position → the crop last seen there during memorisation; the memorisation phase's
    mean crop where the position was never seen. Exact (MSE 0) on every revisited step."""

    name = "oracle memory"
    uses_true_positions = True

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


class CanvasOracle(FixedModel):
    """Memorised crops pasted at their true pixel places; future crops read from that canvas,
    pixels never seen = the sequence's memorisation mean colour (``evaluate.canvas_oracle_predict``).

    ``step_size``: pixels between neighbouring window positions (the env's, 3 by default).
    """

    name = "canvas oracle"
    uses_true_positions = True

    def __init__(self, step_size: int = 3) -> None:
        self.step_size = step_size

    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        check_prediction_inputs(observations, actions, tau, positions, needs_positions=True)
        return canvas_oracle_predict(np.asarray(observations), np.asarray(positions), tau, self.step_size)


class OraclePositionVAE(FixedModel):
    """GTM-SM's read-out with the true positions as memory keys.

    Memorisation writes (true (row, col), q(z_t | x_t)) pairs; step t >= tau decodes the mixture
    mean over the K nearest stored positions with w_k ∝ 1 / (d_k^2 + delta) — exactly GTM-SM's
    predictor (``GTMSM.read_memory``) with s_t replaced by the true position.

    ``model`` is a trained ``GTMSM`` (or, for older call sites, its ``CropVAE``); ``k`` and
    ``delta`` default to the model's. ``fit`` is a no-op: the VAE comes trained (it is GTM-SM's).
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

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised = check_prediction_inputs(observations, actions, tau, positions, needs_positions=True)
        device = next(self.model.parameters()).device
        self.model.eval()
        keys = torch.as_tensor(np.asarray(positions), device=device).float()
        pixels = self.model.read_memory(keys[:, :tau], torch.as_tensor(memorised).to(device), keys[:, tau:],
                                        k=self.k, delta=self.delta)
        return pixels.cpu().numpy().astype(np.float32)

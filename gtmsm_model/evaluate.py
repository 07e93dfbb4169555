"""The evaluation protocol, one for every model (the metrics docs/results.md reports).

On held-out rollouts: tau memorisation steps, then predicted steps from actions alone. Pixels in
[0, 1]. A predicted step is *revisited* when its true position was seen during memorisation,
*novel* otherwise. PSNR is 10·log10(1 / mean MSE) over the steps in question (not a mean of
per-frame PSNRs). SSIM uses a 3×3 uniform window (8×8 crops leave 6×6 valid windows per crop),
C1 = 0.01², C2 = 0.03², averaged over channels, windows and crops.

GTM-SM adds: NLL (an upper bound: the negative ELBO with the top-K memory prior, nats per
step); the VAE's own reconstruction MSE on the same crops (the floor for anything that decodes
through that VAE); the s-map quality (one linear map from s_t to the true (row, col) shared by
all sequences plus one offset per sequence, fitted by least squares on the memorisation steps,
RMS error in grid cells on the prediction steps: a single affine map across sequences is
meaningless when starts differ); the k-NN hit rate (the nearest memory key was written at the
true position); the wall model's mean gate on wall-hitting vs free moves and how often its
blocked/free decisions on predicted moves were right; and the canvas oracle on the same
rollouts (every memorised raw crop pasted at its true place, unseen pixels = the memorisation
mean colour), the honest limit on novel steps for a model that composes memories.

Conditions (centre start, random start, maze) are separate rollout sets: ``evaluate_gtmsm``
scores one set; ``benchmarks/train_gtmsm.py`` reports each condition on its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_env.rollouts import Rollouts
from gtmsm_model.memory import compose_canvas, read_canvas
from gtmsm_model.model import GTMSM, Prediction

SSIM_WINDOW = 3


# --------------------------------------------------------------------------- the records


@dataclass(frozen=True)
class HorizonCurve:
    """Per-pixel MSE against the steps after memorisation, in bins of predicted steps."""

    bins: list[list[int]]
    """[first, last] predicted step of each bin (1-based, inclusive)."""
    mse: list[float]
    mse_revisited: list[float]
    mse_novel: list[float]


@dataclass(frozen=True)
class PredictionScores:
    """How well one model's predictions match held-out rollouts (every model gets this record).

    ``to_dict`` gives the flat key names of ``metrics.json``.
    """

    tau: int
    horizon_steps: int
    sequences: int
    mse: float
    mse_revisited: float
    mse_novel: float
    fraction_revisited: float
    fraction_novel: float
    ssim: float
    ssim_window: int
    horizon: HorizonCurve
    psnr: float
    psnr_revisited: float
    psnr_novel: float
    mse_revisited_late_half: float
    """Revisited steps in the last half of the horizon (steps horizon/2 + 1 .. horizon)."""
    drift_ratio: float
    """Revisited MSE of the last 64 predicted steps over that of the first 64."""
    revisited_p99: float
    """The worst case beside the average: each rollout's own revisited MSE (over the rollouts with a
    revisited step), its 99th percentile (linear interpolation)..."""
    revisited_max: float
    """... its maximum ..."""
    rollouts_lost: float
    """... and how many rollouts score worse on their revisited steps than predicting that rollout's
    memorisation mean crop (the trivial bar, rollout by rollout): a model that lost its place."""
    rollout_revisited: list[float | None]
    """Each rollout's revisited MSE (None: no revisited step), in rollout order: what a bootstrap over
    test sequences resamples."""
    rollout_revisited_steps: list[int]
    """Each rollout's number of revisited steps."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GTMSMDiagnostics:
    """What only GTM-SM can be asked: its VAE floor, state space, memory, wall model and NLL bound."""

    vae_mse: float
    vae_mse_revisited: float
    vae_mse_novel: float
    vae_psnr_revisited: float
    ratio_to_vae_revisited: float
    smap_rms: float
    knn_hit_rate: float
    gate_wall: float
    gate_free: float
    gate_ratio: float
    wall_decision_accuracy: float
    wall_hit_recall: float
    fraction_predicted_moves_blocked: float
    canvas_oracle_mse_novel: float
    ratio_to_canvas_oracle_novel: float
    fraction_novel_from_canvas: float | None
    """None when the model paints no canvas (the key is then left out of ``to_dict``)."""
    nll_bound_nats_per_step: float

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if values["fraction_novel_from_canvas"] is None:
            del values["fraction_novel_from_canvas"]
        return values


@dataclass(frozen=True)
class GTMSMEvaluation:
    """``evaluate_gtmsm``'s result: the shared prediction scores and GTM-SM's diagnostics."""

    scores: PredictionScores
    diagnostics: GTMSMDiagnostics

    def to_dict(self) -> dict[str, Any]:
        """The flat record ``metrics.json`` holds."""
        return {**self.scores.to_dict(), **self.diagnostics.to_dict()}


# --------------------------------------------------------------------------- shared metrics


def revisited_mask(positions: np.ndarray, tau: int) -> np.ndarray:
    """(B, T, 2) true positions → (B, T - tau) bool: was the position seen in steps < tau?"""
    rows, cols = (int(positions[..., axis].max()) + 1 for axis in (0, 1))  # grids need not be square
    flat = positions[..., 0] * cols + positions[..., 1]
    seen = np.zeros((positions.shape[0], rows * cols), dtype=bool)
    np.put_along_axis(seen, flat[:, :tau], True, axis=1)
    return np.take_along_axis(seen, flat[:, tau:], axis=1)


def psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else float(10 * math.log10(1.0 / mse))


def ssim(predicted: np.ndarray, target: np.ndarray, window: int = SSIM_WINDOW) -> float:
    """Mean SSIM of (..., H, W, C) crops in [0, 1] with a uniform ``window``×``window`` window."""
    # np.array copies: a read-only input (a broadcast view, say) is fine.
    x = torch.from_numpy(np.array(predicted, dtype=np.float64)).reshape(-1, *predicted.shape[-3:]).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.array(target, dtype=np.float64)).reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2)
    pool = lambda t: torch.nn.functional.avg_pool2d(t, window, stride=1)  # noqa: E731
    mu_x, mu_y = pool(x), pool(y)
    var_x = pool(x * x) - mu_x**2
    var_y = pool(y * y) - mu_y**2
    cov = pool(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(value.mean())


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator without ZeroDivisionError: x / 0 is inf (nan for 0 / 0)."""
    if denominator == 0:
        return float("nan") if numerator == 0 or math.isnan(numerator) else float("inf")
    return numerator / denominator


def per_step_mse(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean squared error of each crop: (B, N, H, W, C) pairs → (B, N)."""
    return ((predicted - target) ** 2).mean(axis=(2, 3, 4))


@dataclass(frozen=True)
class RolloutWorstCase:
    """Per-rollout revisited MSE, summarised by its tail (``rollout_worst_case``)."""

    per_rollout: np.ndarray
    """(B,) each rollout's mean revisited MSE (NaN for a rollout with no revisited step)."""
    trivial: np.ndarray
    """(B,) the same for that rollout's memorisation mean crop."""

    @property
    def p99(self) -> float:
        finite = self.per_rollout[np.isfinite(self.per_rollout)]
        return float(np.percentile(finite, 99)) if finite.size else float("nan")

    @property
    def max(self) -> float:
        return float(np.nanmax(self.per_rollout)) if np.isfinite(self.per_rollout).any() else float("nan")

    @property
    def lost(self) -> int:
        """Rollouts worse than their own memorisation mean on revisited steps."""
        both = np.isfinite(self.per_rollout) & np.isfinite(self.trivial)
        # A relative 1e-4 keeps float rounding from calling the memorisation mean worse than itself.
        return int((self.per_rollout[both] > self.trivial[both] * (1 + 1e-4)).sum())


def rollout_worst_case(per_step: np.ndarray, revisited: np.ndarray, observations: np.ndarray,
                       tau: int) -> RolloutWorstCase:
    """per_step (B, N) crop MSEs of the predicted steps, revisited (B, N) bool, observations (B, T, H, W, C)
    uint8 → each rollout's revisited MSE and its memorisation mean's (the mean crop of steps < tau)."""
    pixels = observations.astype(np.float32) / 255.0
    mean_crop = pixels[:, :tau].mean(axis=1, keepdims=True)
    trivial_step = per_step_mse(mean_crop, pixels[:, tau:])
    count = revisited.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_rollout = np.where(count > 0, (per_step * revisited).sum(1) / count, np.nan)
        trivial = np.where(count > 0, (trivial_step * revisited).sum(1) / count, np.nan)
    return RolloutWorstCase(per_rollout, trivial)


def prediction_metrics(
    predicted: np.ndarray, rollouts: Rollouts, tau: int, *, bin_size: int = 32
) -> PredictionScores:
    """Score predictions (B, T - tau, H, W, C) in [0, 1] of steps tau..T-1 of ``rollouts``."""
    target = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    predicted = np.asarray(predicted, dtype=np.float32)
    if predicted.shape != target.shape:
        raise ValueError(f"predictions have shape {predicted.shape}; the rollouts need {target.shape}")
    if not np.isfinite(predicted).all():
        raise ValueError("predictions contain NaN or inf")
    per_step = per_step_mse(predicted, target)  # (B, H)
    revisited = revisited_mask(rollouts.positions, tau)
    horizon = per_step.shape[1]
    bins = [[start + 1, min(start + bin_size, horizon)] for start in range(0, horizon, bin_size)]
    by_bin = lambda mask: [_mean(per_step[:, a - 1:b][mask[:, a - 1:b]]) for a, b in bins]  # noqa: E731
    mse, mse_revisited, mse_novel = _mean(per_step), _mean(per_step[revisited]), _mean(per_step[~revisited])
    late = per_step[:, horizon // 2:][revisited[:, horizon // 2:]]
    first = per_step[:, :64][revisited[:, :64]]
    last = per_step[:, horizon - 64:][revisited[:, horizon - 64:]]
    worst = rollout_worst_case(per_step, revisited, rollouts.observations, tau)
    return PredictionScores(
        tau=tau, horizon_steps=horizon, sequences=int(per_step.shape[0]),
        mse=mse, mse_revisited=mse_revisited, mse_novel=mse_novel,
        fraction_revisited=float(revisited.mean()), fraction_novel=float(1 - revisited.mean()),
        ssim=ssim(predicted, target), ssim_window=SSIM_WINDOW,
        horizon=HorizonCurve(bins=bins, mse=by_bin(np.ones_like(revisited)), mse_revisited=by_bin(revisited),
                             mse_novel=by_bin(~revisited)),
        psnr=psnr(mse), psnr_revisited=psnr(mse_revisited), psnr_novel=psnr(mse_novel),
        mse_revisited_late_half=_mean(late),
        drift_ratio=_ratio(_mean(last), _mean(first)),
        revisited_p99=worst.p99, revisited_max=worst.max, rollouts_lost=worst.lost,
        rollout_revisited=[float(v) if np.isfinite(v) else None for v in worst.per_rollout],
        rollout_revisited_steps=[int(n) for n in revisited.sum(1)],
    )


# --------------------------------------------------------------------------- GTM-SM


def affine_fit_rms(states: np.ndarray, positions: np.ndarray, tau: int) -> tuple[float, np.ndarray]:
    """Fit positions ≈ [s, 1] @ A on steps < tau (all sequences); RMS grid-cell error on steps >= tau."""
    design = lambda s: np.concatenate([s, np.ones((*s.shape[:-1], 1))], -1).reshape(-1, s.shape[-1] + 1)  # noqa: E731
    solution, *_ = np.linalg.lstsq(design(states[:, :tau]), positions[:, :tau].reshape(-1, 2).astype(float), rcond=None)
    error = design(states[:, tau:]) @ solution - positions[:, tau:].reshape(-1, 2)
    return float(np.sqrt((error**2).sum(-1).mean())), solution


def smap_fit_rms(states: np.ndarray, positions: np.ndarray, tau: int) -> tuple[float, np.ndarray]:
    """Fit positions ≈ s W + c_b (one linear map W for all sequences, one offset c_b per sequence)
    on steps < tau; RMS grid-cell error on steps >= tau. Returns (rms, W of shape (S, 2)).

    Centring each sequence on its memorisation-phase means removes the offsets, W is the least
    squares fit of the centred data, and c_b = mean(p_b) - mean(s_b) W.
    """
    states, positions = np.asarray(states, float), np.asarray(positions, float)
    s_mean = states[:, :tau].mean(1, keepdims=True)
    p_mean = positions[:, :tau].mean(1, keepdims=True)
    centred_s = (states[:, :tau] - s_mean).reshape(-1, states.shape[-1])
    centred_p = (positions[:, :tau] - p_mean).reshape(-1, 2)
    linear, *_ = np.linalg.lstsq(centred_s, centred_p, rcond=None)
    predicted = (states[:, tau:] - s_mean) @ linear + p_mean
    error = predicted - positions[:, tau:]
    return float(np.sqrt((error**2).sum(-1).mean())), linear


def canvas_oracle_predict(observations: np.ndarray, positions: np.ndarray, tau: int, step_size: int) -> np.ndarray:
    """The canvas oracle: every memorised raw crop pasted at its true pixel place (overlaps
    averaged), each later crop read from that canvas, pixels never seen = the sequence's
    memorisation mean colour. Reads the true positions. (B, T - tau, H, W, C) float32 in [0, 1]."""
    pixels = torch.as_tensor(observations).float() / 255.0
    offsets = torch.as_tensor(np.asarray(positions), dtype=torch.long) * step_size
    canvas = compose_canvas(pixels[:, :tau], offsets[:, :tau], max_side=1 << 30)
    assert canvas is not None
    crop = (pixels.shape[2], pixels.shape[3])
    painted, covered = read_canvas(canvas, offsets[:, tau:], crop)
    mean_colour = pixels[:, :tau].mean(dim=(1, 2, 3))[:, None, None, None, :]
    return torch.where(covered.unsqueeze(-1), painted, mean_colour).numpy().astype(np.float32)


class GTMSMPredictor:
    """GTM-SM behind the same predictor interface as the baselines."""

    name = "GTM-SM"
    uses_true_positions = False

    def __init__(self, model: GTMSM, device: str | torch.device = "cpu", mode: str = "mean") -> None:
        self.model, self.device, self.mode = model.eval(), torch.device(device), mode

    def predict(self, observations: np.ndarray, actions: np.ndarray, tau: int,
                positions: np.ndarray | None = None) -> np.ndarray:
        prediction = self.model.predict(
            torch.as_tensor(observations[:, :tau]).to(self.device),
            torch.as_tensor(actions).long().to(self.device), tau, mode=self.mode)
        return prediction.pixels.cpu().numpy()


@torch.no_grad()
def prediction_nll_bound(model: GTMSM, rollouts: Rollouts, tau: int, device: torch.device,
                         samples: int = 4, prediction: Prediction | None = None) -> float:
    """``GTMSM.nll_bound`` averaged over the predicted steps, nats per step.

    Pass ``prediction`` (``model.predict`` on the same rollouts) to reuse its retrieval instead of
    running the model again.
    """
    observations = torch.as_tensor(rollouts.observations).to(device)
    if prediction is None:
        prediction = model.predict(observations, torch.as_tensor(rollouts.actions).long().to(device), tau)
    return float(model.nll_bound(observations, tau, prediction, samples=samples).mean())


@torch.no_grad()
def evaluate_gtmsm(model: GTMSM, rollouts: Rollouts, tau: int, *,
                   device: str | torch.device = "cpu", bin_size: int = 32) -> GTMSMEvaluation:
    """The full protocol for a trained GTM-SM on ``rollouts`` (memorise tau steps, predict the rest)."""
    device = torch.device(device)
    model.eval()
    if tau < 1:
        raise ValueError(f"tau must be >= 1 (at least one memorised step), got {tau}")
    if rollouts.actions.shape[1] <= tau:
        raise ValueError(f"rollouts have {rollouts.actions.shape[1]} steps; need more than tau={tau}")
    observations = torch.as_tensor(rollouts.observations).to(device)
    actions = torch.as_tensor(rollouts.actions).long().to(device)
    prediction = model.predict(observations, actions, tau)
    scores = prediction_metrics(prediction.pixels.cpu().numpy(), rollouts, tau, bin_size=bin_size)

    revisited = revisited_mask(rollouts.positions, tau)
    target = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    reconstruction = model.reconstruct(observations[:, tau:]).cpu().numpy()
    vae_per_step = per_step_mse(reconstruction, target)
    vae_mse_revisited = _mean(vae_per_step[revisited])

    states = prediction.states.cpu().numpy()
    smap_rms, _ = smap_fit_rms(states, rollouts.positions, tau)
    nearest = prediction.neighbours[..., 0].cpu().numpy()
    nearest_position = np.take_along_axis(rollouts.positions[:, :tau], nearest[..., None], axis=1)
    hit = (nearest_position == rollouts.positions[:, tau:]).all(-1)

    gates = prediction.gates.cpu().numpy()[:, 1:]
    moving = rollouts.actions[:, 1:] != model.config.stay_action
    walls = rollouts.wall_hits[:, 1:]
    gate_wall, gate_free = _mean(gates[moving & walls]), _mean(gates[moving & ~walls])
    # The wall model's decisions on predicted moves (blocked iff gate < 0.5) against the truth.
    decided_blocked = gates[:, tau - 1:] < 0.5
    predicted_moves = moving[:, tau - 1:]
    truth = walls[:, tau - 1:]

    step_size = rollouts.world.step_size
    oracle = canvas_oracle_predict(rollouts.observations, rollouts.positions, tau, step_size)
    canvas_oracle_mse_novel = _mean(per_step_mse(oracle, target)[~revisited])
    from_canvas = (None if prediction.from_canvas is None
                   else _mean(prediction.from_canvas.cpu().numpy()[~revisited]))
    diagnostics = GTMSMDiagnostics(
        vae_mse=_mean(vae_per_step), vae_mse_revisited=vae_mse_revisited,
        vae_mse_novel=_mean(vae_per_step[~revisited]), vae_psnr_revisited=psnr(vae_mse_revisited),
        ratio_to_vae_revisited=_ratio(scores.mse_revisited, vae_mse_revisited),
        smap_rms=smap_rms, knn_hit_rate=_mean(hit[revisited]),
        gate_wall=gate_wall, gate_free=gate_free, gate_ratio=_ratio(gate_wall, gate_free),
        wall_decision_accuracy=_mean((decided_blocked == truth)[predicted_moves]),
        wall_hit_recall=_mean(decided_blocked[predicted_moves & truth]),
        fraction_predicted_moves_blocked=_mean(truth[predicted_moves]),
        canvas_oracle_mse_novel=canvas_oracle_mse_novel,
        ratio_to_canvas_oracle_novel=_ratio(scores.mse_novel, canvas_oracle_mse_novel),
        fraction_novel_from_canvas=from_canvas,
        nll_bound_nats_per_step=prediction_nll_bound(model, rollouts, tau, device, prediction=prediction),
    )
    return GTMSMEvaluation(scores, diagnostics)


@dataclass(frozen=True)
class RunTargets:
    """The per-run targets of one trained GTM-SM (any start), defined once: ``gtmsm run`` checks them
    and the benchmarks read their bounds from here. The s-map RMS and the gate's wall/free ratio
    are reported, not targets: a few sequences whose state went wrong dominate the RMS, and the
    edge wall model's gate is a hard decision."""

    knn_hit_rate: float = 0.95
    """k-NN hit rate on revisited steps, at least."""
    ratio_to_vae_revisited: float = 1.1
    """Revisited MSE / the VAE floor, at most."""
    drift_ratio: float = 1.15
    """Revisited MSE, last 64 / first 64 predicted steps, at most."""
    ratio_to_canvas_oracle_novel: float = 1.3
    """Novel-step MSE / the canvas oracle's, at most."""

    def check(self, evaluation: GTMSMEvaluation) -> dict[str, bool]:
        """Which targets ``evaluation`` meets, keyed by metric name (``metrics.json``'s ``targets_met``)."""
        scores, diagnostics = evaluation.scores, evaluation.diagnostics
        return {
            "knn_hit_rate": bool(diagnostics.knn_hit_rate >= self.knn_hit_rate),
            "ratio_to_vae_revisited": bool(diagnostics.ratio_to_vae_revisited <= self.ratio_to_vae_revisited),
            "drift_ratio": bool(scores.drift_ratio <= self.drift_ratio),
            "ratio_to_canvas_oracle_novel": bool(
                diagnostics.ratio_to_canvas_oracle_novel <= self.ratio_to_canvas_oracle_novel),
        }


TARGETS = RunTargets()


def check_targets(evaluation: GTMSMEvaluation) -> dict[str, bool]:
    """Which of the per-run targets (:data:`TARGETS`) ``evaluation`` meets."""
    return TARGETS.check(evaluation)


def format_table(evaluation: GTMSMEvaluation) -> str:
    """A human-readable Markdown summary of ``evaluate_gtmsm``'s result."""
    s, d = evaluation.scores, evaluation.diagnostics
    lines = [
        "| metric | value |", "|---|---:|",
        f"| MSE all / revisited / novel | {s.mse:.5f} / {s.mse_revisited:.5f} / {s.mse_novel:.5f} |",
        f"| PSNR all / revisited / novel (dB) | {s.psnr:.2f} / {s.psnr_revisited:.2f} / {s.psnr_novel:.2f} |",
        f"| fraction revisited / novel | {s.fraction_revisited:.3f} / {s.fraction_novel:.3f} |",
        f"| VAE reconstruction MSE, revisited (floor) | {d.vae_mse_revisited:.5f} |",
        f"| revisited MSE / VAE floor | {d.ratio_to_vae_revisited:.3f} |",
        f"| drift: revisited MSE last 64 / first 64 steps | {s.drift_ratio:.3f} |",
        f"| per-rollout revisited MSE: p99 / max | {s.revisited_p99:.5f} / {s.revisited_max:.5f} |",
        f"| rollouts worse than their memorisation mean (lost) | {s.rollouts_lost} of {s.sequences} |",
        f"| SSIM (window {s.ssim_window}) | {s.ssim:.4f} |",
        f"| NLL bound (nats/step) | {d.nll_bound_nats_per_step:.1f} |",
        f"| k-NN hit rate (revisited) | {d.knn_hit_rate:.4f} |",
        f"| s-map RMS (grid cells) | {d.smap_rms:.4f} |",
        f"| gate: wall / free moves | {d.gate_wall:.4f} / {d.gate_free:.4f} (ratio {d.gate_ratio:.4f}) |",
        f"| wall decisions right (predicted moves) | {d.wall_decision_accuracy:.4f} |",
        f"| novel MSE / canvas oracle's | {s.mse_novel:.5f} / {d.canvas_oracle_mse_novel:.5f} "
        f"({d.ratio_to_canvas_oracle_novel:.3f}) |",
    ]
    bins = s.horizon.bins
    lines += ["", "| horizon | " + " | ".join(f"{a}–{b}" for a, b in bins) + " |",
              "|---|" + "---:|" * len(bins)]
    for key in ("mse_revisited", "mse_novel"):
        lines.append(f"| {key} | " + " | ".join(f"{v:.4f}" for v in getattr(s.horizon, key)) + " |")
    return "\n".join(lines)


def json_safe(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python numbers, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_metrics(metrics: dict[str, Any], path: str | Path) -> None:
    """``metrics`` as strict JSON at ``path``, written atomically (complete or not at all)."""
    from gtmsm_cli.files import write_text

    write_text(path, json.dumps(json_safe(metrics), indent=1, allow_nan=False))

"""The comparison's metric record: one row per model, condition and seed, and its summary over seeds.

A row's scores are ``gtmsm_model.evaluate.PredictionScores`` (the protocol's one record); the
summary and the saved rows carry the columns the tables show (``COLUMNS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness.conditions import CONDITIONS
from benchmarks.harness.targets import TRIVIAL_NAME
from gtmsm_model.evaluate import HorizonCurve, PredictionScores

COLUMNS = {"mse": "mse", "mse_revisited": "mse_revisited", "mse_novel": "mse_novel",
           "mse_revisited_late": "mse_revisited_late_half", "fraction_revisited": "fraction_revisited",
           "ssim": "ssim", "revisited_p99": "revisited_p99", "rollouts_lost": "rollouts_lost"}
"""Summary column → ``PredictionScores`` attribute (the late column: revisited steps in the last half;
the per-rollout tail: the 99th percentile and the rollouts worse than their own memorisation mean)."""


TRAINED_KINDS = ("GTM-SM", "learned peer", "control")
"""The kinds of row that learn, each judged against the memorisation mean."""


@dataclass
class Row:
    """One model on one condition, one seed."""

    condition: str
    model: str
    seed: int | None
    """None for bounds that do not depend on a training seed."""
    scores: PredictionScores
    kind: str
    """"GTM-SM", "learned peer" (a generic learned model with a memory; plug-ins too), "control" (a
    memory-less learned model), "no learning", "bound" or "oracle" (reads true positions or true future crops)."""
    trained_on: str
    train_seconds: float | None = None
    train_iterations: int | None = None
    failed: str | None = None
    """Why the model produced no scores here (a plug-in that failed; its scores are NaN)."""

    def to_dict(self) -> dict[str, Any]:
        """The row as ``compare.json`` and ``rows.json`` hold it."""
        s = self.scores
        scores = {"mse": s.mse, "mse_revisited": s.mse_revisited, "mse_novel": s.mse_novel,
                  "mse_revisited_late": s.mse_revisited_late_half, "fraction_revisited": s.fraction_revisited,
                  "psnr_revisited": s.psnr_revisited, "psnr_novel": s.psnr_novel, "ssim": s.ssim,
                  "horizon_bins": s.horizon.bins, "horizon_revisited": s.horizon.mse_revisited,
                  "horizon_novel": s.horizon.mse_novel}
        return {"condition": self.condition, "model": self.model, "seed": self.seed, "scores": scores,
                "kind": self.kind, "trained_on": self.trained_on, "train_seconds": self.train_seconds,
                "train_iterations": self.train_iterations, "failed": self.failed}


def failed_scores(tau: int, horizon: int, sequences: int, bin_size: int = 32) -> PredictionScores:
    """The scores of a model that produced no predictions: every number NaN, the bins as
    ``prediction_metrics`` would draw them (so its row summarises beside the others)."""
    nan = float("nan")
    bins = [[start + 1, min(start + bin_size, horizon)] for start in range(0, horizon, bin_size)]
    return PredictionScores(
        tau=tau, horizon_steps=horizon, sequences=sequences, mse=nan, mse_revisited=nan, mse_novel=nan,
        fraction_revisited=nan, fraction_novel=nan, ssim=nan, ssim_window=0,
        horizon=HorizonCurve(bins=bins, mse=[nan] * len(bins), mse_revisited=[nan] * len(bins),
                             mse_novel=[nan] * len(bins)),
        psnr=nan, psnr_revisited=nan, psnr_novel=nan, mse_revisited_late_half=nan, drift_ratio=nan,
        revisited_p99=nan, revisited_max=nan, rollouts_lost=nan, rollout_revisited=[None] * sequences,
        rollout_revisited_steps=[0] * sequences)


def mean_std(values: list[float | None]) -> tuple[float, float]:
    """Mean and std of the finite values (std NaN for fewer than two)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite)) if len(finite) > 1 else float("nan")


BOOTSTRAP_RESAMPLES = 1000


def bootstrap_revisited(scores: list[Any], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float] | None:
    """A 95 % interval for the revisited MSE (mean over seeds) from the test sequences: resample the
    sequences with replacement (the same draw for every seed: they share the test set), recompute each
    seed's revisited MSE (pooled over the drawn sequences' revisited steps) and their mean; the 2.5th and
    97.5th percentiles of 1000 such draws. None without per-rollout scores."""
    seeds = [(np.array([np.nan if v is None else v for v in s.rollout_revisited], float),
              np.array(s.rollout_revisited_steps, float)) for s in scores if s.rollout_revisited]
    if not seeds:
        return None
    count = len(seeds[0][0])
    draws = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    totals = []
    for means, steps in seeds:
        weighted = np.nan_to_num(means) * steps
        totals.append(weighted[draws].sum(1) / np.maximum(steps[draws].sum(1), 1))
    mean = np.mean(totals, axis=0)
    return [float(np.percentile(mean, 2.5)), float(np.percentile(mean, 97.5))]


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """One entry per (condition, model), in table order: means and stds over the seeds it has
    scores for (``seeds``); ``failed`` is the first failure's reason (None if every row scored)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.condition, row.model), []).append(row)
    order = {name: i for i, name in enumerate(CONDITIONS)}
    summary = []
    for (condition, model), group in sorted(groups.items(), key=lambda item: order[item[0][0]]):
        failures = [f"{row.failed} (seed {row.seed})" for row in group if row.failed]
        entry: dict[str, Any] = {"condition": condition, "model": model,
                                 "seeds": sum(not row.failed for row in group), "kind": group[0].kind,
                                 "trained_on": group[0].trained_on, "failed": failures[0] if failures else None}
        for column, attribute in COLUMNS.items():
            entry[column], entry[f"{column}_std"] = mean_std([getattr(row.scores, attribute) for row in group])
        for key in ("train_seconds", "train_iterations"):
            entry[key], _ = mean_std([getattr(row, key) for row in group])
        entry["mse_revisited_ci95"] = bootstrap_revisited([row.scores for row in group if not row.failed])
        worst = [row.scores.revisited_max for row in group if not row.failed]
        finite = [v for v in worst if v is not None and math.isfinite(v)]
        entry["revisited_max"] = max(finite) if finite else float("nan")  # the worst rollout of any seed
        bins = group[0].scores.horizon.bins
        entry["horizon_bins"] = bins
        for column, attribute in (("horizon_revisited", "mse_revisited"), ("horizon_novel", "mse_novel")):
            entry[column] = [mean_std([getattr(row.scores.horizon, attribute)[i] for row in group])[0]
                             for i in range(len(bins))]
        summary.append(entry)
    trivial = {e["condition"]: e["mse_revisited"] for e in summary if e["model"] == TRIVIAL_NAME}
    for entry in summary:
        bar = trivial.get(entry["condition"])
        entry["below_trivial"] = bool(entry["kind"] in TRAINED_KINDS and bar is not None and not entry["failed"]
                                      and not entry["mse_revisited"] < bar)
    return summary

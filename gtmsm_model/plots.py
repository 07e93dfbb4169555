"""Figures of a run: error vs horizon with its bound lines (``horizon.png``), the training log
(``loss.png``) and the learned s-map (``state_map.png``). The figures of one predicted rollout
(``prediction.png``, the ``predict`` GIF and strip) live in ``plots_prediction`` and are
re-exported here. Headless (matplotlib's Agg backend); every file is written atomically.

Each ``*_figure`` function returns the open figure (so tests can read its lines and labels); the
``plot_*`` function beside it saves and closes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gtmsm_cli.files import atomic_path  # noqa: E402
from gtmsm_model.plots_prediction import (  # noqa: E402,F401 -- re-exported: the figures' one import place
    assemble_canvas,
    plot_prediction_figure,
    prediction_figure,
    save_prediction_gif,
    save_prediction_strip,
)

if TYPE_CHECKING:
    from gtmsm_env.rollouts import Rollouts
    from gtmsm_model.config import Schedule
    from gtmsm_model.evaluate import GTMSMEvaluation, HorizonCurve


def _save(fig: plt.Figure, path: str | Path, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)


def number(value: float) -> str:
    """A metric as the figures print it: four significant digits, never rounded to 0."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


# --------------------------------------------------------------------------- horizon


@dataclass(frozen=True)
class BoundLine:
    """A reference line of the horizon figure: per panel either one value (a flat line), one value
    per horizon bin (a curve), or None (not drawn in that panel)."""

    name: str
    revisited: float | Sequence[float] | None
    novel: float | Sequence[float] | None
    color: str = "black"
    style: str = "--"


def horizon_bounds(evaluation: GTMSMEvaluation, rollouts: Rollouts, tau: int) -> list[BoundLine]:
    """The bound lines of a GTM-SM evaluation on ``rollouts``: the VAE floor (its reconstruction
    of the true crops, flat: ``vae_mse_revisited`` / ``vae_mse_novel``), the memorisation mean
    (the trivial bar, per bin) and the canvas oracle (the novel-step limit, per bin; exactly 0 on
    revisited steps, which a log axis cannot show)."""
    from gtmsm_model.baselines.bounds import MemorisationMean
    from gtmsm_model.evaluate import canvas_oracle_predict, prediction_metrics

    bins = evaluation.scores.horizon.bins
    bin_size = bins[0][1] - bins[0][0] + 1
    memorised = rollouts.observations[:, :tau]
    mean = prediction_metrics(MemorisationMean().predict(memorised, rollouts.actions, tau), rollouts, tau,
                              bin_size=bin_size).horizon
    step_size = rollouts.world.step_size
    oracle = prediction_metrics(canvas_oracle_predict(rollouts.observations, rollouts.positions, tau, step_size),
                                rollouts, tau, bin_size=bin_size).horizon
    d = evaluation.diagnostics
    return [
        BoundLine(f"VAE floor (reconstruction): {number(d.vae_mse_revisited)} / {number(d.vae_mse_novel)}",
                  d.vae_mse_revisited, d.vae_mse_novel, "black", "--"),
        BoundLine("memorisation mean (trivial bar)", mean.mse_revisited, mean.mse_novel, "tab:gray", ":"),
        BoundLine(f"canvas oracle (novel limit): {number(d.canvas_oracle_mse_novel)}", None,
                  oracle.mse_novel, "tab:purple", "-."),
    ]


def _values(values: Sequence[float | None]) -> np.ndarray:
    """Per-bin values for a log axis: None, NaN and values <= 0 become gaps."""
    array = np.array([np.nan if v is None else v for v in values], dtype=float)
    array[~(array > 0)] = np.nan
    return array


def horizon_figure(curves: dict[str, HorizonCurve], title: str = "",
                   bounds: Sequence[BoundLine] = ()) -> plt.Figure:
    """The figure ``plot_horizon`` saves (returned open, for inspection)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    first = next(iter(curves.values()), None)
    for ax, key, label in zip(axes, ("mse_revisited", "mse_novel"), ("revisited steps", "novel steps"), strict=True):
        for name, curve in curves.items():
            centres = [(a + b) / 2 for a, b in curve.bins]
            overall = _values(getattr(curve, key))
            ax.plot(centres, overall, marker="o", markersize=3.5, linewidth=2, label=name)
        centres = [(a + b) / 2 for a, b in first.bins] if first is not None else []
        for bound in bounds:
            value = getattr(bound, key.removeprefix("mse_"))
            if value is None:
                ax.plot([], [], bound.style, color=bound.color, label=f"{bound.name.split(':')[0]}: 0 here (off the log axis)")
                continue
            if np.ndim(value) > 0:
                ax.plot(centres, _values(value), bound.style, color=bound.color, linewidth=1.4, marker="x",
                        markersize=4, label=bound.name)  # a marker: one bin draws no line
            elif math.isfinite(value) and value > 0:
                ax.axhline(value, linestyle=bound.style, color=bound.color, linewidth=1.4,
                           label=f"{bound.name.split(':')[0]}: {number(value)}")
        ax.set_title(label)
        ax.set_xlabel("predicted step after memorisation (bin centre)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("per-pixel MSE (pixels in [0, 1])")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_horizon(curves: dict[str, HorizonCurve], path: str | Path, title: str = "", *,
                 bounds: Sequence[BoundLine] = ()) -> None:
    """MSE against the predicted step, revisited and novel steps side by side: one line per model
    (``curves[name]`` is its ``HorizonCurve``) and the ``bounds`` (``horizon_bounds``) as dashed
    reference lines whose legend entries give their values."""
    _save(horizon_figure(curves, title, bounds), path)


# --------------------------------------------------------------------------- training log

UNITS = {
    "nats per step (log scale)": ("loss", "nll", "kl_prior", "kl_memory", "kl_predict"),
    "per-pixel MSE": ("mse", "mse_revisited", "mse_novel", "vae_mse_revisited"),
    "gate / rate (0-1)": ("gate_moving", "knn_hit_rate", "gate_ratio"),
    "grid cells": ("smap_rms",),
}
"""Which panel of ``loss.png`` each logged value goes in (train_log.jsonl parts, then the
held-out evaluations of history.json); a key not listed gets an "other" panel."""
PART_TEXT = {
    "loss": "loss (warm-up: VAE objective per crop; main: objective per step)",
    "nll": "nll (reconstruction)", "kl_prior": "kl_prior (to N(0, I))",
    "kl_memory": "kl_memory (memorisation steps)", "kl_predict": "kl_predict (predicted steps)",
    "mse": "mse (reconstruction, training batch)", "gate_moving": "gate on moves (1 = open)",
}
_SKIP = ("step", "phase", "seconds", "sequences")  # bookkeeping, not curves


def phase_marks(schedule: Schedule | None, gate_open_iters: int | None = None,
                records: Sequence[dict[str, Any]] = ()) -> list[tuple[float, str]]:
    """(step, label) of the schedule's boundaries: VAE warm-up → main phase, the gate let free,
    the first sequences longer than tau (the first predicted steps, where ``kl_predict`` starts)
    and the curriculum's end. Without a schedule only what the log shows: the phase change and the
    first non-zero ``kl_predict``."""
    marks: list[tuple[float, str]] = []
    if schedule is not None:
        warmup = schedule.vae_warmup_iters
        if warmup and schedule.iterations:
            marks.append((warmup, "VAE warm-up → main"))
        if gate_open_iters and gate_open_iters < schedule.iterations:
            marks.append((warmup + gate_open_iters, "gate free"))
        first_predicted = next((i for i in range(schedule.iterations)
                                if schedule.sequence_length(i) > schedule.tau), None)
        if first_predicted:
            marks.append((warmup + first_predicted, "sequences > τ: kl_predict starts"))
        if 0 < schedule.curriculum_iters < schedule.iterations:
            marks.append((warmup + schedule.curriculum_iters, "curriculum end"))
        return marks
    main = [r for r in records if r.get("phase") == "main"]
    if main and any(r.get("phase") == "vae" for r in records):
        marks.append((main[0]["step"] - 1, "VAE warm-up → main"))
    started = next((r["step"] for r in main if r.get("kl_predict")), None)
    if started is not None and started > main[0]["step"]:
        marks.append((started - 1, "sequences > τ: kl_predict starts"))
    return marks


def _segments(records: Sequence[dict[str, Any]], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (steps, values) runs of one logged part, one per phase. A part logged as exactly 0 until
    it first means something (``kl_predict`` while the curriculum's sequences are no longer than
    tau: there are no predicted steps) starts where it becomes non-zero, not with a jump from 0."""
    runs = []
    for phase in dict.fromkeys(r.get("phase") for r in records):
        rows = [r for r in records if r.get("phase") == phase and r.get(name) is not None]
        if not rows:
            continue
        values = np.array([r[name] for r in rows], dtype=float)
        start = int(np.argmax(values != 0)) if (values != 0).any() else len(values)
        if start < len(values):
            rows, values = rows[start:], values[start:]
            runs.append((np.array([r["step"] for r in rows]), values))
    return runs


def _smooth(steps: np.ndarray, values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """A trailing running mean over ``window`` steps (over the steps so far at a run's start, so
    each curve starts where its part does), narrowed for short runs (at most a fifth of the run)."""
    width = max(1, min(window, len(values) // 5))
    total = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    first = np.maximum(index - width, 0)
    return steps, (total[index] - total[first]) / (index - first)


def training_log_figure(records: list[dict[str, Any]], window: int = 25, *, schedule: Schedule | None = None,
                        gate_open_iters: int | None = None,
                        history: Sequence[dict[str, Any]] = ()) -> plt.Figure | None:
    """The figure ``plot_training_log`` saves (returned open; None when there is nothing to draw)."""
    names = [k for k in dict.fromkeys(k for r in records for k in r) if k not in _SKIP]
    evaluated = [k for k in dict.fromkeys(k for r in history for k in r) if k not in _SKIP]
    if not records or not names:
        return None
    panel_of = {key: unit for unit, keys in UNITS.items() for key in keys}
    panels: dict[str, list[tuple[str, str]]] = {}
    for source, keys in (("log", names), ("eval", evaluated)):
        for key in keys:
            panels.setdefault(panel_of.get(key, "other"), []).append((source, key))
    order = [u for u in (*UNITS, "other") if u in panels]
    fig, axes = plt.subplots(len(order), 1, figsize=(13, 1.5 + 2.6 * len(order)), sharex=True, squeeze=False)
    colours = {key: f"C{i % 10}" for i, key in enumerate(dict.fromkeys([*names, *evaluated]))}
    for ax, unit in zip(axes[:, 0], order, strict=True):
        everything = []
        for source, key in panels[unit]:
            if source == "eval":
                points = [(r["step"], r[key]) for r in history if r.get(key) is not None]
                if points:
                    x, y = np.array(points, dtype=float).T
                    ax.plot(x, y, "s--", color=colours[key], markersize=4, linewidth=0.8,
                            label=f"{key} (held-out evaluation)")
                    everything.append(y)
                continue
            label = PART_TEXT.get(key, key)
            for steps, values in _segments(records, key):
                x, y = _smooth(steps, values, window)
                ax.plot(x, y, color=colours[key], label=label, marker="." if len(y) < 20 else None,
                        **({"lw": 3, "alpha": 0.45} if key == "loss" else {"lw": 1.1}))
                label = None  # one legend entry per part, however many phases it spans
                everything.append(y)
        finite = np.concatenate(everything) if everything else np.array([])
        finite = finite[np.isfinite(finite)]
        if unit.startswith("nats"):
            if finite.size and (finite > 0).all():
                ax.set_yscale("log")
            else:  # a continuous likelihood's NLL can go below 0
                ax.set_yscale("symlog", linthresh=1.0)
                ax.set_ylabel("nats per step (symlog)")
        elif unit == "per-pixel MSE" and finite.size and (finite > 0).all():
            ax.set_yscale("log")
        if not ax.get_ylabel():
            ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for step, text in phase_marks(schedule, gate_open_iters, records):
        for ax in axes[:, 0]:
            ax.axvline(step, color="0.35", linestyle=":", linewidth=1.2)
        axes[0, 0].text(step, 0.97, f" {text}", transform=axes[0, 0].get_xaxis_transform(), rotation=90,
                        fontsize=7, ha="right", va="top", color="0.2",
                        bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
    axes[-1, 0].set_xlabel(f"optimisation step (curves: running mean over up to {window} steps)")
    fig.suptitle("training log: one panel per unit; dotted lines mark the schedule's phases", fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_log(records: list[dict[str, Any]], path: str | Path, window: int = 25, *,
                      schedule: Schedule | None = None, gate_open_iters: int | None = None,
                      history: Sequence[dict[str, Any]] = ()) -> None:
    """``loss.png``: every logged part against the step, one panel per unit (nats, MSE, gate and
    rates, grid cells), each part's curve drawn per phase (the warm-up's and the main phase's
    objectives differ); the schedule's boundaries (``phase_marks``) as dotted lines; the held-out
    evaluations of ``history`` as squares."""
    fig = training_log_figure(records, window, schedule=schedule, gate_open_iters=gate_open_iters,
                              history=history)
    if fig is not None:
        _save(fig, path)


# --------------------------------------------------------------------------- state map


def plot_state_map(states: np.ndarray, positions: np.ndarray, path: str | Path) -> None:
    """The learned states s_t (first two dims) coloured by the true row and by the true column."""
    flat_states = states.reshape(-1, states.shape[-1])[:, :2]
    flat_positions = positions.reshape(-1, 2)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for axis, index, label in zip(axes, (0, 1), ("true row", "true column"), strict=False):
        points = axis.scatter(flat_states[:, 0], flat_states[:, 1], c=flat_positions[:, index],
                              cmap="viridis", s=6, alpha=0.6)
        fig.colorbar(points, ax=axis, label=label)
        axis.set_aspect("equal")
        axis.set_xlabel("s[0]")
        axis.set_ylabel("s[1]")
        axis.set_title(f"learned state, coloured by {label}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)

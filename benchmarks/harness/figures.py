"""The comparison's plots: one horizon figure per condition and an overview of every condition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.models import FLOOR_NAME
from benchmarks.harness.targets import GTMSM_NAME
from gtmsm_cli.files import atomic_path

BOUND_LINES = {FLOOR_NAME: ("black", "--"), "memorisation mean": ("tab:gray", ":"), "canvas oracle": ("tab:purple", "-.")}
"""The horizon figures' reference lines (colour, style), drawn as in ``gtmsm_model.plots``."""


ZERO = 1e-12
"""A mean below this is an exact zero (an oracle on revisited steps): drawn as such, not on the log axis."""


def model_colours(models: list[str]) -> dict[str, Any]:
    """One colour per model, the same in every figure of a run (bounds keep their line colours)."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    others = [m for m in models if m not in BOUND_LINES]
    colours: dict[str, Any] = {m: palette[i % len(palette)] for i, m in enumerate(others)}
    colours.update({m: BOUND_LINES[m][0] for m in models if m in BOUND_LINES})
    return colours


def _log_floor(values: list[float]) -> float:
    """The bottom of a log axis: half the smallest positive value shown (exact zeros are drawn there)."""
    positive = [v for v in values if v is not None and np.isfinite(v) and v > ZERO]
    return 0.5 * min(positive) if positive else 1e-6


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_condition(entries: list[dict[str, Any]], title: str, path: Path,
                   colours: dict[str, Any] | None = None) -> None:
    """Revisited and novel MSE against the steps after memorisation, one line per model; the VAE floor and
    the memorisation mean as reference lines; a model that is exactly 0 is drawn on the bottom edge and
    says so in the legend."""
    plt = _pyplot()
    colours = colours or model_colours([e["model"] for e in entries])
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    bottom = _log_floor([v for e in entries for part in ("horizon_revisited", "horizon_novel") for v in e[part]])
    for axis, part, label in ((axes[0], "horizon_revisited", "revisited steps"), (axes[1], "horizon_novel", "novel steps")):
        for e in entries:
            centres = [(a + b) / 2 for a, b in e["horizon_bins"]]
            values = np.array(e[part], dtype=float)
            if np.isnan(values).all():
                continue
            zero = bool(np.nanmax(values) <= ZERO)
            values = np.where(values <= ZERO, bottom, values)
            name = e["model"] + (" (exactly 0)" if zero else "")
            if e["model"] in BOUND_LINES:
                colour, style = BOUND_LINES[e["model"]]
                axis.plot(centres, values, style, color=colour, linewidth=1.6, label=f"bound: {name}")
                continue
            style = "--" if e["kind"] in ("oracle", "bound") else "-"
            axis.plot(centres, values, style, marker="o", markersize=2.5, label=name, color=colours.get(e["model"]),
                      linewidth=2.5 if e["model"] == GTMSM_NAME else 1.3)
        axis.set_yscale("log")
        axis.set_ylim(bottom=bottom * 0.8)
        axis.set_xlabel("steps after memorisation (bin centre)")
        axis.set_title(f"{title}: {label}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE (pixels in [0, 1]), mean over seeds")
    axes[1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)


def plot_overview(summary: list[dict[str, Any]], path: Path, colours: dict[str, Any] | None = None) -> None:
    """Revisited and novel MSE of every model on every condition, as bars; exact zeros are marked "0" on
    the bottom edge instead of a bar reaching down a log axis."""
    plt = _pyplot()
    conditions = list(dict.fromkeys(e["condition"] for e in summary))
    models = [m for m in dict.fromkeys(e["model"] for e in summary) if m != "oracle memory"]
    colours = colours or model_colours(models)
    lookup = {(e["condition"], e["model"]): e for e in summary}
    figure, axes = plt.subplots(1, 2, figsize=(16, 5.5), sharey=True)
    width = 0.8 / max(1, len(models))
    bottom = _log_floor([e[key] for e in summary for key in ("mse_revisited", "mse_novel")])
    for axis, key, label in ((axes[0], "mse_revisited", "revisited steps"), (axes[1], "mse_novel", "novel steps")):
        for index, model in enumerate(models):
            x = np.arange(len(conditions)) + (index - len(models) / 2) * width
            values = np.array([lookup[(c, model)][key] if (c, model) in lookup and lookup[(c, model)][key] is not None
                               else np.nan for c in conditions], dtype=float)
            zero = values <= ZERO
            axis.bar(x, np.where(zero, np.nan, values), width, label=model, color=colours.get(model), bottom=0)
            for position in x[zero]:
                axis.text(position, bottom, "0", ha="center", va="bottom", fontsize=6, color=colours.get(model))
        axis.set_yscale("log")
        axis.set_ylim(bottom=bottom)
        axis.set_xticks(np.arange(len(conditions)), conditions, rotation=20)
        axis.set_title(f"MSE on {label}, every condition (mean over seeds; '0': exactly zero)")
        axis.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE")
    axes[1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)

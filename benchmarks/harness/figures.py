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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_condition(entries: list[dict[str, Any]], title: str, path: Path) -> None:
    """Revisited and novel MSE against the steps after memorisation, one line per model."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, part, label in ((axes[0], "horizon_revisited", "revisited steps"), (axes[1], "horizon_novel", "novel steps")):
        for e in entries:
            centres = [(a + b) / 2 for a, b in e["horizon_bins"]]
            values = np.array(e[part], dtype=float)
            values[~(values > 0)] = np.nan  # exact zeros (oracles on revisited steps) cannot sit on a log axis
            if np.isnan(values).all():
                continue
            if e["model"] in BOUND_LINES:
                colour, style = BOUND_LINES[e["model"]]
                axis.plot(centres, values, style, color=colour, linewidth=1.6, label=f"bound: {e['model']}")
                continue
            style = "--" if e["kind"] in ("oracle", "bound") else "-"
            axis.plot(centres, values, style, marker="o", markersize=2.5, label=e["model"],
                      linewidth=2.5 if e["model"] == GTMSM_NAME else 1.3)
        axis.set_yscale("log")
        axis.set_xlabel("steps after memorisation (bin centre)")
        axis.set_title(f"{title}: {label}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE (pixels in [0, 1]), mean over seeds")
    axes[1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)


def plot_overview(summary: list[dict[str, Any]], path: Path) -> None:
    """Revisited and novel MSE of every model on every condition, as bars."""
    plt = _pyplot()
    conditions = list(dict.fromkeys(e["condition"] for e in summary))
    models = [m for m in dict.fromkeys(e["model"] for e in summary) if m != "oracle memory"]
    lookup = {(e["condition"], e["model"]): e for e in summary}
    figure, axes = plt.subplots(1, 2, figsize=(15, 5.5), sharey=True)
    width = 0.8 / max(1, len(models))
    for axis, key, label in ((axes[0], "mse_revisited", "revisited steps"), (axes[1], "mse_novel", "novel steps")):
        for index, model in enumerate(models):
            values = [lookup[(c, model)][key] if (c, model) in lookup else np.nan for c in conditions]
            values = [v if v is not None and v > 0 else np.nan for v in values]
            axis.bar(np.arange(len(conditions)) + (index - len(models) / 2) * width, values, width, label=model)
        axis.set_yscale("log")
        axis.set_xticks(np.arange(len(conditions)), conditions, rotation=20)
        axis.set_title(f"MSE on {label}, every condition (mean over seeds)")
        axis.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE")
    axes[1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)

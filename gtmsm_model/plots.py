"""Figures: error vs horizon, a prediction figure in the style of Fig. 2 of the GTM-SM paper
(Fraccaro et al., ICML 2018), the learned s-map, and a prediction GIF. Headless (matplotlib's Agg
backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from gtmsm_model.evaluate import HorizonCurve


def plot_horizon(curves: dict[str, HorizonCurve], path: str | Path, title: str = "") -> None:
    """One line per model; ``curves[name]`` is that model's ``HorizonCurve``."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, label in zip(axes, ("mse_revisited", "mse_novel"), ("revisited steps", "novel steps"), strict=False):
        for name, curve in curves.items():
            centres = [(a + b) / 2 for a, b in curve.bins]
            values = [np.nan if v is None else v for v in getattr(curve, key)]
            ax.plot(centres, values, marker="o", label=name)
        ax.set_title(label)
        ax.set_xlabel("steps after memorisation")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MSE per pixel")
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_log(records: list[dict[str, Any]], path: str | Path, window: int = 25) -> None:
    """Every logged loss part against the step, one panel per phase: a running mean over ``window``
    steps, narrowed for short phases (at most a fifth of the phase, so a 12-step phase still draws
    a curve), and points where a phase has too few steps for a line."""
    phases = [phase for phase in ("vae", "main") if any(r.get("phase") == phase for r in records)]
    if not phases:
        return
    figure, axes = plt.subplots(1, len(phases), figsize=(5.5 * len(phases), 3.6), squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        rows = [r for r in records if r.get("phase") == phase]
        steps = np.array([r["step"] for r in rows])
        names = [k for k in rows[0] if k not in ("step", "phase", "seconds")]
        for name in names:
            values = np.array([r.get(name, np.nan) for r in rows], dtype=float)
            width = max(1, min(window, len(values) // 5))
            smooth = np.convolve(values, np.ones(width) / width, mode="valid")
            ax.plot(steps[len(steps) - len(smooth):], smooth, label=name, lw=1,
                    marker="." if len(smooth) < 20 else None)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("step")
        ax.set_title(f"{phase} phase")
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def assemble_canvas(crops: np.ndarray, positions: np.ndarray, image_size: int | tuple[int, int],
                    step_size: int) -> np.ndarray:
    """Average crops (N, h, w, C) placed at their grid positions (N, 2) into an image of
    ``image_size`` (a side, or (height, width)); unseen = grey."""
    crop = crops.shape[1]
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    total = np.zeros((height, width, crops.shape[-1]))
    count = np.zeros((height, width, 1))
    for pixels, (row, col) in zip(crops, positions, strict=False):
        top, left = row * step_size, col * step_size
        total[top:top + crop, left:left + crop] += pixels
        count[top:top + crop, left:left + crop] += 1
    canvas = np.full_like(total, 0.5)
    np.divide(total, count, out=canvas, where=count > 0)
    return canvas


def plot_prediction_figure(image: np.ndarray, positions: np.ndarray, observations: np.ndarray,
                           predicted: np.ndarray, tau: int, step_size: int, path: str | Path,
                           frames: int = 12) -> None:
    """The GTM-SM paper's Fig. 2 for one rollout: the image with the window path (memorisation in
    blue, prediction in red), true vs predicted crops along the prediction phase, the canvas seen
    during memorisation, and the canvas assembled from the predictions."""
    image_size, crop = image.shape[:2], observations.shape[1]
    truth = observations[tau:].astype(np.float32) / 255.0
    picks = np.linspace(0, len(predicted) - 1, frames).astype(int)
    fig = plt.figure(figsize=(3 + frames * 0.9, 4.6))
    grid = fig.add_gridspec(3, frames + 3, height_ratios=[1, 1, 2.2])

    ax = fig.add_subplot(grid[:, :3])
    ax.imshow(image, interpolation="nearest")
    centre = positions * step_size + (crop - 1) / 2
    ax.plot(centre[:tau, 1], centre[:tau, 0], color="tab:blue", lw=1, alpha=0.7, label="memorisation")
    ax.plot(centre[tau:, 1], centre[tau:, 0], color="tab:red", lw=1, alpha=0.7, label="prediction")
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title("image and path", fontsize=8)
    ax.axis("off")
    for column, index in enumerate(picks):
        for row, (crops, label) in enumerate(((truth, "true"), (predicted, "predicted"))):
            axis = fig.add_subplot(grid[row, 3 + column])
            axis.imshow(np.clip(crops[index], 0, 1), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=7)
            if row == 0:
                axis.set_title(f"t={tau + index + 1}", fontsize=6)
    seen = assemble_canvas(observations[:tau].astype(np.float32) / 255.0, positions[:tau], image_size, step_size)
    canvas = assemble_canvas(predicted, positions[tau:], image_size, step_size)
    for column, (picture, label) in enumerate(((seen, "seen in memorisation"), (canvas, "assembled predictions"))):
        axis = fig.add_subplot(grid[2, 3 + column * 3:6 + column * 3])
        axis.imshow(picture, interpolation="nearest")
        axis.set_title(label, fontsize=7)
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_prediction_gif(observations: np.ndarray, predicted: np.ndarray, tau: int, path: str | Path,
                        scale: int = 16, duration_ms: int = 80) -> None:
    """A GIF of the prediction phase: true crop on the left, predicted crop on the right."""
    from PIL import Image

    truth = observations[tau:].astype(np.float32) / 255.0
    frames = []
    for true_crop, predicted_crop in zip(truth, predicted, strict=False):
        gap = np.ones((true_crop.shape[0], 1, 3))
        pair = np.concatenate([true_crop, gap, np.clip(predicted_crop, 0, 1)], axis=1)
        picture = Image.fromarray((pair * 255).round().astype(np.uint8))
        frames.append(picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)


def save_prediction_strip(observations: np.ndarray, predicted: np.ndarray, tau: int, path: str | Path,
                          frames: int = 16, scale: int = 8) -> None:
    """A PNG strip: true crops (top row) over predicted crops (bottom row) at evenly spaced steps."""
    from PIL import Image

    truth = observations[tau:].astype(np.float32) / 255.0
    picks = np.linspace(0, len(predicted) - 1, frames).astype(int)
    crop = truth.shape[1]
    strip = np.ones((2 * crop + 1, frames * (crop + 1) - 1, 3))
    for column, index in enumerate(picks):
        left = column * (crop + 1)
        strip[:crop, left:left + crop] = truth[index]
        strip[crop + 1:, left:left + crop] = np.clip(predicted[index], 0, 1)
    picture = Image.fromarray((strip * 255).round().astype(np.uint8))
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)

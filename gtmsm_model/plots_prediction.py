"""Figures of one predicted rollout: the GIF of ``gtmsm predict``, its PNG strip, and
``prediction.png`` (in the style of Fig. 2 of the GTM-SM paper, Fraccaro et al., ICML 2018).

Every one of them labels truth and prediction, counts the predicted steps, and marks each
predicted step *revisited* (its true position was seen during memorisation) or *novel*, as the
evaluation does (``evaluate.revisited_mask``). Files are written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gtmsm_cli.files import atomic_path  # noqa: E402

REVISITED_COLOR = (40, 170, 80)
"""Marker of a revisited predicted step (green)."""
NOVEL_COLOR = (235, 120, 20)
"""Marker of a novel predicted step (orange)."""


def step_kinds(positions: np.ndarray | None, tau: int, horizon: int) -> np.ndarray | None:
    """(T, 2) true positions of one rollout → (horizon,) bool, True where the predicted step's
    position was seen during memorisation; None without positions."""
    if positions is None:
        return None
    from gtmsm_model.evaluate import revisited_mask

    mask = revisited_mask(np.asarray(positions)[None], tau)[0]
    return mask[:horizon]


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


def prediction_figure(image: np.ndarray, positions: np.ndarray, observations: np.ndarray,
                      predicted: np.ndarray, tau: int, step_size: int, frames: int = 12) -> plt.Figure:
    """The figure ``plot_prediction_figure`` saves (returned open, for inspection)."""
    image_size, crop = image.shape[:2], observations.shape[1]
    truth = observations[tau:].astype(np.float32) / 255.0
    horizon = len(predicted)
    revisited = step_kinds(positions, tau, horizon)
    picks = np.unique(np.linspace(0, horizon - 1, min(frames, horizon)).astype(int))
    frames = len(picks)
    fig = plt.figure(figsize=(3.4 + max(frames, 6) * 0.9, 5.0))
    grid = fig.add_gridspec(3, max(frames, 6) + 3, height_ratios=[1, 1, 2.2])

    ax = fig.add_subplot(grid[:, :3])
    ax.imshow(image, interpolation="nearest")
    centre = positions * step_size + (crop - 1) / 2
    ax.plot(centre[:tau, 1], centre[:tau, 0], color="tab:blue", lw=1, alpha=0.7, label="memorisation path")
    ax.plot(centre[tau:, 1], centre[tau:, 0], color="tab:red", lw=1, alpha=0.7, label="prediction path")
    novel = ~revisited
    if novel.any():
        ax.scatter(centre[tau:][novel, 1], centre[tau:][novel, 0], s=14, marker="x",
                   color=np.array(NOVEL_COLOR) / 255, label="novel predicted step", zorder=3)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(f"image and path (τ = {tau} memorised,\n{horizon} predicted, {int(novel.sum())} novel)", fontsize=8)
    ax.axis("off")
    for column, index in enumerate(picks):
        kind, colour = ("revisited", REVISITED_COLOR) if revisited[index] else ("novel", NOVEL_COLOR)
        for row, (crops, label) in enumerate(((truth, "truth"), (predicted, "prediction"))):
            axis = fig.add_subplot(grid[row, 3 + column])
            axis.imshow(np.clip(crops[index], 0, 1), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_edgecolor(np.array(colour) / 255)
                spine.set_linewidth(2.5)
            if column == 0:
                axis.set_ylabel(label, fontsize=8)
            if row == 0:
                axis.set_title(f"step {index + 1}\n{kind}", fontsize=6, color=np.array(colour) / 255)
    seen = assemble_canvas(observations[:tau].astype(np.float32) / 255.0, positions[:tau], image_size, step_size)
    canvas = assemble_canvas(predicted, positions[tau:], image_size, step_size)
    for column, (picture, label) in enumerate(((seen, "seen in memorisation (grey: unseen)"),
                                               (canvas, "predictions at their true places"))):
        axis = fig.add_subplot(grid[2, 3 + column * 3:6 + column * 3])
        axis.imshow(picture, interpolation="nearest")
        axis.set_title(label, fontsize=7)
        axis.axis("off")
    fig.suptitle("truth (top row) vs prediction (bottom row); frame colour: green = revisited, orange = novel",
                 fontsize=8)
    fig.tight_layout()
    return fig


def plot_prediction_figure(image: np.ndarray, positions: np.ndarray, observations: np.ndarray,
                           predicted: np.ndarray, tau: int, step_size: int, path: str | Path,
                           frames: int = 12) -> None:
    """The GTM-SM paper's Fig. 2 for one rollout: the image with the window path (memorisation in
    blue, prediction in red, novel predicted steps crossed), truth vs predicted crops at evenly
    spaced predicted steps (step counter, frames coloured revisited/novel), the canvas seen during
    memorisation, and the predictions pasted at their true places."""
    fig = prediction_figure(image, positions, observations, predicted, tau, step_size, frames)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def gif_frames(observations: np.ndarray, predicted: np.ndarray, tau: int,
               positions: np.ndarray | None = None, scale: int = 16) -> list:
    """One PIL image per predicted step: a header with the step counter and the revisited/novel
    marker, then the true crop (labelled "truth") beside the predicted crop ("prediction")."""
    from PIL import Image, ImageDraw

    truth = observations[tau:].astype(np.float32) / 255.0
    horizon = len(predicted)
    revisited = step_kinds(positions, tau, horizon)
    font = _font(12)
    # Tiles wide enough for their labels, a header wide enough for the longest counter and the
    # marker: every frame shows its own step number, so no two consecutive frames are identical
    # (GIF writers merge identical ones).
    scale = max(scale, math.ceil((font.getlength("prediction") + 4) / truth.shape[2]))
    crop_h, crop_w = truth.shape[1] * scale, truth.shape[2] * scale
    gap = max(4, scale // 2)
    header = 36
    counter_width = font.getlength(f"step {horizon}/{horizon} after memorising {tau}") + font.getlength("revisited")
    width, height = max(2 * crop_w + 3 * gap, math.ceil(counter_width) + 4 * gap), header + crop_h + gap
    frames = []
    for index in range(horizon):
        frame = Image.new("RGB", (width, height), (24, 24, 24))
        draw = ImageDraw.Draw(frame)
        for column, (crops, label) in enumerate(((truth, "truth"), (predicted, "prediction"))):
            pixels = (np.clip(crops[index], 0, 1) * 255).round().astype(np.uint8)
            tile = Image.fromarray(pixels).resize((crop_w, crop_h), Image.NEAREST)
            left = (width - 2 * crop_w - gap) // 2 + column * (crop_w + gap)
            frame.paste(tile, (left, header))
            draw.text((left, header - 2), label, fill=(235, 235, 235), font=font, anchor="ld")
        counter = f"step {index + 1}/{horizon} after memorising {tau}"
        draw.text((gap, 2), counter, fill=(235, 235, 235), font=font, anchor="la")
        if revisited is not None:
            kind, colour = ("revisited", REVISITED_COLOR) if revisited[index] else ("novel", NOVEL_COLOR)
            right = width - gap
            box = draw.textbbox((right, 2), kind, font=font, anchor="ra")
            draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=colour)
            draw.text((right, 2), kind, fill=(255, 255, 255), font=font, anchor="ra")
            left = (width - 2 * crop_w - gap) // 2 + crop_w + gap
            draw.rectangle((left - 2, header - 2, left + crop_w + 1, header + crop_h + 1), outline=colour, width=2)
        frames.append(frame)
    return frames


def save_prediction_gif(observations: np.ndarray, predicted: np.ndarray, tau: int, path: str | Path,
                        scale: int = 16, duration_ms: int = 80, *, positions: np.ndarray | None = None) -> None:
    """A GIF of the prediction phase, exactly one frame per predicted step (see ``gif_frames``;
    ``positions``: the rollout's (T, 2) true positions, for the revisited/novel marker)."""
    frames = gif_frames(observations, predicted, tau, positions, scale)
    with atomic_path(path) as tmp:
        # The step counter makes consecutive frames differ, so the writer merges none of them.
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)


def save_prediction_strip(observations: np.ndarray, predicted: np.ndarray, tau: int, path: str | Path,
                          frames: int = 16, scale: int = 8, *, positions: np.ndarray | None = None) -> None:
    """A PNG strip: true crops (top row, "truth") over predicted crops (bottom row, "prediction")
    at evenly spaced predicted steps, each column headed by its step number and, given
    ``positions``, framed green (revisited) or orange (novel)."""
    from PIL import Image, ImageDraw

    truth = observations[tau:].astype(np.float32) / 255.0
    horizon = len(predicted)
    revisited = step_kinds(positions, tau, horizon)
    picks = np.unique(np.linspace(0, horizon - 1, min(frames, horizon)).astype(int))
    crop = truth.shape[1] * scale
    border, label_width, header = max(2, scale // 3), 9 * max(8, scale), max(16, 2 * scale)
    cell = crop + 2 * border + 2
    picture = Image.new("RGB", (label_width + len(picks) * cell, header + 2 * cell), (24, 24, 24))
    draw = ImageDraw.Draw(picture)
    font = _font(max(10, header * 2 // 3))
    for row, label in enumerate(("truth", "prediction")):
        draw.text((4, header + row * cell + cell // 2), label, fill=(235, 235, 235), font=font, anchor="lm")
    draw.text((4, header // 2), "step", fill=(235, 235, 235), font=font, anchor="lm")
    for column, index in enumerate(picks):
        left = label_width + column * cell
        draw.text((left + cell // 2, header // 2), str(index + 1), fill=(235, 235, 235), font=font, anchor="mm")
        for row, crops in enumerate((truth, predicted)):
            top = header + row * cell
            if revisited is not None:
                colour = REVISITED_COLOR if revisited[index] else NOVEL_COLOR
                draw.rectangle((left + 1, top + 1, left + cell - 2, top + cell - 2), fill=colour)
            pixels = (np.clip(crops[index], 0, 1) * 255).round().astype(np.uint8)
            picture.paste(Image.fromarray(pixels).resize((crop, crop), Image.NEAREST),
                          (left + 1 + border, top + 1 + border))
    with atomic_path(path) as tmp:
        picture.save(tmp)

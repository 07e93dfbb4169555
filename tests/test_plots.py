"""The figures explain themselves: bound lines on the horizon plot, one panel per unit and the
phase boundaries on loss.png, labelled prediction figures with one GIF frame per predicted step,
maze walls that show on any image, and every figure file written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest

from gtmsm_model import plots
from gtmsm_model.evaluate import HorizonCurve
from gtmsm_model.plots import BoundLine, horizon_figure, phase_marks, training_log_figure


def _rollout(horizon: int = 20, tau: int = 6, crop: int = 4):
    """One rollout: constant crops, a walk along row 0 (novel), then back over the memorised cells."""
    steps = tau + horizon
    observations = np.full((steps, crop, crop, 3), 100, np.uint8)
    cols = np.concatenate([np.arange(tau), np.arange(tau, tau + horizon // 2), np.arange(horizon - horizon // 2) % tau])
    positions = np.stack([np.zeros(steps, int), cols], axis=1)
    predicted = np.full((horizon, crop, crop, 3), 0.5, np.float32)  # identical predictions
    return observations, positions, predicted, tau


# --------------------------------------------------------------------------- GIF and strip


@pytest.mark.parametrize("with_positions", [True, False])
def test_the_gif_has_one_frame_per_predicted_step_even_when_predictions_are_identical(tmp_path: Path,
                                                                                   with_positions: bool) -> None:
    from PIL import Image

    observations, positions, predicted, tau = _rollout()
    path = tmp_path / "prediction.gif"
    plots.save_prediction_gif(observations, predicted, tau, path, scale=4,
                              positions=positions if with_positions else None)
    with Image.open(path) as gif:
        assert gif.n_frames == len(predicted) == 20


def test_gif_frames_mark_revisited_and_novel_steps_from_the_true_positions() -> None:
    from gtmsm_model.plots_prediction import NOVEL_COLOR, REVISITED_COLOR, gif_frames, step_kinds

    observations, positions, predicted, tau = _rollout()
    kinds = step_kinds(positions, tau, len(predicted))
    assert kinds[:10].tolist() == [False] * 10 and kinds[10:].all()  # walked on, then back over the memorised row

    def has(frame, colour) -> bool:
        return bool((np.asarray(frame) == np.array(colour, np.uint8)).all(-1).any())

    frames = gif_frames(observations, predicted, tau, positions, scale=4)
    assert has(frames[0], NOVEL_COLOR) and not has(frames[0], REVISITED_COLOR)
    assert has(frames[-1], REVISITED_COLOR) and not has(frames[-1], NOVEL_COLOR)


def test_the_strip_and_the_prediction_figure_mark_the_step_kinds(tmp_path: Path) -> None:
    from PIL import Image

    from gtmsm_model.plots_prediction import NOVEL_COLOR, REVISITED_COLOR, prediction_figure

    observations, positions, predicted, tau = _rollout()
    plots.save_prediction_strip(observations, predicted, tau, tmp_path / "strip.png", frames=8,
                                positions=positions)
    strip = np.asarray(Image.open(tmp_path / "strip.png").convert("RGB"))
    for colour in (REVISITED_COLOR, NOVEL_COLOR):
        assert (strip == np.array(colour, np.uint8)).all(-1).any()

    image = np.full((12, 40, 3), 100, np.uint8)
    figure = prediction_figure(image, positions, observations, predicted, tau, step_size=1, frames=6)
    texts = [ax.get_title() for ax in figure.axes] + [ax.get_ylabel() for ax in figure.axes]
    assert "truth" in texts and "prediction" in texts
    titles = [t for t in texts if t.startswith("step ")]
    assert titles[0] == "step 1\nnovel" and titles[-1] == "step 20\nrevisited"
    import matplotlib.pyplot as plt

    plt.close(figure)


# --------------------------------------------------------------------------- horizon


def _curve() -> HorizonCurve:
    return HorizonCurve(bins=[[1, 32], [33, 64]], mse=[0.002, 0.003], mse_revisited=[0.0011, 0.0012],
                        mse_novel=[0.004, 0.005])


def test_the_horizon_plot_draws_the_bound_lines_with_unrounded_values() -> None:
    bounds = [BoundLine("VAE floor (reconstruction): x", 0.00093371, 0.0012345, "black", "--"),
              BoundLine("memorisation mean (trivial bar)", [0.02, 0.021], [0.03, 0.031], "gray", ":"),
              BoundLine("canvas oracle (novel limit): y", None, [0.0041, 0.0042], "purple", "-.")]
    figure = horizon_figure({"GTM-SM": _curve()}, "t", bounds)
    revisited, novel = figure.axes[:2]
    lines = {line.get_label(): line for line in revisited.get_lines()}
    floor = lines["VAE floor (reconstruction): 0.0009337"]  # four significant digits, not 0.0009
    assert np.allclose(floor.get_ydata(), 0.00093371)
    assert np.allclose(lines["memorisation mean (trivial bar)"].get_ydata(), [0.02, 0.021])
    assert "canvas oracle (novel limit): 0 here (off the log axis)" in lines
    novel_lines = {line.get_label(): line for line in novel.get_lines()}
    assert np.allclose(novel_lines["VAE floor (reconstruction): 0.001234"].get_ydata(), 0.0012345)
    assert np.allclose(novel_lines["canvas oracle (novel limit): y"].get_ydata(), [0.0041, 0.0042])
    assert np.allclose(novel_lines["GTM-SM"].get_ydata(), [0.004, 0.005])
    legend = [t.get_text() for t in revisited.get_legend().get_texts()]
    assert any(t.startswith("VAE floor") for t in legend)
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_horizon_bounds_of_an_evaluation_match_its_metrics() -> None:
    import torch

    from gtmsm_env.rollouts import collect_rollouts
    from gtmsm_model.evaluate import evaluate_gtmsm
    from gtmsm_model.model import GTMSM, GTMSMConfig

    torch.manual_seed(0)
    rollouts = collect_rollouts(3, 40, seed=0)
    model = GTMSM(GTMSMConfig(z_dim=4, vae_hidden=16, gate_hidden=4))
    evaluation = evaluate_gtmsm(model, rollouts, 24, bin_size=8)
    floor, mean, oracle = plots.horizon_bounds(evaluation, rollouts, 24)
    assert (floor.revisited, floor.novel) == (evaluation.diagnostics.vae_mse_revisited,
                                              evaluation.diagnostics.vae_mse_novel)
    assert len(mean.revisited) == len(mean.novel) == len(evaluation.scores.horizon.bins) == 2
    assert oracle.revisited is None and len(oracle.novel) == 2


def test_figures_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "horizon.png"
    plots.plot_horizon({"GTM-SM": _curve()}, path)
    before = path.read_bytes()
    assert before.startswith(b"\x89PNG")

    def broken(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_horizon({"GTM-SM": _curve()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["horizon.png"]  # no temporary file left


# --------------------------------------------------------------------------- loss.png


def _log(warmup: int = 10, main: int = 30, predicted_from: int = 12) -> list[dict]:
    records = [{"step": s, "phase": "vae", "seconds": 0.0, "loss": 1000.0 - s, "nll": 990.0 - s,
                "kl_prior": 10.0, "mse": 0.01} for s in range(1, warmup + 1)]
    for i in range(main):
        records.append({"step": warmup + i + 1, "phase": "main", "seconds": 0.0, "loss": 800.0, "nll": 700.0,
                        "kl_prior": 5.0, "kl_memory": 50.0, "kl_predict": 0.0 if i < predicted_from else 40.0,
                        "mse": 0.005, "gate_moving": 0.9})
    return records


def test_the_loss_plot_has_one_labelled_panel_per_unit() -> None:
    history = [{"step": 25, "seconds": 1.0, "mse_revisited": 0.004, "knn_hit_rate": 0.9, "smap_rms": 0.5}]
    figure = training_log_figure(_log(), window=3, history=history)
    labels = [ax.get_ylabel() for ax in figure.axes]
    assert labels == ["nats per step (log scale)", "per-pixel MSE", "gate / rate (0-1)", "grid cells"]
    nats, mse, gate, cells = figure.axes
    assert {line.get_label() for line in nats.get_lines() if not line.get_label().startswith("_")} == {
        plots.PART_TEXT[k] for k in ("loss", "nll", "kl_prior", "kl_memory", "kl_predict")}
    assert {line.get_label() for line in mse.get_lines()} >= {plots.PART_TEXT["mse"], "mse_revisited (held-out evaluation)"}
    assert plots.PART_TEXT["gate_moving"] in {line.get_label() for line in gate.get_lines()}
    assert nats.get_yscale() == "log" and figure.axes[-1].get_xlabel().startswith("optimisation step")
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_a_part_that_starts_mid_run_starts_at_its_boundary_not_from_zero() -> None:
    figure = training_log_figure(_log(), window=3)
    nats = figure.axes[0]
    kl_predict = next(line for line in nats.get_lines() if line.get_label() == plots.PART_TEXT["kl_predict"])
    assert kl_predict.get_xdata()[0] == 10 + 12 + 1 and (kl_predict.get_ydata() == 40.0).all()
    marks = dict((text, step) for step, text in phase_marks(None, None, _log()))
    assert marks == {"VAE warm-up → main": 10, "sequences > τ: kl_predict starts": 22}
    assert {10, 22} <= {line.get_xdata()[0] for line in nats.get_lines()}  # drawn as vertical lines
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_phase_marks_follow_the_schedule() -> None:
    from gtmsm_model.config import Schedule

    schedule = Schedule(vae_warmup_iters=100, iterations=200, seq_len=40, tau=32, curriculum_start=12,
                        curriculum_iters=80)
    marks = {text: step for step, text in phase_marks(schedule, gate_open_iters=20)}
    first_long = next(i for i in range(200) if schedule.sequence_length(i) > 32)
    assert marks == {"VAE warm-up → main": 100, "gate free": 120,
                     "sequences > τ: kl_predict starts": 100 + first_long, "curriculum end": 180}


# --------------------------------------------------------------------------- maze walls


@pytest.mark.parametrize("background", [(255, 0, 255), (128, 0, 128), (255, 255, 255), (0, 0, 0), (128, 128, 128)])
def test_maze_walls_contrast_with_any_uniform_image(background: tuple[int, int, int]) -> None:
    from gtmsm_env import ImageNavEnv
    from gtmsm_env.drawing import draw_frame

    env = ImageNavEnv(walls="maze", wall_density=0.3, render_mode="rgb_array", render_scale=8)
    grey = np.full((32, 32, 3), 100, np.uint8)
    env.reset(seed=2, options={"image": grey})
    wall = (draw_frame(grey, env.position, env.geometry, 8, env.blocked_moves)
            != draw_frame(grey, env.position, env.geometry, 8, None)).any(-1)  # where walls are drawn
    assert wall.sum() > 100
    image = np.broadcast_to(np.array(background, np.uint8), (32, 32, 3)).copy()
    tones = draw_frame(image, env.position, env.geometry, 8, env.blocked_moves)[wall]
    # Every wall pixel is one of the two tones and each tone covers a real part of the wall, so
    # whatever the background, much of the wall is at least 127 levels away from it.
    core, outline = (tones == 255).all(-1), (tones == 0).all(-1)
    assert (core | outline).all() and core.mean() > 0.2 and outline.mean() > 0.2
    far = np.abs(tones.astype(int) - np.array(background)).max(-1) >= 127
    assert far.mean() > 0.2


def test_the_play_window_draws_the_walls_two_toned(monkeypatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    from gtmsm_env.render import PlayView, Scene

    image = np.broadcast_to(np.array([255, 0, 255], np.uint8), (32, 32, 3)).copy()
    scene = Scene(image=image, crop=image[:8, :8], position=(0, 0), crop_size=8, step_size=3,
                  maze_segments=[((10.0, 4.0), (10.0, 20.0))])
    view = PlayView(128)
    try:
        pixels = pygame.surfarray.array3d(view.draw(scene)).transpose(1, 0, 2)[:128, :128]
    finally:
        view.close()
    assert (pixels == 255).all(-1).sum() > 10 and (pixels == 0).all(-1).sum() > 10

"""The worst case beside the average: per-rollout revisited MSE and the rollouts that lost their place,
and the no-learning reference (``baselines.localise_lookup``) on hand-made walks."""

from __future__ import annotations

import numpy as np

from gtmsm_env import collect_rollouts
from gtmsm_model.baselines import LocaliseCanvas, LocaliseLookup, MemorisationMean
from gtmsm_model.evaluate import format_table, prediction_metrics, revisited_mask

STAY, UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3, 4


def test_per_rollout_metrics_equal_a_direct_numpy_computation_on_a_tiny_rollout() -> None:
    rollouts = collect_rollouts(5, 30, seed=3)
    tau = 20
    rng = np.random.default_rng(0)
    predicted = rng.random((5, 10, 8, 8, 3)).astype(np.float32)
    revisited = revisited_mask(rollouts.positions, tau)
    perfect = int(np.flatnonzero(revisited.any(1))[0])
    predicted[perfect] = rollouts.observations[perfect, tau:] / 255.0  # one perfect rollout
    scores = prediction_metrics(predicted, rollouts, tau)

    target = rollouts.observations[:, tau:] / 255.0
    own, trivial = [], []
    for b in range(5):
        steps = np.flatnonzero(revisited[b])
        if len(steps) == 0:
            continue
        own.append(np.mean([((predicted[b, t] - target[b, t]) ** 2).mean() for t in steps]))
        mean_crop = (rollouts.observations[b, :tau] / 255.0).mean(0)
        trivial.append(np.mean([((mean_crop - target[b, t]) ** 2).mean() for t in steps]))
    own, trivial = np.array(own), np.array(trivial)
    assert scores.revisited_max == np.float32(own.max()) or abs(scores.revisited_max - own.max()) < 1e-6
    assert abs(scores.revisited_p99 - np.percentile(own, 99)) < 1e-6
    assert scores.rollouts_lost == int((own > trivial).sum()) > 0  # random crops are worse than the mean
    assert min(own) < 1e-12  # the perfect rollout
    assert "lost" in format_table_for(scores)


def format_table_for(scores) -> str:
    from gtmsm_model.evaluate import GTMSMDiagnostics, GTMSMEvaluation

    nan = float("nan")
    diagnostics = GTMSMDiagnostics(*([nan] * 15), fraction_novel_from_canvas=None, nll_bound_nats_per_step=nan)
    return format_table(GTMSMEvaluation(scores, diagnostics))


def test_the_memorisation_mean_never_counts_as_worse_than_itself() -> None:
    rollouts = collect_rollouts(6, 40, seed=1)
    predicted = MemorisationMean().predict(rollouts.observations[:, :24], rollouts.actions, 24)
    assert prediction_metrics(predicted, rollouts, 24).rollouts_lost == 0


MOVES = {STAY: (0, 0), UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}


def crops_of(image: np.ndarray, actions: list[int], start=(0, 0), cells: int = 9) -> np.ndarray:
    position, crops = start, []
    for action in actions:
        row, col = position[0] + MOVES[action][0], position[1] + MOVES[action][1]
        if 0 <= row < cells and 0 <= col < cells:
            position = (row, col)
        crops.append(image[3 * position[0]:3 * position[0] + 8, 3 * position[1]:3 * position[1] + 8])
    return np.stack(crops)


def test_no_learning_reference_is_exact_on_a_hand_made_textured_walk() -> None:
    # A textured image (every free move changes the crop) walked in a snake over every cell, bumping the
    # border at each turn, then 60 random actions: every predicted cell and edge is known or at the edge
    # of the visited box, so both variants predict every crop exactly.
    image = (np.random.default_rng(6).random((32, 32, 3)) * 255).astype(np.uint8)
    snake = [STAY]
    for row in range(9):
        snake += [RIGHT if row % 2 == 0 else LEFT] * 9 + [DOWN]  # the 9th move of each row bumps the border
    future = np.random.default_rng(7).integers(0, 5, 60).tolist()
    actions = np.array([snake + future])
    observations = crops_of(image, snake + future)[None]
    tau = len(snake)
    target = observations[:, tau:] / 255.0
    for model in (LocaliseLookup(), LocaliseCanvas()):
        predicted = model.predict(observations[:, :tau], actions, tau)
        assert np.abs(predicted - target).max() < 1e-6, model.name


def test_no_learning_reference_takes_a_free_move_over_a_flat_view_for_a_wall() -> None:
    # Its known weakness, stated in its docstring: a uniform image makes every move look blocked.
    from gtmsm_model.baselines.localise_lookup import localise

    pixels = np.full((4, 8, 8, 3), 0.5, np.float32)
    cells, blocked = localise(pixels, np.array([STAY, RIGHT, RIGHT, DOWN]))
    assert blocked.tolist() == [False, True, True, True] and (cells == 0).all()

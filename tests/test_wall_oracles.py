"""benchmarks/wall_oracles.py: the same checkpoint evaluated with its own walls, with the true walls while
imagining, and with the true walls throughout; its inputs checked before any evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_script_inputs import forbid, load_script, usage_error, write_checkpoint

from gtmsm_env import World, collect_rollouts
from gtmsm_model.checkpoint import load_model


def test_bad_inputs_are_one_error_line_before_any_evaluation(tmp_path, monkeypatch, capsys):
    script = load_script("wall_oracles")
    forbid(monkeypatch, script, "evaluate_modes", "condition_rollouts")
    usage_error(capsys, lambda: script.main([]), "wall_oracles.py", "--checkpoint is required")
    usage_error(capsys, lambda: script.main(["--checkpoint", str(tmp_path / "none.pt")]), "wall_oracles.py",
                "--checkpoint: ", "not found")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    usage_error(capsys, lambda: script.main(["--checkpoint", str(tmp_path / "junk.pt")]), "wall_oracles.py",
                "--checkpoint: ", "not a readable GTM-SM checkpoint")
    checkpoint = write_checkpoint(tmp_path / "model.pt")
    (tmp_path / "taken.md").mkdir()
    usage_error(capsys, lambda: script.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "taken")]),
                "wall_oracles.py", "--out: ", "taken.md is a folder")
    usage_error(capsys, lambda: script.main(["--checkpoint", str(checkpoint), "--conditions", "centre", "centre"]),
                "wall_oracles.py", "--conditions centre centre: centre is given more than once")


def test_the_true_walls_decide_every_move_and_the_model_gets_its_own_back(tmp_path):
    script = load_script("wall_oracles")
    model = load_model(write_checkpoint(tmp_path / "model.pt")).eval()
    rollouts = collect_rollouts(3, 60, seed=4, world=World(start="random"))
    tau = 30
    with torch.no_grad():
        results = script.evaluate_modes(model, rollouts, tau)
    assert list(results) == ["model", "true-imagined", "true-walls"]  # the edge wall model tracks its walks
    # An untrained model guesses the unseen walls; given them, every decision while imagining is right.
    for mode in ("true-imagined", "true-walls"):
        assert results[mode].diagnostics.wall_decision_accuracy == 1.0
    assert "move_rule" not in vars(model.wall_model) and "track" not in vars(model.wall_model)
    with torch.no_grad():
        again = script.evaluate_modes(model, rollouts, tau)["model"]
    assert again.scores.mse_revisited == results["model"].scores.mse_revisited


def test_unseen_edges_counts_the_rollouts_that_leave_a_short_memory_s_box():
    script = load_script("wall_oracles")
    rollouts = collect_rollouts(4, 50, seed=1)
    tau = 10
    positions = np.asarray(rollouts.positions)
    world = np.array(rollouts.metadata["grid_shape"]) - 1
    expected = 0
    for walk in positions:
        low, high = walk[:tau].min(0), walk[:tau].max(0)
        expected += any(((p < low) | (p > high))[axis] and high[axis] - low[axis] < world[axis]
                        for p in walk[tau:] for axis in range(2))
    assert script.unseen_edges(rollouts, tau) == expected


def test_a_run_writes_its_tables(tmp_path, capsys):
    script = load_script("wall_oracles")
    checkpoint = write_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "new" / "oracles"
    script.main(["--checkpoint", str(checkpoint), "--conditions", "centre", "--eval-sequences", "2",
                 "--images-dir", str(tmp_path / "images"), "--out", str(out)])
    text = out.with_suffix(".md").read_text()
    assert "| centre | true-walls |" in text and out.with_suffix(".json").is_file()
    assert "centre true-imagined" in capsys.readouterr().out


@pytest.mark.parametrize("walls", ["absolute"])
def test_a_wall_model_without_a_tracker_gets_no_true_walls_row(tmp_path, walls):
    script = load_script("wall_oracles")
    model = load_model(write_checkpoint(tmp_path / "model.pt", wall_model=walls)).eval()
    rollouts = collect_rollouts(2, 40, seed=2)
    with torch.no_grad():
        assert list(script.evaluate_modes(model, rollouts, 20)) == ["model", "true-imagined"]

"""Random-walk policy, rollout collection and the dataset file."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from gtmsm_env import STAY, Rollouts, collect_rollouts, random_walk_actions
from gtmsm_env.rollouts import main


def test_random_walk_holds_directions_and_stays_on_zero_draws():
    actions = random_walk_actions(np.random.default_rng(0), 64, 300, mean_hold=2.0)
    assert actions.shape == (64, 300) and actions.dtype == np.int64
    assert actions.min() >= 0 and actions.max() <= 4
    # Poisson(2): P(0) = e^-2 of segments are one STAY; moves are held, so repeats are common.
    stay = (actions == STAY).mean()
    assert 0.03 < stay < 0.12
    repeats = (actions[:, 1:] == actions[:, :-1]).mean()
    assert repeats > 0.4
    np.testing.assert_array_equal(actions, random_walk_actions(np.random.default_rng(0), 64, 300))
    moves = actions[actions != STAY]
    assert np.allclose(np.bincount(moves, minlength=5)[1:] / len(moves), 0.25, atol=0.03)


@pytest.fixture(scope="module")
def rollouts() -> Rollouts:
    return collect_rollouts(6, 40, seed=5, start="random")


def test_collect_rollouts_shapes_and_reproducibility(rollouts):
    assert len(rollouts) == 6
    assert rollouts.observations.shape == (6, 40, 8, 8, 3)
    assert rollouts.actions.dtype == np.int64 and (rollouts.actions[:, 0] == STAY).all()
    assert not rollouts.wall_hits[:, 0].any()
    assert rollouts.metadata["seed"] == 5 and rollouts.metadata["grid_shape"] == [9, 9]
    again = collect_rollouts(6, 40, seed=5, start="random")
    for key in ("observations", "actions", "positions", "wall_hits", "images"):
        np.testing.assert_array_equal(getattr(rollouts, key), getattr(again, key))
    other = collect_rollouts(6, 40, seed=6, start="random")
    assert not np.array_equal(rollouts.images, other.images)


def test_collect_rollouts_matches_single_env(rollouts):
    for i in range(len(rollouts)):
        env = gym.make("ImageNav-v0", start="random")
        obs, info = env.reset(seed=5 + i)
        np.testing.assert_array_equal(env.unwrapped.image, rollouts.images[i])
        np.testing.assert_array_equal(obs, rollouts.observations[i, 0])
        for t in range(1, rollouts.num_steps):
            obs, _, _, _, info = env.step(rollouts.actions[i, t])
            np.testing.assert_array_equal(obs, rollouts.observations[i, t])
            np.testing.assert_array_equal(info["position"], rollouts.positions[i, t])
            assert info["wall_hit"] == rollouts.wall_hits[i, t]


def test_indexing_returns_rollouts(rollouts):
    assert len(rollouts[2:5]) == 3 and len(rollouts[0]) == 1 and len(rollouts[-1]) == 1
    np.testing.assert_array_equal(rollouts[np.array([4, 1])].images[1], rollouts.images[1])


def test_save_load_round_trip_is_atomic_and_pickle_free(rollouts, tmp_path):
    path = tmp_path / "sub" / "data.npz"
    rollouts.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["data.npz"]  # no temporary left behind
    loaded = Rollouts.load(path)
    for key in ("observations", "actions", "positions", "wall_hits", "images"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(rollouts, key))
    assert loaded.metadata == rollouts.metadata
    with np.load(path, allow_pickle=False) as data:
        assert json.loads(str(data["metadata"]))["policy"] == "random_walk"


def test_load_errors_are_clear(rollouts, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Rollouts.load(tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="corrupt"):
        Rollouts.load(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "partial.npz", observations=rollouts.observations)
    with pytest.raises(ValueError, match="missing keys"):
        Rollouts.load(tmp_path / "partial.npz")
    arrays = {k: getattr(rollouts, k) for k in ("observations", "positions", "wall_hits", "images")}
    np.savez(tmp_path / "bad.npz", actions=rollouts.actions[:, :3], metadata="{}", **arrays)
    with pytest.raises(ValueError, match="inconsistent rollouts: actions"):
        Rollouts.load(tmp_path / "bad.npz")


def test_cli_writes_dataset_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "train.npz"
    main(["--num-sequences", "4", "--seq-len", "16", "--seed", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "4 sequences x 16 steps" in printed and "wall hits" in printed and "MB" in printed
    assert Rollouts.load(out).metadata["image_source"].startswith("procedural")


def test_cli_module_entry_point_has_help():
    result = subprocess.run(
        [sys.executable, "-m", "gtmsm_env.rollouts", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--num-sequences" in result.stdout
    assert "RuntimeWarning" not in result.stderr

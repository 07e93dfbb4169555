"""Rollouts as Minari datasets: the round trip, what a Minari user sees, atomic writes, and the
``gtmsm-rollouts --minari`` / ``gtmsm train --dataset minari:ID`` command lines with their errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

minari = pytest.importorskip("minari")  # the dev extra installs it (Python >= 3.11)

from gtmsm_env.minari_io import load_minari, save_minari  # noqa: E402
from gtmsm_env.rollouts import collect_rollouts  # noqa: E402
from gtmsm_env.world import World  # noqa: E402

ARRAYS = ("observations", "actions", "positions", "wall_hits", "images", "blocked_moves")


@pytest.fixture(autouse=True)
def datasets_path(tmp_path, monkeypatch):
    """Every test gets its own Minari datasets folder (never ~/.minari)."""
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.mark.parametrize("settings", [{"walls": "maze", "wall_density": 0.2}, {"image_size": (32, 44), "start": "random"}])
def test_round_trip_returns_the_same_arrays_and_world(settings):
    rollouts = collect_rollouts(3, 24, seed=7, world=World(**settings))
    save_minari(rollouts, "gtmsm/round-trip-v0")
    loaded = load_minari("gtmsm/round-trip-v0")
    for name in ARRAYS:
        original, back = getattr(rollouts, name), getattr(loaded, name)
        if original is None:
            assert back is None, name
            continue
        assert back.dtype == original.dtype and back.shape == original.shape, name
        np.testing.assert_array_equal(back, original, err_msg=name)
    assert loaded.metadata == rollouts.metadata
    assert loaded.world == rollouts.world
    assert (loaded.blocked_moves is not None) == (settings.get("walls") == "maze")


def test_a_minari_user_sees_episodes_infos_and_the_env_spec(datasets_path):
    rollouts = collect_rollouts(2, 10, seed=3, world=World(walls="maze"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every field Minari asks for is given or deliberately unset
        save_minari(rollouts, "walk-v1")
    dataset = minari.load_dataset("walk-v1")
    assert dataset.total_episodes == 2 and dataset.total_steps == 2 * 9
    episode = next(dataset.iterate_episodes([1]))
    np.testing.assert_array_equal(episode.observations, rollouts.observations[1])
    np.testing.assert_array_equal(episode.actions, rollouts.actions[1, 1:])
    assert not episode.rewards.any() and not episode.terminations.any()
    assert episode.truncations.tolist() == [False] * 8 + [True]
    np.testing.assert_array_equal(episode.infos["position"], rollouts.positions[1])
    np.testing.assert_array_equal(episode.infos["wall_hit"], rollouts.wall_hits[1])
    np.testing.assert_array_equal(episode.infos["image"][0], rollouts.images[1])
    assert episode.infos["blocked_moves"].shape == (1, 9, 9, 5)
    assert list(dataset.storage.get_episode_metadata([1]))[0]["seed"] == 4  # the env's reset seed
    spec = dataset.spec.env_spec
    assert spec.id == "ImageNav-v0" and spec.max_episode_steps == 9
    assert spec.kwargs == rollouts.world.to_dict()
    env = dataset.recover_environment()
    assert env.observation_space == dataset.observation_space and env.unwrapped.walls == "maze"
    metadata = dataset.storage.metadata
    assert metadata["algorithm_name"] == "random_walk" and metadata["author"] == {"gtmsm"}
    assert metadata["jpeg_encoding"] is False  # crops are stored losslessly
    assert list(minari.list_local_datasets()) == ["walk-v1"]
    assert [p.name for p in datasets_path.iterdir()] == ["walk-v1"]  # no staging folder left


def test_a_failed_write_leaves_no_dataset_and_an_existing_id_is_refused(datasets_path, monkeypatch):
    rollouts = collect_rollouts(2, 8, seed=0)

    def half_write(dataset_id, buffers, **kwargs):
        real(dataset_id, buffers[:1], **kwargs)  # part of the dataset is on disk ...
        raise OSError(28, "No space left on device")  # ... when the disk fills up

    real = minari.create_dataset_from_buffers
    monkeypatch.setattr(minari, "create_dataset_from_buffers", half_write)
    with pytest.raises(OSError, match="No space"):
        save_minari(rollouts, "gtmsm/full-disk-v0")
    assert list(datasets_path.iterdir()) == []
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real)
    save_minari(rollouts, "gtmsm/full-disk-v0")
    before = sorted(p.read_bytes() for p in datasets_path.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="already exists"):
        save_minari(collect_rollouts(2, 8, seed=1), "gtmsm/full-disk-v0")
    assert sorted(p.read_bytes() for p in datasets_path.rglob("*") if p.is_file()) == before


def test_load_refuses_missing_ragged_and_foreign_datasets_and_reads_the_world_from_the_spec(datasets_path):
    with pytest.raises(ValueError, match="no local Minari dataset gtmsm/none-v0"):
        load_minari("gtmsm/none-v0")
    with pytest.raises(ValueError, match="not a Minari dataset id"):
        load_minari("no-version")
    rollouts = collect_rollouts(2, 12, seed=0, world=World(step_size=2))
    save_minari(rollouts, "plain-v0")
    metadata_file = datasets_path / "plain-v0" / "data" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    del metadata["gtmsm"]  # as another writer's ImageNav dataset would be
    metadata_file.write_text(json.dumps(metadata))
    assert load_minari("plain-v0").world == rollouts.world
    np.testing.assert_array_equal(load_minari("plain-v0").observations, rollouts.observations)
    buffers = [_buffer(6), _buffer(9)]
    _create("ragged-v0", buffers)
    with pytest.raises(ValueError, match="episodes have 6..9 observations"):
        load_minari("ragged-v0")
    _create("bare-v0", [_buffer(6, infos={})])
    with pytest.raises(ValueError, match=r"not an ImageNav dataset.*\['image', 'position', 'wall_hit'\]"):
        load_minari("bare-v0")


def _create(dataset_id, buffers):
    """A dataset as another writer would make one (every field Minari asks for given: no warnings)."""
    minari.create_dataset_from_buffers(dataset_id, buffers, env="ImageNav-v0", eval_env="ImageNav-v0",
                                       algorithm_name="test", author="test", author_email="test@example.org",
                                       code_permalink="https://example.org", description="test",
                                       jpeg_encoding=False)


def _buffer(length, infos=None):
    from minari.data_collector import EpisodeBuffer

    return EpisodeBuffer(observations=np.zeros((length, 8, 8, 3), np.uint8), actions=np.zeros(length - 1, np.int64),
                         rewards=np.zeros(length - 1), terminations=np.zeros(length - 1, bool),
                         truncations=np.zeros(length - 1, bool),
                         infos={"position": np.zeros((length, 2), np.int64), "wall_hit": np.zeros(length, bool),
                                "image": np.zeros((1, 32, 32, 3), np.uint8)} if infos is None else infos)


def test_rollouts_cli_writes_minari_and_train_reads_it(tmp_path, capsys):
    from gtmsm_env.rollouts_cli import main as rollouts_main
    from gtmsm_model.cli import main as cli_main

    rollouts_main(["--num-sequences", "6", "--seq-len", "40", "--seed", "2", "--walls", "maze",
                   "--minari", "gtmsm/cli-v0", "--out", str(tmp_path / "same.npz")])
    assert "wrote Minari dataset gtmsm/cli-v0" in capsys.readouterr().out
    from gtmsm_env.dataset import Rollouts

    npz, loaded = Rollouts.load(tmp_path / "same.npz"), load_minari("gtmsm/cli-v0")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(npz, name), err_msg=name)
    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", "--dataset", "minari:gtmsm/cli-v0", "--iterations", "3",
                     "--out-dir", str(out), "--no-progress"]) == 0
    assert (out / "checkpoint.pt").exists()
    recorded = json.loads((out / "config.json").read_text())["config"]
    assert recorded["world"]["walls"] == "maze"  # the dataset fixed the world
    assert recorded["run"]["dataset"] == "minari:gtmsm/cli-v0"


def one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(
    ("dataset", "needles"),
    [
        ("minari:gtmsm/none-v0", ("--dataset", "no local Minari dataset gtmsm/none-v0", "MINARI_DATASETS_PATH")),
        ("minari:", ("--dataset", "minari:DATASET_ID")),
        ("minari:gtmsm/unknown-actions-v0", ("--dataset minari:gtmsm/unknown-actions-v0", "actions must lie in [0, 5)")),
        ("minari:gtmsm/empty-v0", ("--dataset", "holds no episodes")),
        ("minari:gtmsm/border-v0", ("--walls maze contradicts --dataset minari:gtmsm/border-v0",)),
    ],
)
def test_train_refuses_a_bad_minari_dataset_in_one_line(dataset, needles, tmp_path, capsys):
    from gtmsm_model.cli import main as cli_main

    if dataset.endswith("unknown-actions-v0"):
        rollouts = collect_rollouts(2, 40, seed=0)
        rollouts.actions[:, 5] = 7
        save_minari(rollouts, "gtmsm/unknown-actions-v0")
    if dataset.endswith("empty-v0"):
        _create("gtmsm/empty-v0", [])
    flags = []
    if dataset.endswith("border-v0"):
        save_minari(collect_rollouts(2, 40, seed=0), "gtmsm/border-v0")
        flags = ["--walls", "maze"]
    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", "--dataset", dataset, *flags, "--out-dir", str(out)]) == 2
    one_error_line(capsys.readouterr().err, "gtmsm train: error:", *needles)
    assert not out.exists()


def test_without_minari_both_commands_name_the_extra(tmp_path, monkeypatch, capsys):
    from gtmsm_env import rollouts_cli
    from gtmsm_model.cli import main as cli_main

    monkeypatch.setitem(sys.modules, "minari", None)  # import minari now raises ImportError
    monkeypatch.setattr(rollouts_cli, "collect_rollouts", lambda *a, **k: pytest.fail("collected"))
    with pytest.raises(SystemExit) as exit_info:
        rollouts_cli.main(["--minari", "gtmsm/x-v0"])
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err, "gtmsm-rollouts: error: --minari", "pip install 'gtmsm[minari]'")
    assert cli_main(["train", "--preset", "debug", "--dataset", "minari:gtmsm/x-v0",
                     "--out-dir", str(tmp_path / "run")]) == 2
    one_error_line(capsys.readouterr().err, "gtmsm train: error: --dataset", "pip install 'gtmsm[minari]'")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--minari", "no-version"], "--minari: 'no-version' is not a Minari dataset id"),
        (["--minari", "../up-v0"], "is not a Minari dataset id"),
        (["--minari", "gtmsm/taken-v0"], "--minari: a Minari dataset gtmsm/taken-v0 already exists"),
        ([], "give --out FILE.npz, --minari DATASET_ID, or both"),
    ],
)
def test_rollouts_cli_refuses_a_bad_minari_id_before_any_work(flags, message, datasets_path, monkeypatch, capsys):
    from gtmsm_env import rollouts_cli

    (datasets_path / "gtmsm" / "taken-v0" / "data").mkdir(parents=True)
    before = sorted(str(p) for p in datasets_path.rglob("*"))
    monkeypatch.setattr(rollouts_cli, "collect_rollouts", lambda *a, **k: pytest.fail("collected"))
    with pytest.raises(SystemExit) as exit_info:
        rollouts_cli.main(flags)
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err, "gtmsm-rollouts: error: ", message)
    assert sorted(str(p) for p in datasets_path.rglob("*")) == before


def test_the_env_package_imports_minari_only_when_asked():
    code = ("import sys, gtmsm_env, gtmsm_env.minari_io, gtmsm_env.rollouts_cli; "
            "assert 'minari' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


def test_rollouts_cli_refuses_an_unusable_minari_folder_before_any_work(tmp_path, monkeypatch, capsys):
    from gtmsm_env import rollouts_cli

    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "a-file" / "datasets"))
    monkeypatch.setattr(rollouts_cli, "collect_rollouts", lambda *a, **k: pytest.fail("collected"))
    with pytest.raises(SystemExit) as exit_info:
        rollouts_cli.main(["--minari", "gtmsm/x-v0"])
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err, "gtmsm-rollouts: error: --minari: Minari's datasets folder",
                   "MINARI_DATASETS_PATH", "it is a file")

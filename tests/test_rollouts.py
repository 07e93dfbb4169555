"""Random-walk policy, rollout collection and the dataset file."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from gtmsm_env import STAY, Rollouts, World, collect_rollouts, random_walk_actions
from gtmsm_env.rollouts_cli import main


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
    return collect_rollouts(6, 40, seed=5, world=World(start="random"))


def test_collect_rollouts_shapes_and_reproducibility(rollouts):
    assert len(rollouts) == 6
    assert rollouts.observations.shape == (6, 40, 8, 8, 3)
    assert rollouts.actions.dtype == np.int64 and (rollouts.actions[:, 0] == STAY).all()
    assert not rollouts.wall_hits[:, 0].any()
    assert rollouts.metadata["seed"] == 5 and rollouts.metadata["grid_shape"] == [9, 9]
    again = collect_rollouts(6, 40, seed=5, world=World(start="random"))
    for key in ("observations", "actions", "positions", "wall_hits", "images"):
        np.testing.assert_array_equal(getattr(rollouts, key), getattr(again, key))
    other = collect_rollouts(6, 40, seed=6, world=World(start="random"))
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
    np.testing.assert_array_equal(rollouts[-2].images[0], rollouts.images[4])
    np.testing.assert_array_equal(rollouts[np.array([4, 1])].images[1], rollouts.images[1])
    for index in (6, -7):
        with pytest.raises(IndexError, match="out of range for 6 sequences"):
            rollouts[index]


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


def _arrays(rollouts):
    keys = ("observations", "actions", "positions", "wall_hits", "images")
    return {k: getattr(rollouts, k) for k in keys}


def test_load_rejects_truncated_and_corrupted_files(rollouts, tmp_path):
    good = tmp_path / "good.npz"
    rollouts.save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated.npz \(corrupt\?\)"):
        Rollouts.load(tmp_path / "truncated.npz")
    # Zero a stretch inside the first (compressed) member: the zip directory is intact, the data
    # is not, so the error comes while decompressing.
    damaged = bytearray(data)
    damaged[200:600] = bytes(400)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"damaged.npz \(corrupt\?\)"):
        Rollouts.load(tmp_path / "damaged.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="corrupt"):
        Rollouts.load(tmp_path / "empty.npz")


def test_load_rejects_foreign_files_without_unpickling(rollouts, tmp_path):
    np.save(tmp_path / "array.npy", rollouts.observations)
    with pytest.raises(ValueError, match="expected an .npz archive"):
        Rollouts.load(tmp_path / "array.npy")
    # An object array would need pickle: it must be refused, not unpickled.
    np.savez(tmp_path / "object.npz", **_arrays(rollouts), metadata=np.array([{}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled objects \(never loaded\)"):
        Rollouts.load(tmp_path / "object.npz")
    import pickle

    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"observations": 1}))
    with pytest.raises(ValueError, match="corrupt"):
        Rollouts.load(tmp_path / "pickle.npz")
    np.savez(tmp_path / "list_meta.npz", **_arrays(rollouts), metadata=np.array("[1, 2]"))
    with pytest.raises(ValueError, match="metadata must be a JSON object, got list"):
        Rollouts.load(tmp_path / "list_meta.npz")
    np.savez(tmp_path / "bad_json.npz", **_arrays(rollouts), metadata=np.array("{seed: 1"))
    with pytest.raises(ValueError, match="metadata is not valid JSON"):
        Rollouts.load(tmp_path / "bad_json.npz")
    np.savez(tmp_path / "num_meta.npz", **_arrays(rollouts), metadata=np.arange(3))
    with pytest.raises(ValueError, match="metadata must be a JSON string"):
        Rollouts.load(tmp_path / "num_meta.npz")
    wrong = _arrays(rollouts) | {"observations": rollouts.observations.astype(np.float32)}
    np.savez(tmp_path / "float_obs.npz", **wrong, metadata=np.array("{}"))
    with pytest.raises(ValueError, match="observations must be .* uint8"):
        Rollouts.load(tmp_path / "float_obs.npz")


def test_load_never_allows_pickle(rollouts, tmp_path, monkeypatch):
    calls = []
    original = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle"))
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    rollouts.save(tmp_path / "r.npz")
    Rollouts.load(tmp_path / "r.npz")
    assert calls == [False]


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


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-sequences", "-3"], "argument --num-sequences: must be >= 1, got -3"),
        (["--seq-len", "0"], "argument --seq-len: must be >= 2, got 0"),
        (["--mean-hold", "-1"], "argument --mean-hold: must be > 0, got -1"),
        (["--mean-hold", "inf"], "argument --mean-hold: must be a finite number"),
        (["--seed", "-1"], "argument --seed: must be >= 0"),
        (["--seq-len", "ten"], "argument --seq-len: expected an integer, got 'ten'"),
        (["--image-size", "0"], "argument --image-size: must be >= 2, got 0"),
        (["--image-size", "1"], "argument --image-size: must be >= 2, got 1"),
        (["--image-width", "1"], "argument --image-width: must be >= 2, got 1"),
        (["--crop-size", "0"], "argument --crop-size: must be >= 1, got 0"),
        (["--step-size", "0"], "argument --step-size: must be >= 1, got 0"),
        (["--image-width", "6"], "--crop-size 8 is larger than --image-width 6"),
        (["--crop-size", "40"], "--crop-size 40 is larger than --image-size 32"),
        (["--start", "corner"], "argument --start: invalid choice"),
        (["--walls", "rooms"], "argument --walls: invalid choice"),
        (["--wall-density", "0.1"], "--wall-density applies only to --walls maze"),
        (["--walls", "maze", "--wall-density", "0.9"], "--wall-density: wall_density=0.9 asks"),
        (["--walls", "maze", "--wall-density", "-0.1"], "argument --wall-density: must be >= 0"),
        (["--image-source", "/no/such/folder"], "--image-source: image source path does not exist"),
        (["--image-source", "{junk}"], "--image-source: "),
        (["--image-source", "{empty}"], "--image-source: "),
        (["--out", "{file}/x.npz"], "--out: cannot create a folder under"),
        (["--out", "{tmp}"], "must end in .npz"),
    ],
)
def test_cli_rejects_each_bad_flag_before_any_work(flags, message, tmp_path):
    (tmp_path / "junk.txt").write_text("not images")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 garbage")
    (tmp_path / "empty").mkdir()
    names = {"junk": tmp_path / "junk.npz", "empty": tmp_path / "empty",
             "file": tmp_path / "junk.txt", "tmp": tmp_path}
    flags = [f.format(**names) for f in flags]
    if "--out" not in flags:
        flags += ["--out", str(tmp_path / "out" / "r.npz")]
    # (a subprocess: the real entry point; rejected before any work = no output folder made)
    result = subprocess.run(
        [sys.executable, "-m", "gtmsm_env.rollouts", *flags], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gtmsm-rollouts: error: ") and message in last, last
    assert not (tmp_path / "out").exists()


def test_world_flags_take_their_defaults_and_ranges_from_world(tmp_path):
    from gtmsm_env.rollouts_cli import parse_args

    out = str(tmp_path / "x.npz")
    args, _, _ = parse_args(["--out", out])
    assert args.world == World()
    args, _, _ = parse_args(["--out", out, "--image-size", "20", "--image-width", "44", "--crop-size", "6",
                             "--step-size", "2", "--start", "random", "--walls", "maze", "--wall-density", "0.1"])
    assert args.world == World((20, 44), 6, 2, "random", "maze", 0.1)


# Collects until SIGINT/SIGTERM arrives from outside; says on stdout when the first step is taken.
COLLECT_UNTIL_SIGNALLED = """
import sys
from gtmsm_env import vector_env
real_step = vector_env.ImageNavVectorEnv.step
def step(self, actions, _said=[]):
    if not _said:
        _said.append(True)
        print("collecting", flush=True)
    return real_step(self, actions)
vector_env.ImageNavVectorEnv.step = step
from gtmsm_env.rollouts_cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(("signal_name", "status"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_while_collecting_is_one_line_and_nothing_written(signal_name, status, tmp_path):
    import os
    import signal

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", COLLECT_UNTIL_SIGNALLED, "--out", str(out / "r.npz"), "--num-sequences", "8",
         "--seq-len", "200000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "collecting"
        process.send_signal(getattr(signal, signal_name))
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines == [f"gtmsm-rollouts: interrupted by {signal_name}; nothing was written"]
    assert not out.exists() or not list(out.iterdir())


def test_cli_rejects_an_unwritable_folder_before_any_work(tmp_path, monkeypatch, capsys):
    import os

    from gtmsm_env import rollouts_cli as module

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK) and os.geteuid() == 0:
            # root writes anyway; simulate the failure the probe reports
            from gtmsm_cli import checks as flags

            monkeypatch.setattr(flags.tempfile, "mkstemp", _raise_permission)
        monkeypatch.setattr(module, "collect_rollouts", lambda *a, **k: pytest.fail("ran"))
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--out", str(locked / "sub" / "r.npz")])
        assert exit_info.value.code == 2
        assert "gtmsm-rollouts: error: --out: cannot write in folder" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def _raise_permission(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(("umask", "mode"), [(0o027, 0o640), (0o002, 0o664)])
def test_saved_file_follows_the_umask(rollouts, tmp_path, umask, mode):
    import os

    old = os.umask(umask)
    try:
        rollouts.save(tmp_path / "a.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == mode


def test_save_keeps_any_name_and_a_refused_write_leaves_the_old_file(rollouts, tmp_path, monkeypatch):
    import errno

    odd = tmp_path / "data.bin"  # np.savez given this name would write data.bin.npz
    rollouts.save(odd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]
    np.testing.assert_array_equal(Rollouts.load(odd).actions, rollouts.actions)
    target = tmp_path / "old.npz"
    target.write_bytes(b"the previous dataset")

    def full_disk(file, **arrays):
        file.write(b"PK\x03\x04 half")  # part of an archive reaches the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(OSError, match=r"cannot write rollouts file .*old\.npz: no space left on device \(ENOSPC\)"):
        rollouts.save(target)
    assert target.read_bytes() == b"the previous dataset"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "old.npz"]  # no temporary left


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-sequences", "100000000000"], "--num-sequences/--seq-len: this run needs about"),
        (["--num-sequences", "10000000", "--seq-len", "10000"], "--num-sequences/--seq-len: this run needs about"),
        (["--num-sequences", "100000", "--image-size", "100000"], "--num-sequences/--image-size: this run needs"),
        (["--mean-hold", "1e308"], "argument --mean-hold: must be <= 1000000, got 1e308"),
        (["--no-policy-deterministic"], "--no-policy-deterministic needs --policy"),
        (["--mean-hold", "5", "--policy", "p.zip"], "--mean-hold shapes the random walk, but --policy drives every step"),
        (["--mean-hold", "5", "--policy", "p.zip", "--seq-len", "8", "--policy-steps", "8"],
         "--mean-hold shapes the random walk, but --policy drives every step"),
    ],
)
def test_cli_refuses_impossible_or_contradictory_runs_before_any_work(flags, message, tmp_path, monkeypatch,
                                                                      capsys):
    from gtmsm_cli import checks as flags_module
    from gtmsm_env import rollouts_cli as module

    monkeypatch.setattr(module, "collect_rollouts", lambda *a, **k: pytest.fail("collected before the check"))
    monkeypatch.setattr(flags_module, "physical_memory", lambda: 64 * 10**9)  # the same verdict on any machine
    with pytest.raises(SystemExit) as exit_info:
        module.main([*flags, "--out", str(tmp_path / "out" / "r.npz")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("gtmsm-rollouts: error: ") and message in lines[-1], err
    assert "GB of memory" in lines[-1] or "memory" not in message
    assert not (tmp_path / "out").exists()


def test_random_walk_long_holds_cost_only_the_steps_asked_for():
    actions = random_walk_actions(np.random.default_rng(0), 3, 50, mean_hold=1e5)
    assert actions.shape == (3, 50) and all(len(set(row)) == 1 for row in actions)  # one straight run each
    with pytest.raises(ValueError, match="mean_hold must be > 0 and <= 1e"):
        random_walk_actions(np.random.default_rng(0), 1, 5, mean_hold=1e308)


def test_rollouts_carry_their_world_also_from_old_metadata():
    world = World(image_size=(32, 40), crop_size=8, step_size=4, start="random", walls="maze")
    rollouts = collect_rollouts(2, 4, seed=0, world=world)
    assert rollouts.metadata["world"] == world.validated().to_dict()
    assert rollouts.world == world.validated()
    old = dict(rollouts.metadata)
    del old["world"]  # files written before the world key existed
    assert Rollouts(rollouts.observations, rollouts.actions, rollouts.positions, rollouts.wall_hits,
                    rollouts.images, old, rollouts.blocked_moves).world == world.validated()


def test_collect_rollouts_takes_its_world_as_one_value():
    with pytest.raises(TypeError, match="image_size"):
        collect_rollouts(2, 4, seed=0, image_size=20)  # the loose settings are gone
    with pytest.raises(TypeError, match="world must be a World"):
        collect_rollouts(2, 4, seed=0, world={"image_size": 20})
    with pytest.raises(ValueError, match="crop_size"):
        collect_rollouts(2, 4, seed=0, world=World(image_size=6))

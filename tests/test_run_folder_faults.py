"""One writer per run folder, evaluations that are all-or-nothing, signals never lost, write
failures and odd paths named in one line."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gtmsm_cli import files
from gtmsm_cli.files import WriteError, write_error
from gtmsm_model import evaluate as evaluate_module
from gtmsm_model import train as train_module
from gtmsm_model.checkpoint import load_checkpoint
from gtmsm_model.cli import main as cli_main
from gtmsm_model.train import make_config, train

DEBUG = ["--preset", "debug", "--no-progress"]
CLI = [sys.executable, "-m", "gtmsm_model.cli"]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


def one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def start_training(out: Path, *extra: str) -> subprocess.Popen:
    """A ``gtmsm train`` that runs until stopped (it writes no checkpoint of its own accord)."""
    return subprocess.Popen([*CLI, "train", *DEBUG, "--iterations", "100000", "--eval-every", "0",
                             "--threads", "1", "--out-dir", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.1)


def logged_steps(out: Path) -> int:
    log = out / "train_log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    train(make_config("debug", out_dir=str(out), progress=False))
    return out / "checkpoint.pt"


# --------------------------------------------------------------------------- one writer


def test_a_second_train_into_a_busy_folder_is_refused_and_touches_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    first = start_training(out, "--checkpoint-every", "100000")
    try:
        wait_for(lambda: logged_steps(out) >= 3, first)
        before = (out / "config.json").read_bytes()
        for extra in ([], ["--overwrite"], ["--resume"]):
            assert cli_main(["train", *DEBUG, "--iterations", "3", "--out-dir", str(out), *extra]) == 2
            one_error_line(capsys.readouterr().err, f"--out-dir {out} is in use by another gtmsm process",
                           f"pid {first.pid}")
        assert cli_main(["evaluate", "--checkpoint", str(tmp_path / "x.pt"), "--out-dir", str(out)]) == 2
        one_error_line(capsys.readouterr().err, "is in use by another gtmsm process")
        assert (out / "config.json").read_bytes() == before  # --overwrite removed nothing
        assert logged_steps(out) >= 3 and not (out / "checkpoint.pt").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    # The first run's files are its own: one log line per step, its checkpoint at its last step.
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))
    assert load_checkpoint(out / "checkpoint.pt")["step"] == steps[-1]


def test_a_killed_runs_folder_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    first = start_training(out, "--checkpoint-every", "5")
    wait_for(lambda: (out / "checkpoint.pt").exists(), first)
    first.kill()  # SIGKILL: no handler runs, the lock file stays behind
    first.communicate(timeout=60)
    assert (out / "run.lock").exists()
    end = max(load_checkpoint(out / "checkpoint.pt")["step"], 10) + 2  # 10: the debug warm-up
    assert cli_main(["train", *DEBUG, "--iterations", str(end - 10), "--eval-every", "0",
                     "--out-dir", str(out), "--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == end


# --------------------------------------------------------------------------- all-or-nothing evaluations


def test_a_failed_evaluation_leaves_the_folder_as_it_was(tmp_path: Path, trained: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(trained), "--out-dir", str(out), "--eval-sequences", "2"]) == 0
    before = snapshot(out)
    assert set(before) >= {"metrics.json", "horizon.png", "prediction.png", "state_map.png"}
    from matplotlib.figure import Figure

    real_savefig, calls = Figure.savefig, []

    def full_disk_on_the_second_plot(self, target, *args, **kwargs):
        calls.append(target)
        if len(calls) == 2:  # half a file, then the disk is full
            Path(target).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_savefig(self, target, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", full_disk_on_the_second_plot)
    capsys.readouterr()
    assert cli_main(["evaluate", "--checkpoint", str(trained), "--out-dir", str(out), "--eval-sequences", "2",
                     "--eval-seed", "7"]) == 2
    one_error_line(capsys.readouterr().err, str(out), "no space left on device (ENOSPC)")
    assert len(calls) == 2
    assert snapshot(out) == before  # the old metrics and plots, byte for byte
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temporary left


def test_a_failed_evaluation_into_a_new_folder_leaves_no_folder(tmp_path: Path, trained: Path, capsys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(evaluate_module, "write_metrics", full_disk)
    out = tmp_path / "new"
    assert cli_main(["evaluate", "--checkpoint", str(trained), "--out-dir", str(out), "--eval-sequences", "2"]) == 2
    one_error_line(capsys.readouterr().err, "ENOSPC")
    assert not out.exists()


# --------------------------------------------------------------------------- write failures, named


def test_a_full_disk_at_a_checkpoint_says_enospc_and_the_path_on_its_own_line(tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    real_write = files._write_all

    def full_disk_for_checkpoints(target, data):
        if bytes(data[:2]) == b"PK":  # a torch zip archive: the checkpoint
            Path(target).write_bytes(bytes(data[:100]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(target, data)

    monkeypatch.setattr(files, "_write_all", full_disk_for_checkpoints)
    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", "--progress", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "inline_container" not in err
    [line] = error_lines(err)
    assert line == (f"gtmsm train: error: cannot write checkpoint {out / 'checkpoint.pt'}: "
                    "no space left on device (ENOSPC)"), err  # starts its own line, after the bar
    assert not (out / "checkpoint.pt").exists() and not list(out.glob(".*tmp*"))
    monkeypatch.setattr(files, "_write_all", real_write)
    # The folder holds a run that never saved a step: the refusal and --resume agree.
    assert cli_main(["train", *DEBUG, "--out-dir", str(out)]) == 2
    one_error_line(capsys.readouterr().err, "before its first checkpoint", "--resume", "--overwrite")
    assert cli_main(["train", *DEBUG, "--out-dir", str(out), "--resume", "--eval-every", "0"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 22


def test_write_errors_name_the_path_and_the_reason(tmp_path: Path) -> None:
    for code, words in ((errno.ENOSPC, "no space left on device (ENOSPC)"),
                        (errno.EACCES, "permission denied (EACCES)"),
                        (errno.EPERM, "operation not permitted (EPERM)")):
        error = write_error(tmp_path / "x.json", OSError(code, os.strerror(code)), "metrics")
        assert isinstance(error, WriteError) and str(error) == f"cannot write metrics {tmp_path / 'x.json'}: {words}"
    missing = FileNotFoundError(errno.ENOENT, "gone")
    assert write_error(tmp_path / "x", missing) is missing
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(WriteError, match=r"cannot write .*locked/a\.txt: permission denied \(EACCES\)"):
            files.write_text(locked / "a.txt", "x")


# --------------------------------------------------------------------------- odd paths


def test_a_fifo_is_not_a_regular_file_as_checkpoint_or_predict_out(tmp_path: Path, trained: Path, capsys) -> None:
    fifo = tmp_path / "pipe.gif"
    os.mkfifo(fifo)
    runs = {"--checkpoint": ["evaluate", "--checkpoint", str(fifo), "--out-dir", str(tmp_path / "e")],
            "--out": ["predict", "--checkpoint", str(trained), "--out", str(fifo)]}
    for flag, argv in runs.items():
        result = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60)  # a hang fails
        assert result.returncode == 2, result.stderr
        line = one_error_line(result.stderr, "a FIFO (named pipe), not a regular file", str(fifo))
        assert "not found" not in line and (flag != "--out" or "--out:" in line)
    assert cli_main(["evaluate", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    one_error_line(capsys.readouterr().err, "not found")


# --------------------------------------------------------------------------- signals


def test_sigterm_during_the_last_steps_evaluation_is_not_lost(tmp_path: Path, capsys, monkeypatch) -> None:
    real = train_module.evaluation_record

    def sigterm_at_the_end(state, *args, **kwargs):
        if state.step == 22:  # the debug preset's last step: its evaluation, then the loop ends
            signal.raise_signal(signal.SIGTERM)
        return real(state, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluation_record", sigterm_at_the_end)
    out = tmp_path / "run"
    assert cli_main(["train", *DEBUG, "--out-dir", str(out)]) == 143
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "Traceback" not in err, err
    assert f"the last checkpoint is {out / 'checkpoint.pt'}" in lines[0] and "--resume" in lines[0]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 22


@pytest.mark.parametrize(("number", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_the_final_evaluation_exits_with_one_line(tmp_path: Path, capsys, monkeypatch,
                                                                  number: int, status: int) -> None:
    real = evaluate_module.evaluate_gtmsm

    def signal_first(*args, **kwargs):
        signal.raise_signal(number)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_gtmsm", signal_first)
    out = tmp_path / "run"
    assert cli_main(["run", *DEBUG, "--eval-every", "0", "--final-eval-sequences", "2", "--out-dir", str(out)]) == status
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "final evaluation" in lines[0] and "not written" in lines[0] and str(out / "checkpoint.pt") in lines[0]
    assert (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()


def test_under_torchrun_a_refused_start_is_one_line_and_every_rank_exits_2(tmp_path: Path) -> None:
    from tests.test_distributed import free_port

    out = tmp_path / "used"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "train_log.jsonl").write_text('{"step": 1}\n')  # a run: refused by rank 0's claim alone
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--rdzv-backend=c10d",
         f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--nproc_per_node=2",
         "-m", "gtmsm_model.cli", "train", *DEBUG, "--threads", "1", "--out-dir", str(out)],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert len([line for line in result.stderr.splitlines() if "gtmsm train: error:" in line]) == 1, result.stderr
    assert "already holds a run" in result.stderr
    # Both ranks ended by themselves with status 2: none was left waiting for rank 0 until killed.
    assert result.stderr.count("exitcode  : 2") == 2, result.stderr[-2000:]


def test_overwrite_clears_an_earlier_runs_tensorboard_events(tmp_path: Path) -> None:
    from gtmsm_model.run_folder import RunFolder

    events = tmp_path / "tensorboard" / "events.out.tfevents.1"
    events.parent.mkdir(parents=True)
    events.write_bytes(b"old run")
    (tmp_path / "checkpoint.pt").write_bytes(b"old checkpoint")
    RunFolder(tmp_path).claim(resume=False, overwrite=True)
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "checkpoint.pt").exists()

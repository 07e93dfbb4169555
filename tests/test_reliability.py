"""Issue 8: bad input gets one clear error and loses nothing; every number is traceable to its run."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gtmsm_model import train as train_module
from gtmsm_model.checkpoint import load_checkpoint
from gtmsm_model.cli import main as cli_main
from gtmsm_model.run_folder import RunFolderError
from gtmsm_model.train import TrainingInterrupted, make_config, train


def debug_config(out_dir: Path, **overrides):
    return make_config("debug", out_dir=str(out_dir), progress=False, **overrides)


def one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error:" in lines[0] and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI gets as far as training."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(train_module, "train", refuse)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    train(debug_config(out))
    return out / "checkpoint.pt"


# --------------------------------------------------------------------------- empty checkpoints


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_an_empty_checkpoint_is_a_clean_error(tmp_path: Path, command: str, capsys) -> None:
    empty = tmp_path / "empty.pt"
    empty.touch()
    assert cli_main([command, "--checkpoint", str(empty)]) == 2
    one_error_line(capsys.readouterr().err, "empty")


def test_resume_from_an_empty_checkpoint_is_a_clean_error(tmp_path: Path, capsys, no_training) -> None:
    (tmp_path / "checkpoint.pt").touch()
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(tmp_path), "--resume"]) == 2
    one_error_line(capsys.readouterr().err, "empty")
    assert (tmp_path / "checkpoint.pt").stat().st_size == 0  # nothing was lost or replaced


def test_checkpoint_errors_never_pass_on_torchs_unsafe_advice(tmp_path: Path, capsys) -> None:
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    for name, write in (("pickle.pt", lambda p: torch.save({"x": Exploit()}, p)),
                        ("garbage.pt", lambda p: p.write_bytes(os.urandom(300)))):
        path = tmp_path / name
        write(path)
        assert cli_main(["evaluate", "--checkpoint", str(path)]) == 2
        captured = capsys.readouterr()
        one_error_line(captured.err)
        assert "weights_only" not in captured.err and "this must never run" not in captured.out


# --------------------------------------------------------------------------- flag ranges

BAD_FLAGS = [
    ("--lr-vae", "-1"), ("--lr-state", "0"), ("--grad-clip", "-1"), ("--kl-start", "-2"),
    ("--kl-start", "5"), ("--pixel-sigma", "0"), ("--state-noise", "-0.1"), ("--seed", "-1"),
    ("--eval-sequences", "0"), ("--eval-horizon", "0"), ("--eval-tau", "0"), ("--iterations", "-5"),
    ("--batch-size", "0"), ("--lr-vae", "nan"), ("--grad-clip", "inf"), ("--z-dim", "2.5"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_FLAGS)
def test_each_out_of_range_flag_is_rejected_before_training(flag, value, capsys, no_training) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--preset", "debug", flag, value])
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err, flag)


def test_contradicting_flags_name_both(tmp_path: Path, capsys, no_training) -> None:
    assert cli_main(["train", "--preset", "debug", "--tau", "50", "--seq-len", "40",
                     "--out-dir", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, "--tau", "--seq-len")


@pytest.mark.parametrize(("flag", "value"), [("--eval-sequences", "0"), ("--eval-horizon", "0"),
                                             ("--eval-seed", "-3")])
def test_evaluate_flags_are_checked_before_loading(flag, value, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["evaluate", "--checkpoint", "whatever.pt", flag, value])
    assert exit_info.value.code == 2
    one_error_line(capsys.readouterr().err, flag)


def test_bad_evaluation_source_is_rejected_before_training(tmp_path: Path, capsys, no_training) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    for source in (junk, tmp_path / "missing"):
        assert cli_main(["run", "--preset", "debug", "--out-dir", str(tmp_path / "run"),
                         "--eval-image-source", str(source)]) == 2
        one_error_line(capsys.readouterr().err, "--eval-image-source")
    assert not (tmp_path / "run").exists()


def test_bad_training_source_and_dataset_are_rejected_before_the_folder_is_touched(tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(500))
    for flag, value in (("--image-source", tmp_path / "missing"), ("--dataset", garbage)):
        assert cli_main(["train", "--preset", "debug", "--out-dir", str(tmp_path / "run"), flag, str(value)]) == 2
        err = capsys.readouterr().err
        one_error_line(err, flag)
        assert "allow_pickle" not in err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- run folders


def test_a_second_train_into_a_used_out_dir_is_refused_and_loses_nothing(tmp_path: Path, capsys) -> None:
    train(debug_config(tmp_path))
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(RunFolderError, match="--resume.*--overwrite"):
        train(debug_config(tmp_path, iterations=3))
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(tmp_path), "--no-progress"]) == 2
    one_error_line(capsys.readouterr().err, "already holds a run")
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_overwrite_replaces_the_run_and_removes_stale_outputs(tmp_path: Path) -> None:
    train(debug_config(tmp_path))
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "horizon.png").write_bytes(b"stale")
    train(debug_config(tmp_path, iterations=4, overwrite=True))
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "horizon.png").exists()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 10 + 4


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--resume and --overwrite"):
        debug_config(tmp_path, resume=True, overwrite=True)


# --------------------------------------------------------------------------- signals


def test_sigint_writes_a_checkpoint_at_that_step_and_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = train(debug_config(tmp_path / "straight"))

    def interrupt_at_step_13(state) -> None:
        if state.step == 13:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stop:
        train(debug_config(tmp_path / "cut"), on_step=interrupt_at_step_13)
    assert stop.value.step == 13 and stop.value.signal_name == "SIGINT"
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 13
    resumed = train(debug_config(tmp_path / "cut", resume=True))
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    # The log is continuous: one line per step, no step twice.
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, straight.iterations + 1))


def test_sigterm_to_the_cli_checkpoints_and_prints_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "gtmsm_model.cli", "train", "--preset", "debug", "--iterations", "100000",
         "--eval-every", "0", "--checkpoint-every", "100000", "--no-progress", "--out-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.stat().st_size > 2000):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "resume with: gtmsm train" in err and "--resume" in err
    last_logged = json.loads(log.read_text().splitlines()[-1])["step"]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == last_logged > 0


# --------------------------------------------------------------------------- provenance


def test_run_folder_records_config_log_loss_plot_and_metrics_provenance(tmp_path: Path, trained: Path) -> None:
    folder = trained.parent
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["preset"] == "debug" and "torch" in config["packages"]
    records = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert {"step", "phase", "seconds", "loss"} <= set(records[-1]) and records[-1]["phase"] == "main"
    assert {"kl_memory", "nll"} <= set(records[-1]) and records[0]["phase"] == "vae"
    assert (folder / "loss.png").stat().st_size > 1000
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(trained), "--out-dir", str(out), "--eval-sequences", "2",
                     "--eval-tau", "32", "--eval-horizon", "16", "--eval-seed", "7"]) == 0
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    from gtmsm_model.run_folder import file_sha256

    assert provenance["checkpoint_sha256"] == file_sha256(trained)
    assert provenance["preset"] == "debug" and provenance["seed"] == 0 and provenance["eval_seed"] == 7
    assert provenance["eval_image_source"] == "procedural" and "torch" in provenance["packages"]


def test_files_are_written_with_the_users_umask(tmp_path: Path, trained: Path) -> None:
    old = os.umask(0o022)
    try:
        train(debug_config(tmp_path, iterations=2))
    finally:
        os.umask(old)
    for name in ("checkpoint.pt", "config.json", "train_log.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name

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

import numpy as np
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
    with pytest.raises(RunFolderError, match="`resume`.*`overwrite`"):
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
    with pytest.raises(ValueError, match="`resume` and `overwrite`"):
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


@pytest.mark.parametrize(("signal_number", "exit_status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_cli_checkpoints_and_prints_how_to_resume(tmp_path: Path, signal_number: int,
                                                                  exit_status: int) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "gtmsm_model.cli", "train", "--preset", "debug", "--iterations", "100000",
         "--eval-every", "0", "--checkpoint-every", "100000", "--no-progress", "--out-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.stat().st_size > 2000):
        time.sleep(0.2)
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=60)
    assert process.returncode == exit_status, err  # 128 + the signal, as a shell reports it
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


# --------------------------------------------------------------------------- second review round


def test_a_failed_check_leaves_nothing_that_blocks_the_corrected_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(out), "--walls", "border",
                     "--wall-density", "0.5"]) == 2
    one_error_line(capsys.readouterr().err, "--wall-density", "--walls maze")
    assert not out.exists() or not any(out.iterdir())


def test_a_lone_config_json_from_a_run_that_never_stepped_is_not_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "train_log.jsonl").touch()
    train_module.preflight(debug_config(out))  # not refused
    (out / "train_log.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunFolderError, match="already holds a run"):
        train_module.preflight(debug_config(out))


@pytest.mark.parametrize(("flags", "needles"), [
    (["--step-size", "30"], ["--step-size 30", "1x1 grid", "<= 24"]),
    (["--crop-size", "32", "--step-size", "1"], ["--crop-size 32", "never move"]),
    (["--seed", str(2**32)], ["--seed", "4294967295"]),
    (["--device", "meta"], ["--device meta"]),
    (["--wall-model", "foo"], ["--wall-model", "edges"]),
    (["--threads", "100000"], ["--threads 100000", "CPU cores"]),
    (["--batch-size", "100000000"], ["--batch-size", "GB of memory"]),
    (["--vae-batch-size", "100000000"], ["--vae-batch-size", "GB of memory"]),
    (["--image-size", "100000"], ["--image-size", "GB of memory"]),
    (["--z-dim", "100000000"], ["--z-dim", "GB of memory"]),
    (["--eval-horizon", "100000000"], ["--eval-horizon", "GB of memory"]),
])
def test_degenerate_or_impossible_runs_are_refused_naming_the_flag(tmp_path: Path, flags, needles, capsys,
                                                                   no_training) -> None:
    out = tmp_path / "run"
    try:
        status = cli_main(["train", "--preset", "debug", "--out-dir", str(out), *flags])
    except SystemExit as stop:  # refused by the flag parser itself
        status = stop.code
    assert status == 2
    one_error_line(capsys.readouterr().err, *needles)
    assert not out.exists()


def test_memory_check_names_the_largest_need() -> None:
    needs = {"--a": ("small", 1e9), "--b": ("big", 9e9)}
    train_module.check_memory(needs, available=20e9)
    with pytest.raises(ValueError, match=r"^--b: this run needs about 10.0 GB .*9.0 GB for big.*has 5.0 GB"):
        train_module.check_memory(needs, available=5e9)


def test_the_presets_fit_in_a_small_machine() -> None:
    for preset in ("debug", "quick", "paper", "large", "seed-gate"):
        train_module.check_memory(train_module.memory_needs(make_config(preset)), available=4e9)


def test_an_out_dir_that_cannot_be_created_is_refused_before_work(tmp_path: Path, capsys, no_training) -> None:
    (tmp_path / "file").touch()
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(tmp_path / "file" / "run")]) == 2
    one_error_line(capsys.readouterr().err, "--out-dir", "cannot create folder")


def test_dataset_sets_the_world_and_contradicting_world_flags_are_refused(tmp_path: Path, capsys) -> None:
    from gtmsm_env.rollouts import main as rollouts_main

    data = tmp_path / "data.npz"
    rollouts_main(["--out", str(data), "--num-sequences", "4", "--seq-len", "48", "--image-size", "40",
                   "--step-size", "4"])
    capsys.readouterr()
    base = ["train", "--preset", "debug", "--dataset", str(data)]
    assert cli_main([*base, "--out-dir", str(tmp_path / "a"), "--image-size", "64"]) == 2
    one_error_line(capsys.readouterr().err, "--image-size 64", "image_size 40")
    assert cli_main([*base, "--out-dir", str(tmp_path / "b"), "--image-source", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, "--image-source", "--dataset")
    config = debug_config(tmp_path / "c", dataset=str(data))
    train_module.preflight(config)
    assert (config.world.image_size, config.world.step_size) == (40, 4)


def test_resume_with_other_model_settings_names_the_flag(tmp_path: Path, capsys, no_training) -> None:
    out = tmp_path / "run"
    train(debug_config(out))
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(out), "--resume", "--z-dim", "16"]) == 2
    one_error_line(capsys.readouterr().err, "--z-dim 8 (this run: 16)")


def test_evaluate_and_predict_check_their_outputs_before_loading(tmp_path: Path, capsys, monkeypatch) -> None:
    import gtmsm_model.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda *a, **k: pytest.fail("loaded"))
    (tmp_path / "file").touch()
    assert cli_main(["evaluate", "--checkpoint", "x.pt", "--out-dir", str(tmp_path / "file")]) == 2
    one_error_line(capsys.readouterr().err, "--out-dir", "not a folder")
    assert cli_main(["predict", "--checkpoint", "x.pt", "--out", str(tmp_path / "p.jpg")]) == 2
    one_error_line(capsys.readouterr().err, "--out", ".gif or .png")
    assert cli_main(["predict", "--checkpoint", "x.pt", "--out", str(tmp_path / "file" / "p.png")]) == 2
    one_error_line(capsys.readouterr().err, "--out", "is a file")


def test_evaluate_defaults_to_the_checkpoints_memorise_and_predict_lengths(tmp_path: Path, trained: Path) -> None:
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--checkpoint", str(trained), "--eval-sequences", "2", "--out-dir", str(out)]) == 0
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    saved = load_checkpoint(trained)["train_config"]["schedule"]
    assert (provenance["eval_tau"], provenance["eval_horizon"]) == (saved["eval_tau"], saved["eval_horizon"])


def test_under_torchrun_the_resume_hint_uses_torchrun_and_only_rank_0_reports(monkeypatch, capsys) -> None:
    from gtmsm_model.cli import resume_hint

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    hint = resume_hint(["train", "--out-dir", "runs/x"])
    assert hint.startswith("torchrun --nproc_per_node=2 ") and hint.endswith("train --out-dir runs/x --resume")
    monkeypatch.setenv("RANK", "1")
    assert cli_main(["train", "--preset", "debug", "--step-size", "30"]) == 2
    assert capsys.readouterr().err == ""


def test_the_summary_line_separates_warm_up_from_main_iterations(tmp_path: Path, capsys) -> None:
    assert cli_main(["train", "--preset", "debug", "--no-progress", "--out-dir", str(tmp_path / "r")]) == 0
    assert "trained 22 steps (10 VAE warm-up + 12 main)" in capsys.readouterr().out


def test_the_loss_plot_draws_phases_shorter_than_the_smoothing_window(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.axes

    from gtmsm_model.plots import plot_training_log

    drawn: list[int] = []
    original = matplotlib.axes.Axes.plot

    def record(self, x, y, *args, **kwargs):
        drawn.append(len(y))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    records = [{"step": i, "phase": "vae" if i <= 3 else "main", "seconds": 0.0, "loss": 1.0 / i} for i in range(1, 16)]
    plot_training_log(records, tmp_path / "loss.png")
    assert drawn[0] == 3 and drawn[1] >= 10  # a 3-step and a 12-step phase are still drawn (was 1 and 0 points)


# --------------------------------------------------------------------------- third review round


def _dataset(tmp_path: Path, name: str, **changes) -> Path:
    from gtmsm_env.rollouts import collect_rollouts

    rollouts = collect_rollouts(3, 48, seed=0)
    for key, value in changes.items():
        setattr(rollouts, key, value(getattr(rollouts, key)))
    path = tmp_path / name
    rollouts.save(path)
    return path


def test_a_dataset_with_unknown_actions_or_no_sequences_fails_before_training(tmp_path: Path, capsys,
                                                                               no_training) -> None:
    bad = _dataset(tmp_path, "bad.npz", actions=lambda a: np.where(a == 4, 9, a))
    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(out), "--dataset", str(bad)]) == 2
    one_error_line(capsys.readouterr().err, f"--dataset {bad}", "actions must lie in [0, 5)", "..9")
    assert not out.exists() or not any(out.iterdir())  # the corrected command is not blocked


def test_resume_with_another_schedule_or_shard_layout_is_refused(tmp_path: Path, capsys, no_training) -> None:
    out = tmp_path / "run"
    train(debug_config(out))
    for flags, needle in ((["--vae-warmup-iters", "50"], "--vae-warmup-iters 10 (this run: 50)"),
                          (["--iterations", "5"], "past the end of this run"),
                          (["--data-shards", "2"], "--data-shards 0 (this run: 2)")):
        assert cli_main(["train", "--preset", "debug", "--out-dir", str(out), "--resume", *flags]) == 2
        one_error_line(capsys.readouterr().err, needle)
    # where it runs may change: threads and progress
    config = debug_config(out, resume=True, threads=2)
    train_module.preflight(config)


def test_a_checkpoint_from_two_processes_is_not_resumed_by_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(debug_config(out))
    payload = load_checkpoint(out / "checkpoint.pt")
    payload["world_size"] = 2
    with pytest.raises(Exception, match=r"2 data shard\(s\) \(2 process\(es\)\); this run has 1"):
        train_module.check_resumable(payload, debug_config(out, resume=True), out / "checkpoint.pt")


@pytest.mark.parametrize(("flags", "needles"), [
    (["--wall-model", "absolute", "--start", "random"], ["--wall-model absolute needs --start center"]),
    (["--out-dir", ""], ["--out-dir must name a folder"]),
    (["--data-shards", "3"], ["--batch-size 4 must be divisible by the 3"]),
])
def test_contradictions_found_before_training(flags, needles, capsys, no_training) -> None:
    assert cli_main(["train", "--preset", "debug", *flags]) == 2
    err = capsys.readouterr().err
    one_error_line(err, *needles)


def test_checkpoint_path_mistakes_and_broken_weights_name_the_file(tmp_path: Path, trained: Path, capsys) -> None:
    assert cli_main(["evaluate", "--checkpoint", str(trained.parent), "--out-dir", str(tmp_path / "e")]) == 2
    one_error_line(capsys.readouterr().err, "is a folder; give the checkpoint file")
    payload = load_checkpoint(trained)
    payload["model"] = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
                        for k, v in payload["model"].items()}
    broken = tmp_path / "nan.pt"
    torch.save(payload, broken)
    assert cli_main(["evaluate", "--checkpoint", str(broken), "--out-dir", str(tmp_path / "e")]) == 2
    one_error_line(capsys.readouterr().err, str(broken), "not finite")
    assert not (tmp_path / "e").exists()  # a failed evaluation leaves no folder behind


def test_evaluate_refuses_to_write_into_another_runs_folder(tmp_path: Path, trained: Path, capsys) -> None:
    other = tmp_path / "other"
    train(debug_config(other))
    assert cli_main(["evaluate", "--checkpoint", str(trained), "--out-dir", str(other)]) == 2
    one_error_line(capsys.readouterr().err, "--out-dir", "holds another run's checkpoint")
    assert not (other / "metrics.json").exists()


def test_predict_out_must_name_a_file(capsys) -> None:
    assert cli_main(["predict", "--checkpoint", "x.pt", "--out", ""]) == 2
    one_error_line(capsys.readouterr().err, "--out: must name a file")


def test_sigterm_outside_training_exits_143_with_one_line(monkeypatch, capsys) -> None:
    from gtmsm_model import cli

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler turns it into one line, exit 143
        time.sleep(5)

    monkeypatch.setattr(cli, "evaluate_or_predict", terminated)
    assert cli_main(["evaluate", "--checkpoint", "x.pt"]) == 143
    assert capsys.readouterr().err.strip() == "gtmsm evaluate: interrupted by SIGTERM"


def test_a_folder_given_as_dataset_is_named_as_such(tmp_path: Path, capsys, no_training) -> None:
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(tmp_path / "r"), "--dataset", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, "--dataset", "is a folder; give the .npz file")


def test_ctrl_c_while_the_command_starts_is_one_line() -> None:
    """The entry point imports torch inside its own handler: no import traceback, exit 130."""
    process = subprocess.Popen([sys.executable, "-m", "gtmsm_model.launch", "train", "--preset", "debug"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, gtmsm_model, gtmsm_model.launch; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_the_library_names_the_device_field_and_gtmsm_its_flag(tmp_path: Path, capsys) -> None:
    from gtmsm_model.cli import main as cli_main
    from gtmsm_model.preflight import resolve_device

    with pytest.raises(ValueError, match="^`device` 'gpu' is not a torch device"):
        resolve_device("gpu")
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(tmp_path / "run"), "--device", "gpu"]) == 2
    assert capsys.readouterr().err.startswith("gtmsm train: error: --device 'gpu' is not a torch device")
    assert not (tmp_path / "run").exists()

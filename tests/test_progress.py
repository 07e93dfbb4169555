"""Training progress and logs: one bar per phase on stderr (placed right after a resume), the
``[eval]`` line's sequence count, and the optional TensorBoard log beside train_log.jsonl."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from gtmsm_model.cli import main as cli_main
from gtmsm_model.train import make_config, train

BAR = re.compile(r"(?:^|[\r\n])([A-Za-z][\w -]*?): +\d+%\|[^|]*\| *(\d+)/(\d+) \[")
"""A tqdm bar as it is drawn: ``desc: 40%|████      | 4/10 [...``."""


class Stop(Exception):
    """Stands for a run killed between checkpoints."""


def debug_config(out_dir: Path, **overrides):
    return make_config("debug", out_dir=str(out_dir), progress=False, **overrides)


def stop_at(step: int):
    def hook(state) -> None:
        if state.step == step:
            raise Stop

    return hook


def bars(text: str) -> dict[str, tuple[set[int], set[int]]]:
    """Each bar description drawn in ``text``: (the positions drawn, the totals drawn)."""
    drawn: dict[str, tuple[set[int], set[int]]] = {}
    for name, position, total in BAR.findall(text):
        positions, totals = drawn.setdefault(name, (set(), set()))
        positions.add(int(position))
        totals.add(int(total))
    return drawn


def test_one_bar_per_phase_on_stderr_and_the_eval_line_counts_its_sequences(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = debug_config(tmp_path / "run")  # 10 warm-up steps, then 12 main steps
    train(config, progress=True)
    captured = capsys.readouterr()
    drawn = bars(captured.err)
    assert set(drawn) == {"VAE warm-up", "main"}, captured.err
    assert drawn["VAE warm-up"][1] == {10} and {0, 10} <= drawn["VAE warm-up"][0]
    assert drawn["main"][1] == {12} and {0, 12} <= drawn["main"][0]
    assert not bars(captured.out), "the bars belong on stderr"
    evals = [line for line in captured.out.splitlines() if line.startswith("[eval]")]
    assert len(evals) == 2 and all(" sequences=4 " in line for line in evals), evals
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [record["sequences"] for record in history] == [4, 4]


def test_no_progress_prints_nothing_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(debug_config(tmp_path / "run", iterations=2, eval_every=0))
    assert capsys.readouterr().err == ""


def test_resumed_bars_start_where_the_checkpoint_stopped(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Killed at step 7 of the warm-up: the checkpoint holds step 5.
    warmup = tmp_path / "warmup"
    with pytest.raises(Stop):
        train(debug_config(warmup), on_step=stop_at(7))
    capsys.readouterr()
    train(debug_config(warmup, resume=True), progress=True)
    drawn = bars(capsys.readouterr().err)
    assert set(drawn) == {"VAE warm-up", "main"}
    assert min(drawn["VAE warm-up"][0]) == 5 and drawn["VAE warm-up"][1] == {10}
    assert min(drawn["main"][0]) == 0 and drawn["main"][1] == {12}
    # Stopped 5 steps into the main phase: only the main bar, from 5 of 12.
    main = tmp_path / "main"
    train(debug_config(main, iterations=5))
    capsys.readouterr()
    train(debug_config(main, resume=True), progress=True)
    drawn = bars(capsys.readouterr().err)
    assert set(drawn) == {"main"} and min(drawn["main"][0]) == 5 and drawn["main"][1] == {12}


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_tensorboard_logs_the_json_logs_scalars_and_a_resume_replaces_the_redone_steps(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    train(debug_config(out, iterations=3))  # 13 steps, without TensorBoard
    assert not (out / "tensorboard").exists()
    # Turned on at a resume; killed at step 17, after the evaluation at step 16, checkpoint at 15.
    with pytest.raises(Stop):
        train(debug_config(out, resume=True, tensorboard=True), on_step=stop_at(17))
    train(debug_config(out, resume=True, tensorboard=True))
    assert any(path.stat().st_size for path in (out / "tensorboard").glob("events.out.tfevents.*"))
    logged = scalars(out / "tensorboard")
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    parts = {name for record in records[13:] for name in record} - {"step", "phase"}
    assert {f"train/{name}" for name in parts} <= set(logged)
    # Steps 14 to 22 were logged once each (16 was redone after the kill), with the JSON log's values.
    assert [step for step, _ in logged["train/loss"]] == list(range(14, 23))
    for (step, value), record in zip(logged["train/loss"], records[13:], strict=True):
        assert record["step"] == step and value == pytest.approx(record["loss"], rel=1e-5, abs=1e-6)
    history = json.loads((out / "history.json").read_text())
    assert [record["step"] for record in history] == [13, 16, 22]
    assert [step for step, _ in logged["eval/mse_revisited"]] == [16, 22]
    assert logged["eval/knn_hit_rate"][-1][1] == pytest.approx(history[-1]["knn_hit_rate"])


def test_tensorboard_without_the_package_is_one_error_line_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now fails, as when not installed
    out = tmp_path / "run"
    assert cli_main(["train", "--preset", "debug", "--out-dir", str(out), "--tensorboard"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "gtmsm train: error: --tensorboard needs the tensorboard package: pip install "
        "'gtmsm[tensorboard]' (or pip install tensorboard)"]
    assert captured.out == "" and not out.exists()
    with pytest.raises(ValueError, match="`tensorboard` needs the tensorboard package"):
        make_config("debug", out_dir=str(out), tensorboard=True)
    assert make_config("debug", out_dir=str(out)).run.tensorboard is False  # off by default, no package needed

"""Hostile plug-ins (``--model``): each way a plug-in can fail — sleeping in fit, raising in fit or
predict, NaN, the wrong shape, uint8 pixels, values outside [0, 1], SystemExit(0) — is one failed
line in the report while every other model's rows are still computed and saved; a constructor
that fails is one ``--model`` error before any training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness lives in the checkout's benchmarks/, not in an installed package

from benchmarks.harness import runner  # noqa: E402
from benchmarks.harness.conditions import CONDITIONS  # noqa: E402
from benchmarks.harness.models import load_model_class  # noqa: E402
from benchmarks.harness.plan import Plan, check_plan  # noqa: E402
from benchmarks.harness.plugins import Guard, PluginFailed, build_plugin, prediction_problem  # noqa: E402
from benchmarks.harness.report import write_outputs  # noqa: E402
from benchmarks.harness.targets import GTMSM_NAME  # noqa: E402
from gtmsm_cli.signals import Interrupted  # noqa: E402
from gtmsm_model.baselines import Budget, MemorisationMean  # noqa: E402

PLUGINS = '''
import json, os, shutil, time
import numpy as np

class Base:
    uses_true_positions = False
    def fit(self, sampler, budget):
        pass
    def predict(self, observations, actions, tau, positions=None):
        shape = (len(actions), actions.shape[1] - tau, *observations.shape[2:])
        return self.fill(shape)
    def fill(self, shape):
        return np.full(shape, 0.5, np.float32)

class Good(Base):
    name = "good"
    def fit(self, sampler, budget):  # what rows.json holds while a plug-in runs
        shutil.copy(os.environ["PLUGIN_TEST_ROWS"], os.environ["PLUGIN_TEST_ROWS"] + ".seen")

class Vandal(Base):
    name = "vandal"
    def predict(self, observations, actions, tau, positions=None):
        observations[...] = 0  # tries to alter the test set every later model is scored on
        actions[...] = 0
        return super().predict(observations, actions, tau, positions)

class Sleeps(Base):
    name = "sleeps"
    def fit(self, sampler, budget):
        time.sleep(1000)

class RaisesInFit(Base):
    name = "raises in fit"
    def fit(self, sampler, budget):
        raise ValueError("bad | batch")

class RaisesInPredict(Base):
    name = "raises in predict"
    def fill(self, shape):
        raise RuntimeError("no prediction")

class ReturnsNaN(Base):
    name = "nan"
    def fill(self, shape):
        return np.full(shape, np.nan, np.float32)

class WrongShape(Base):
    name = "wrong shape"
    def fill(self, shape):
        return np.zeros((shape[0], shape[1] - 1, *shape[2:]), np.float32)

class Uint8(Base):
    name = "uint8"
    def fill(self, shape):
        return np.full(shape, 255, np.uint8)

class Minus50(Base):
    name = "minus 50"
    def fill(self, shape):
        return np.full(shape, -50.0, np.float32)

class ExitsInFit(Base):
    name = "exits"
    def fit(self, sampler, budget):
        raise SystemExit(0)

class BadConstructor(Base):
    name = "bad constructor"
    def __init__(self):
        raise RuntimeError("no GPU here")

class InterruptedInFit(Base):
    name = "interrupted"
    def fit(self, sampler, budget):
        from gtmsm_cli.signals import Interrupted
        raise Interrupted("SIGTERM")  # what SIGTERM raises in the main thread during fit

class SwallowsAlarm(Base):
    name = "swallows"
    def fit(self, sampler, budget):
        while True:
            try:
                time.sleep(1000)
            except BaseException:
                pass
'''

FAILING = {"Sleeps": "timed out after 2 s in fit", "RaisesInFit": "fit raised ValueError: bad | batch",
           "RaisesInPredict": "predict on 'reference' raised RuntimeError: no prediction",
           "ReturnsNaN": "predict on 'reference' returned NaN",
           "WrongShape": "predict on 'reference' returned shape (4, 15, 8, 8, 3), expected (4, 16, 8, 8, 3)",
           "Uint8": "predict on 'reference' returned dtype uint8",
           "Minus50": "predict on 'reference' returned values outside [0, 1] (min -50, max -50)",
           "ExitsInFit": "fit raised SystemExit(0)"}


def load_script():
    from tests.test_compare_models import load_script as load_compare_models

    return load_compare_models()


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "hostile.py"
    path.write_text(PLUGINS)
    return path


@pytest.fixture(scope="module")
def hostile_run(plugin_file, tmp_path_factory):
    """One tiny run (reference condition, no sweep) with every hostile plug-in
    and one good one after them."""
    out = tmp_path_factory.mktemp("hostile")
    specs = [f"{plugin_file}:{name}" for name in FAILING] + [f"{plugin_file}:Vandal", f"{plugin_file}:Good"]
    plan = Plan(seeds=[0], quick=True, conditions=["reference"], sweep=False, ppo_policy=None,
                eval_sequences=4, threads=1, run_dir=out / "runs", plugins=specs, model_timeout_s=2)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("PLUGIN_TEST_ROWS", str(out / "runs" / "rows.json"))
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        harness = runner.run(plan)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()
    seconds = time.perf_counter() - start
    report = write_outputs(harness, out / "report", "test", seconds, {})
    return harness, report, out, seconds


def test_each_failing_plugin_is_one_failed_line_and_the_others_are_saved(hostile_run):
    harness, report, out, seconds = hostile_run
    saved = json.loads((out / "runs" / "rows.json").read_text())
    by_model = {row["model"]: row for row in saved["rows"]}
    for cls, reason in FAILING.items():
        label = next(row["model"] for row in saved["rows"] if row["trained_on"].endswith(f":{cls})"))
        row = by_model[label]
        assert row["failed"] and reason in row["failed"], (cls, row["failed"])
        assert row["scores"]["mse"] is None  # no score for a model whose predictions were refused
    good = by_model["good @1×"]
    assert good["failed"] is None and good["scores"]["mse"] is not None
    assert by_model[GTMSM_NAME]["failed"] is None and by_model[GTMSM_NAME]["scores"]["mse"] is not None
    assert seconds < 60  # the sleeping plug-in was stopped at its 2 s limit


def test_a_plugin_cannot_alter_the_test_set(hostile_run):
    harness, _, _, _ = hostile_run
    tau = CONDITIONS["reference"].lengths(True)[0]
    again = runner.score(MemorisationMean(), harness.rollouts["reference"], tau)
    before = next(row.scores for row in harness.rows if row.model == MemorisationMean.name)
    assert again.mse == before.mse and again.mse_revisited == before.mse_revisited


def test_rows_are_saved_before_any_plugin_runs(hostile_run):
    _, _, out, _ = hostile_run
    seen = json.loads((out / "runs" / "rows.json.seen").read_text())  # copied by the good plug-in's fit
    seen_models = {row["model"] for row in seen["rows"]}
    assert GTMSM_NAME in seen_models and "retrieval transformer @1×" in seen_models
    assert "sleeps @1×" in seen_models  # the plug-ins before it, failed rows included


def test_report_has_one_fail_line_per_failed_model_and_judges_nothing_else_by_them(hostile_run):
    _, report, out, _ = hostile_run
    fails = [c for c in report["checks"] if c["target"].endswith("ran to the end")]
    assert len(fails) == len(FAILING) and not any(c["passed"] for c in fails)
    judged = " ".join(c["target"] for c in report["checks"] if c not in fails)
    assert "minus 50" not in judged and "uint8" not in judged and "good @1×" in judged
    markdown = (out / "report" / "compare.md").read_text()
    assert "FAIL: sleeps @1× ran to the end — failed: timed out after 2 s in fit (seed 0)" in markdown
    assert "**failed**: fit raised ValueError: bad \\| batch" in markdown  # the table cell stays one cell
    entry = next(e for e in report["summary"] if e["model"] == "uint8 @1×")
    assert entry["seeds"] == 0 and not entry["below_trivial"]


def test_a_failed_plugin_is_not_run_on_later_seeds(hostile_run, plugin_file):
    harness, _, _, _ = hostile_run
    spec = f"{plugin_file}:Sleeps"
    before = len(harness.rows)
    start = time.perf_counter()
    harness.plugin_rows(spec, harness.plugin_classes[spec], 1, None, None)
    assert time.perf_counter() - start < 1
    added = harness.rows[before:]
    assert [row.seed for row in added] == [1] and added[0].failed == "not run (failed on seed 0)"
    del harness.rows[before:]


def test_the_users_stop_during_a_plugin_ends_the_run(hostile_run, plugin_file):
    harness, _, _, _ = hostile_run
    spec = f"{plugin_file}:InterruptedInFit"
    before = len(harness.rows)
    with pytest.raises(Interrupted):
        harness.plugin_rows(spec, load_model_class(spec), 0, None, Budget(max_seconds=1.0))
    assert len(harness.rows) == before and spec not in harness.failed_plugins


def test_constructor_error_is_one_line_before_any_training(plugin_file, tmp_path, capsys, monkeypatch):
    compare_models = load_script()
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("trained before checking the plug-ins"))
    with pytest.raises(SystemExit) as stop:
        compare_models.main(["--quick", "--out-dir", str(tmp_path / "out"), "--run-dir", str(tmp_path / "runs"),
                             "--model", f"{plugin_file}:Good", "--model", f"{plugin_file}:BadConstructor"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: --model" in err[0] and "BadConstructor" in err[0]
    assert "the constructor raised RuntimeError: no GPU here" in err[0]
    assert not (tmp_path / "runs" / "gtmsm-seed0").exists()


def test_constructor_that_hangs_or_exits_is_refused(tmp_path):
    (tmp_path / "ctor.py").write_text(
        "import time\nclass Base:\n    name = 'x'\n    uses_true_positions = False\n"
        "    def fit(self, s, b): pass\n    def predict(self, o, a, t, p=None): pass\n"
        "class Hangs(Base):\n    def __init__(self): time.sleep(1000)\n"
        "class Exits(Base):\n    def __init__(self): raise SystemExit(0)\n"
        "class Unnamed(Base):\n    name = ''\n")
    for cls, reason in (("Hangs", "timed out after 0.5 s in the constructor"),
                        ("Exits", "the constructor raised SystemExit(0)"), ("Unnamed", "not a non-empty string")):
        plan = Plan(seeds=[0], conditions=["reference"], ppo_policy=None, run_dir=tmp_path / "runs",
                    plugins=[f"{tmp_path / 'ctor.py'}:{cls}"], model_timeout_s=0.5)
        with pytest.raises(ValueError, match="--model") as error:
            check_plan(plan)
        assert reason in str(error.value)


@pytest.mark.parametrize("predicted, problem", [
    (np.full((2, 3, 4, 4, 3), 0.5, np.float32), None),
    (np.full((2, 3, 4, 4, 3), 1.0, np.float64), None),
    (np.full((2, 3, 4, 4, 3), 255, np.uint8), "dtype uint8"),
    (np.full((2, 3, 4, 4, 3), -50.0, np.float32), "outside [0, 1]"),
    (np.full((2, 3, 4, 4, 3), 1.01, np.float32), "outside [0, 1]"),
    (np.full((2, 3, 4, 4, 3), np.nan, np.float32), "NaN"),
    (np.full((2, 3, 4, 4, 3), np.inf, np.float32), "inf"),
    (np.zeros((2, 3, 4, 4), np.float32), "shape (2, 3, 4, 4), expected (2, 3, 4, 4, 3)"),
    ([[0.5]], "a list, expected a numpy array"),
])
def test_prediction_problems(predicted, problem):
    found = prediction_problem(predicted, (2, 3, 4, 4, 3))
    assert found is None if problem is None else problem in found


def test_a_plugin_that_swallows_every_interrupt_ends_the_run_in_one_line(plugin_file):
    script = (f"import importlib.util as u; s = u.spec_from_file_location('h', {str(plugin_file)!r}); "
              "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
              "from benchmarks.harness.plugins import Guard\n"
              "Guard(0.3, who='plug-in h:SwallowsAlarm', grace_s=1).call('fit', m.SwallowsAlarm().fit, None, None)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert time.perf_counter() - start < 30
    assert done.returncode == 124, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plug-in h:SwallowsAlarm is still running 1 s after")
    assert "timed out after 0.3 s in fit" in lines[0]


def test_guard_lets_the_users_stop_through_and_shares_one_limit():
    def interrupted(stop: BaseException):
        raise stop

    for stop in (KeyboardInterrupt(), Interrupted("SIGTERM")):
        with pytest.raises(type(stop)):
            Guard(5).call("fit", interrupted, stop)
    guard = Guard(0.4)
    guard.call("fit", time.sleep, 0.25)
    with pytest.raises(PluginFailed, match="timed out after 0.4 s in predict"):
        guard.call("predict", time.sleep, 10)
    assert guard.used_s < 2


def test_build_plugin_returns_a_named_instance(plugin_file):
    model = build_plugin("x", load_model_class(f"{plugin_file}:Good"))
    assert model.name == "good"


def test_the_model_timeout_flag_reaches_the_plan():
    compare_models = load_script()
    plan = compare_models.make_plan(compare_models.parse_args(["--quick", "--model-timeout-s", "2.5"]))
    assert plan.model_timeout_s == 2.5
    assert compare_models.make_plan(compare_models.parse_args(["--quick"])).model_timeout_s is None


@pytest.mark.parametrize(("code", "reason"), [
    ("raise SystemExit(0)\n", "raised SystemExit(0)"),
    ("import time\ntime.sleep(60)\n", "timed out after 1 s in running"),
])
def test_a_plugin_file_that_exits_or_hangs_while_imported_is_one_error(tmp_path: Path, code: str,
                                                                         reason: str) -> None:
    from benchmarks.harness.models import load_model_class

    plugin = tmp_path / "plugin.py"
    plugin.write_text(code + "class X:\n    pass\n")
    started = time.monotonic()
    with pytest.raises(ValueError, match=re.escape(reason)):
        load_model_class(f"{plugin}:X", limit_s=1)
    assert time.monotonic() - started < 30

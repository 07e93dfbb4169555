"""The comparison benchmark: --quick runs end to end (every condition, every model, a plug-in
from the README) and writes its files; flags parse; plug-ins load by module or by file."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness lives in the checkout's benchmarks/, not in an installed package

from benchmarks.harness import runner, scoreboard  # noqa: E402
from benchmarks.harness.conditions import CONDITIONS  # noqa: E402
from benchmarks.harness.models import PPO_NAME, load_model_class  # noqa: E402
from benchmarks.harness.targets import GTMSM_NAME  # noqa: E402
from gtmsm_model.baselines import WorldModel  # noqa: E402


def load_script():
    spec = importlib.util.spec_from_file_location("compare_models", ROOT / "benchmarks" / "compare_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building Args
    spec.loader.exec_module(module)
    return module


compare_models = load_script()


def git_status() -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout


STATUS_BEFORE = git_status()


def readme_example() -> str:
    """The ~30-line model of the README's "Add your model" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Add your model"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    (out / "my_model.py").write_text(readme_example())
    threads = torch.get_num_threads()
    try:
        report = compare_models.main(["--quick", "--threads", "1", "--out-dir", str(out), "--run-dir",
                                      str(out / "runs"), "--model", f"{out / 'my_model.py'}:DeadReckoning"])
    finally:
        torch.set_num_threads(threads)
    return out, report


def test_quick_writes_summary_with_every_condition_and_model(quick_run):
    out, report = quick_run
    files = ["compare.md", "compare.json", "compare_overview.png", "peer_sweep.md", "peer_sweep.json"]
    files += [f"compare_horizon_{name.replace(' ', '_')}.png" for name in CONDITIONS]
    for name in files:
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "compare.json").read_text())
    models = {"GTM-SM", "GTM-SM, learned localiser", "GTM-SM, seed formulation", "oracle-position VAE",
              "VAE reconstruction (floor)", "dataset mean", "memorisation mean", "copy last observed", "oracle memory",
              "canvas oracle", "no-learning localise + lookup", "no-learning localise + canvas",
              "retrieval transformer @1×", "pose retrieval @1×", "RSSM @1×", "action LSTM @1×", "dead reckoning @1×"}
    pairs = {(row["condition"], row["model"]) for row in saved["summary"]}
    assert pairs == {(c, m) for c in CONDITIONS for m in models} | {("reference", PPO_NAME)}
    for row in saved["summary"]:
        assert {"condition", "model", "seeds", "mse_revisited", "mse_novel", "mse_revisited_late"} <= set(row)
        assert math.isfinite(row["mse"]) and row["seeds"] >= 1
        if row["model"] in ("oracle memory", "canvas oracle"):
            assert row["mse_revisited"] < 1e-12  # exact up to float rounding of overlapping pastes
    markdown = (out / "compare.md").read_text()
    assert all(f"## {name}" in markdown for name in CONDITIONS)
    assert "command:" in markdown and "machine:" in markdown and "date:" in markdown
    if scoreboard.commit() is not None:  # a git checkout: the commit is read when the run starts
        assert re.search(r"- commit: [0-9a-f]{7,}", markdown)
    assert "what every learned model saw in training" in markdown and "what each row is given" in markdown
    assert report["wall_seconds"] < 120
    assert any(c["target"].startswith("--quick wall-clock") and c["passed"] for c in saved["checks"])
    assert {r["family"] for r in saved["sweep"] if r["chosen"]} == {"retrieval transformer", "pose retrieval", "RSSM",
                                                                   "action LSTM"}  # every learned peer is swept
    kinds = {row["model"]: row["kind"] for row in saved["summary"]}
    assert kinds["RSSM @1×"] == kinds["action LSTM @1×"] == "control"
    assert kinds["retrieval transformer @1×"] == kinds["pose retrieval @1×"] == "learned peer"
    assert kinds["no-learning localise + lookup"] == "no learning"
    for row in saved["summary"]:  # the worst case beside the average, and a bootstrap interval
        assert {"revisited_p99", "revisited_max", "rollouts_lost", "mse_revisited_ci95"} <= set(row)
    assert "smoke run" in markdown
    learning = markdown[markdown.index("## What learning adds"):markdown.index("## reference")]
    for name in CONDITIONS:  # GTM-SM's best against the best no-learning row and the best learned peer, everywhere
        assert f"| {name} | " in learning
    assert "no-learning localise" in learning and ("retrieval transformer @1×" in learning or "pose retrieval @1×" in learning)
    assert saved["args"]["workers"] == 2 and runner._HARNESS is None  # the jobs ran in worker processes, not here
    scores = {path.name for path in (out / "scores").glob("*.json")}
    assert len(scores) == len(saved["summary"]) and "GTM-SM__reference.json" in scores
    assert not any(row["failed"] for row in saved["rows"]) and not any(e["failed"] for e in saved["summary"])


def test_gtmsm_row_is_the_model_through_its_public_api(quick_run):
    _, report = quick_run
    reference = {row["model"]: row for row in report["summary"] if row["condition"] == "reference"}
    # GTM-SM decodes through its VAE, so on revisited steps it cannot beat its own floor by much
    assert reference[GTMSM_NAME]["mse_revisited"] >= 0.5 * reference["VAE reconstruction (floor)"]["mse_revisited"]


def test_plugins_load_by_module_and_by_file(tmp_path, monkeypatch):
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "my_module.py").write_text(readme_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = load_model_class("my_pkg.my_module:DeadReckoning")
    by_file = load_model_class(f"{tmp_path / 'my_pkg' / 'my_module.py'}:DeadReckoning")
    for cls in (by_module, by_file):
        assert isinstance(cls(), WorldModel) and cls.name == "dead reckoning"
    for bad in ("my_pkg.my_module", "my_pkg.missing:X", "my_pkg.my_module:Nope", f"{tmp_path}/nofile.py:X"):
        with pytest.raises(ValueError, match="--model"):
            load_model_class(bad)


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        compare_models.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--seeds", "--preset", "--workers", "--conditions", "--model", "--quick", "--out-dir",
                 "--ppo-policy", "--publish"):
        assert flag in text
    args = compare_models.parse_args(["--seeds", "0", "1", "--conditions", "maze", "photos", "--ppo-policy", "none"])
    assert args.seeds == [0, 1] and args.conditions == ["maze", "photos"] and args.ppo_policy is None


def test_bad_flags_are_one_line_errors(capsys):
    for argv in (["--seeds", "-1"], ["--conditions", "moon"], ["--workers", "0"]):
        with pytest.raises(SystemExit) as stop:
            compare_models.parse_args(argv)
        assert stop.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_quick_leaves_the_repository_as_it_was(quick_run):
    assert git_status() == STATUS_BEFORE  # nothing committed (or not) changed: the run wrote under its out-dir only


def test_quick_never_writes_the_committed_results(capsys):
    for flags in (["--publish"], ["--out-dir", str(ROOT / "benchmarks" / "results")]):
        with pytest.raises(SystemExit) as stop:
            compare_models.main(["--quick", *flags])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error: --quick is a smoke run" in err[0]


def test_a_missing_optional_package_is_one_error_line_before_any_work(capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(SystemExit) as stop:
        compare_models.main(["--quick", "--out-dir", str(tmp_path / "out"), "--run-dir", str(tmp_path / "runs")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scikit-learn" in err[0] and ".[dev]" in err[0] and "photos" in err[0]
    assert not (tmp_path / "runs").exists()  # checked before any work


def test_a_plug_in_is_ranked_among_the_committed_scores():
    from benchmarks.harness.scoreboard import ranking

    committed = [{"model": "GTM-SM", "condition": "reference", "kind": "GTM-SM", "mse_revisited": 0.0003},
                 {"model": "memorisation mean", "condition": "reference", "kind": "bound", "mse_revisited": 0.026},
                 {"model": "canvas oracle", "condition": "reference", "kind": "oracle", "mse_revisited": 0.0}]
    mine = {"model": "mine @1×", "condition": "reference", "kind": "learned peer", "mse_revisited": 0.01}
    lines = ranking(mine, committed)
    ranked = [line.split("|")[2].strip() for line in lines[3:]]
    assert ranked == ["GTM-SM", "**mine @1×** (this run)", "memorisation mean"]  # oracles left out

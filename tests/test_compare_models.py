"""The model-comparison benchmark's --quick mode runs end to end and writes its three files."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_models.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("compare_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building Args
    spec.loader.exec_module(module)
    return module


def test_quick_mode_writes_table_json_and_plot(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        report = load_benchmark().main(
            ["--quick", "--threads", "1", "--out-dir", str(tmp_path), "--run-dir", str(tmp_path / "runs")]
        )
    finally:
        torch.set_num_threads(threads)
    for name in ("compare.md", "compare.json", "compare_horizon.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "compare.json").read_text())
    expected = {"GTM-SM", "RSSM", "action LSTM", "dataset mean", "copy last observed", "oracle memory",
                "oracle-position VAE", "VAE reconstruction (floor)"}
    assert set(saved["summary"]) == expected == set(report["summary"])
    assert saved["summary"]["oracle memory"]["mse_revisited"] == 0
    assert saved["summary"]["oracle memory"]["uses_true_positions"] is True
    assert len(saved["checks"]) == 3 and all(isinstance(c["passed"], bool) for c in saved["checks"])
    markdown = (tmp_path / "compare.md").read_text()
    assert "command:" in markdown and "machine:" in markdown and "date:" in markdown
    assert all(f"| {name} |" in markdown for name in expected)
    output = capsys.readouterr().out
    assert "targets:" in output and ("PASS" in output or "FAIL" in output)
    for entry in saved["summary"].values():
        assert math.isfinite(entry["mse"])


def test_help_lists_every_option(capsys):
    module = load_benchmark()
    try:
        module.parse_args(["--help"])
    except SystemExit:
        pass
    text = capsys.readouterr().out
    for flag in ("--image-source", "--seeds", "--preset", "--iterations", "--quick", "--out-dir"):
        assert flag in text
    args = module.parse_args(["--seeds", "0", "1", "--iterations", "5", "--image-source", "faces/"])
    assert args.seeds == [0, 1] and args.iterations == 5 and args.image_source == "faces/"

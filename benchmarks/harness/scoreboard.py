"""The scoreboard: one JSON per model and condition (``scores/<model>__<condition>.json``), so a new model's
run can be ranked against the committed ones without rerunning them (Crafter keeps its ``scores/*.json``
the same way)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO_ROOT
from gtmsm_cli.files import write_text
from gtmsm_model.evaluate import json_safe

COMMITTED = REPO_ROOT / "benchmarks" / "results" / "scores"
"""The committed scoreboard (written only by ``compare_models.py --publish``)."""
FIELDS = ("kind", "seeds", "mse", "mse_std", "mse_revisited", "mse_revisited_std", "mse_revisited_ci95", "mse_novel",
          "mse_novel_std", "revisited_p99", "revisited_max", "rollouts_lost", "train_seconds", "train_iterations",
          "trained_on", "below_trivial", "failed")


def file_name(model: str, condition: str) -> str:
    """A score file's name: the model and condition with anything but letters, digits, ``.`` and ``-`` as ``_``."""
    clean = lambda text: re.sub(r"[^A-Za-z0-9.\-]+", "_", text).strip("_")  # noqa: E731
    return f"{clean(model)}__{clean(condition)}.json"


def commit() -> str | None:
    """The repository's HEAD commit (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def code_revision() -> str | None:
    """HEAD, with "+ uncommitted changes" when tracked files differ from it (None outside a git checkout):
    what a run says it measured, read before it starts."""
    head = commit()
    if head is None:
        return None
    try:
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return head
    return f"{head} + uncommitted changes" if status.strip() else head


def write_scores(summary: list[dict[str, Any]], folder: Path, provenance: dict[str, Any]) -> list[Path]:
    """One file per summary entry into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for entry in summary:
        record = {"model": entry["model"], "condition": entry["condition"],
                  **{key: entry.get(key) for key in FIELDS}, **provenance}
        path = folder / file_name(entry["model"], entry["condition"])
        write_text(path, json.dumps(json_safe(record), indent=1, allow_nan=False))
        paths.append(path)
    return paths


def load_scores(folder: Path = COMMITTED) -> list[dict[str, Any]]:
    """Every score file in ``folder`` (none if it does not exist)."""
    if not folder.is_dir():
        return []
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def ranking(mine: dict[str, Any], committed: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: ``mine`` ranked by revisited MSE among the committed rows of its condition."""
    rows = [r for r in committed if r["condition"] == mine["condition"] and r["model"] != mine["model"]
            and r.get("mse_revisited") is not None and r.get("kind") != "oracle"]
    rows.append({**mine, "model": f"**{mine['model']}** (this run)"})
    value = lambda r: r.get("mse_revisited")  # noqa: E731
    rows.sort(key=lambda r: value(r) if isinstance(value(r), (int, float)) and value(r) == value(r) else float("inf"))
    lines = [f"{mine['condition']}: revisited MSE, ranked among the committed rows (oracles left out)",
             "| rank | model | kind | revisited MSE | novel MSE | worst rollout |", "|---:|---|---|---:|---:|---:|"]
    fmt = lambda v: "—" if v is None else f"{v:.5f}"  # noqa: E731
    for rank, r in enumerate(rows, 1):
        lines.append(f"| {rank} | {r['model']} | {r.get('kind')} | {fmt(r.get('mse_revisited'))} | "
                     f"{fmt(r.get('mse_novel'))} | {fmt(r.get('revisited_max'))} |")
    return lines

"""A run folder and where every number in it came from.

``gtmsm train --out-dir D`` owns ``D``: ``checkpoint.pt``, ``config.json`` (the resolved config,
package versions, machine), ``train_log.jsonl`` (one JSON line per optimisation step: step, phase,
every loss part, seconds), ``history.json`` (the periodic held-out evaluations), ``loss.png``, and
after evaluation ``metrics.json`` with the plots. A second run into a folder that holds a run is
refused unless it resumes it (``--resume``) or replaces it (``--overwrite``, which removes every
file listed here so no stale metrics or plots describe a model that is gone).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from gtmsm_cli.checks import output_dir_problem

RUN_FILES = (
    "checkpoint.pt", "config.json", "train_log.jsonl", "history.json", "metrics.json",
    "loss.png", "horizon.png", "prediction.png", "state_map.png",
)
PACKAGES = ("gtmsm", "torch", "numpy", "gymnasium", "stable-baselines3", "pygame-ce")


class RunFolderError(ValueError):
    """The out-dir already holds a run and the caller said neither resume nor overwrite."""


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_description() -> dict[str, Any]:
    """What produced a number: OS, CPU architecture, core count, date (UTC)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def umask_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` would give under the user's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class RunFolder:
    """The files of one training run (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    def existing_run_files(self) -> list[str]:
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def claim(self, *, resume: bool, overwrite: bool) -> None:
        """Check the folder may be used, before any expensive work; ``overwrite`` clears it."""
        problem = output_dir_problem(self.path)  # creates it: a typo'd or read-only path fails now
        if problem is not None:
            raise RunFolderError(f"--out-dir: {problem}")
        existing = self.existing_run_files()
        if self.is_residue(existing):  # a run that failed before its first step: nothing to lose
            existing = []
        if overwrite:
            for name in existing:
                (self.path / name).unlink()
            return
        if existing and not (resume and self.checkpoint.exists()):
            if resume:
                raise RunFolderError(
                    f"--resume: {self.path} holds {', '.join(existing)} but no checkpoint.pt to resume; "
                    "pass --overwrite to start afresh there")
            raise RunFolderError(
                f"--out-dir {self.path} already holds a run ({', '.join(existing)}); pass --resume to "
                "continue it, --overwrite to replace it, or choose another --out-dir")

    def is_residue(self, existing: list[str]) -> bool:
        """Only a config.json and an empty log: what a run that stopped before its first step leaves."""
        return (bool(existing) and set(existing) <= {"config.json", "train_log.jsonl"}
                and not (self.log.exists() and self.log.stat().st_size))

    def write_config(self, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"config": config, "packages": package_versions(), "machine": machine_description(),
                  "command": sys.argv, **(extra or {})}
        self.config.write_text(json.dumps(record, indent=1))

    def truncate_log(self, last_step: int) -> None:
        """Drop log lines after ``last_step`` (a resumed run re-does them, exactly)."""
        if not self.log.exists():
            return
        kept = []
        for line in self.log.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                break  # a line cut by a kill: everything after it is redone
        self.log.write_text("".join(line + "\n" for line in kept))

    def read_log(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        records = []
        for line in self.log.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                break
        return records

"""A run folder and where every number in it came from.

``gtmsm train --out-dir D`` owns ``D``: ``checkpoint.pt``, ``config.json`` (the resolved config,
package versions, machine), ``train_log.jsonl`` (one JSON line per optimisation step: step, phase,
every loss part, seconds), ``history.json`` (the periodic held-out evaluations), ``loss.png``, and
after evaluation ``metrics.json`` with the plots. A second run into a folder that holds a run is
refused unless it resumes it (``--resume``) or replaces it (``--overwrite``, which removes every
file listed here so no stale metrics or plots describe a model that is gone). A folder whose run
stopped before its first checkpoint holds nothing to continue: ``--resume`` (or ``--overwrite``)
starts it afresh.

One writer per folder: the process that claims a folder holds an exclusive ``flock`` on its
``run.lock`` file (which records the holder's pid, host and start time) until it exits; the kernel
releases it on any exit, ``kill -9`` included, so a killed run's folder is never left locked.
A second ``gtmsm train``/``run`` (``--resume`` and ``--overwrite`` too) into a locked folder is
refused before it touches any file there, and so is ``gtmsm evaluate`` writing into it: its
metrics and plots would describe a checkpoint the running process is about to replace. Under
``torchrun`` rank 0 holds the lock for the run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from gtmsm_cli.checks import output_dir_problem
from gtmsm_cli.files import os_error_reason, umask_mode, write_text

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock (one writer is then the user's to ensure)
    fcntl = None  # type: ignore[assignment]

RUN_FILES = (
    "checkpoint.pt", "config.json", "train_log.jsonl", "history.json", "metrics.json",
    "loss.png", "horizon.png", "prediction.png", "state_map.png", "tensorboard",
)
PACKAGES = ("gtmsm", "torch", "numpy", "gymnasium", "stable-baselines3", "pygame-ce")


LOCK_NAME = "run.lock"

_HELD: dict[Path, int] = {}
"""The run folders this process has locked (resolved path -> the open descriptor holding the lock)."""


class RunFolderError(ValueError):
    """The out-dir already holds a run and the caller said neither resume nor overwrite."""


class RunFolderBusy(RunFolderError):
    """Another process holds the out-dir's lock."""


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

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_NAME

    def existing_run_files(self) -> list[str]:
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def lock(self, field: str = "out_dir", create: bool = True) -> None:
        """Hold this folder's lock until the process exits (or :meth:`unlock`); a folder this
        process already holds stays held. ``RunFolderBusy`` naming the setting ``field`` (written
        ```field```) when another process holds it. ``create=False``: a folder without a ``run.lock`` file (never a run's) is left as it is."""
        name = f"`{field}`"
        key = self.path.resolve()
        if fcntl is None or key in _HELD:
            return
        try:
            descriptor = os.open(self.lock_file, os.O_RDWR | (os.O_CREAT if create else 0), umask_mode())
        except FileNotFoundError:
            if create:
                raise
            return
        except OSError as error:
            raise RunFolderError(f"{name}: cannot lock {self.lock_file}: {os_error_reason(error)}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(descriptor, 4096, 0).decode("utf-8", "replace")
            os.close(descriptor)
            raise RunFolderBusy(f"{name} {self.path} is in use by another gtmsm process ({_holder_text(holder)}); "
                                f"wait for it to end or choose another {name}") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": ["gtmsm", *sys.argv[1:]]}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(record).encode(), 0)
        _HELD[key] = descriptor

    def unlock(self) -> None:
        """Release the lock :meth:`lock` took (the lock file stays: removing it would race)."""
        descriptor = _HELD.pop(self.path.resolve(), None)
        if descriptor is not None:
            os.close(descriptor)

    def claim(self, *, resume: bool, overwrite: bool) -> None:
        """Check the folder may be used and lock it, before any expensive work and before any file
        in it is written or removed; ``overwrite`` clears it, and so does ``resume`` when the run
        there never wrote a checkpoint (there is nothing to continue: it starts afresh)."""
        problem = output_dir_problem(self.path)  # creates it: a typo'd or read-only path fails now
        if problem is not None:
            raise RunFolderError(f"`out_dir`: {problem}")
        self.lock()
        existing = self.existing_run_files()
        if self.is_residue(existing):  # a run that failed before its first step: nothing to lose
            existing = []
        if overwrite or (resume and not self.checkpoint.exists()):
            for name in existing:
                target = self.path / name
                if target.is_dir() and not target.is_symlink():  # tensorboard/: the run's event files
                    shutil.rmtree(target)
                else:
                    target.unlink()
            return
        if existing and not resume:
            if not self.checkpoint.exists():
                raise RunFolderError(
                    f"`out_dir` {self.path} already holds a run that stopped before its first checkpoint "
                    f"({', '.join(existing)}); pass `resume` or `overwrite` to start it afresh there, "
                    "or choose another `out_dir`")
            raise RunFolderError(
                f"`out_dir` {self.path} already holds a run ({', '.join(existing)}); pass `resume` to "
                "continue it, `overwrite` to replace it, or choose another `out_dir`")

    def is_residue(self, existing: list[str]) -> bool:
        """Only a config.json and an empty log: what a run that stopped before its first step leaves."""
        return (bool(existing) and set(existing) <= {"config.json", "train_log.jsonl"}
                and not (self.log.exists() and self.log.stat().st_size))

    def write_config(self, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"config": config, "packages": package_versions(), "machine": machine_description(),
                  "command": sys.argv, **(extra or {})}
        write_text(self.config, json.dumps(record, indent=1))

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """``history.json``: the periodic held-out evaluations, written atomically."""
        write_text(self.history, json.dumps(history, indent=1))

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
        write_text(self.log, "".join(line + "\n" for line in kept))

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


def _holder_text(record: str) -> str:
    """The lock holder's record (JSON: pid, host, started) in words."""
    try:
        holder = json.loads(record)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"

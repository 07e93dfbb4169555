"""Where a training run's numbers are logged while it trains: ``train_log.jsonl`` always, and a
TensorBoard event log in ``<out_dir>/tensorboard/`` when ``RunConfig.tensorboard`` asks for one.

Both receive the same scalars: every step's loss parts and seconds (tags ``train/<part>``,
``train/seconds``) and every held-out evaluation's metrics (tags ``eval/<metric>``), at the global
step. A resumed run truncates the JSON log after the checkpoint's step and opens the event log
with ``purge_step`` one past it, so TensorBoard hides the steps the run redoes, as the JSON log
drops them.

TensorBoard is optional (the ``tensorboard`` extra); :func:`tensorboard_problem` says, before any
work, that it is missing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from gtmsm_cli.flags import error_text

TENSORBOARD_DIR = "tensorboard"
"""The event log's folder inside the run folder."""

TENSORBOARD_EXTRA = "tensorboard"
"""The package extra that installs TensorBoard."""

NOT_LOGGED = ("step", "seconds", "sequences")
"""Evaluation record keys that are no metric (the step is the x axis)."""


def tensorboard_problem() -> str | None:
    """Why the ``tensorboard`` setting cannot be used here (the package is missing, or does not
    load into torch), else ``None``. The message names the field between backticks, as config
    errors do."""
    install = f"pip install 'gtmsm[{TENSORBOARD_EXTRA}]'"
    try:
        found = importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"`tensorboard` needs the tensorboard package: {install} (or pip install tensorboard)"
    try:
        import torch.utils.tensorboard  # noqa: F401 -- checks the writer loads, as training will use it
    except ImportError as error:
        return f"`tensorboard`: the tensorboard package does not load ({error_text(error)}); reinstall it: {install}"
    return None


class TrainingLog:
    """The open logs of one run (only the main process keeps one): a context manager.

    ``log``: the JSON-lines file, appended to; ``tensorboard``: the event log's folder, or ``None``
    for no event log; ``step``: the step the run starts from (0, or the checkpoint's).
    """

    def __init__(self, log: Path, tensorboard: Path | None = None, step: int = 0) -> None:
        self.file = log.open("a")
        self.writer: Any = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tensorboard), purge_step=step + 1)

    def step(self, step: int, phase: str, seconds: float, parts: dict[str, float]) -> None:
        """One optimisation step's record: its phase, the run's seconds so far, its loss parts."""
        self.file.write(json.dumps({"step": step, "phase": phase, "seconds": round(seconds, 3),
                                    **{k: round(v, 6) for k, v in parts.items()}}) + "\n")
        if self.writer is not None:
            for name, value in parts.items():
                self.writer.add_scalar(f"train/{name}", value, step)
            self.writer.add_scalar("train/seconds", seconds, step)

    def evaluation(self, record: dict[str, Any]) -> None:
        """A held-out evaluation (``train.evaluation_record``) into the event log (the JSON copy
        is ``history.json``)."""
        if self.writer is None:
            return
        for name, value in record.items():
            if name not in NOT_LOGGED and isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{name}", value, record["step"])

    def flush(self) -> None:
        """Everything logged so far on disk (done with every checkpoint)."""
        self.file.flush()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

"""Stopping a training run on request: SIGINT/SIGTERM become a checkpoint, then an exception.

Outside training the entry points turn SIGTERM into a ``KeyboardInterrupt``
(``gtmsm_cli.flags.raise_on_sigterm``); inside the loop both signals only set a flag, so the loop
finishes its step, writes a checkpoint and raises :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after a checkpoint at ``step`` was written."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path) -> None:
        super().__init__(f"{signal_name} at step {step}; checkpoint written to {checkpoint}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


class StopRequests:
    """While active, SIGINT/SIGTERM only set ``requested``; the loop then checkpoints and stops.

    A second Ctrl-C while the checkpoint is being written stops at once (KeyboardInterrupt).
    Outside the main thread signals cannot be caught, so nothing is installed there.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

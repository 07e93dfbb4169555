"""Stopping a training run on request: SIGINT/SIGTERM become a checkpoint, then an exception.

Outside training the entry points turn SIGTERM into a ``KeyboardInterrupt``
(``gtmsm_cli.signals.sigterm_raises``); inside the loop both signals only set a flag
(:class:`StopRequests`, ``gtmsm_cli.signals.StopFlag``), so the loop finishes its step, writes a
checkpoint and raises :class:`TrainingInterrupted`.
"""

from __future__ import annotations

from pathlib import Path

from gtmsm_cli.signals import StopFlag, signal_exit_status


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after a checkpoint at ``step`` was written."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path) -> None:
        super().__init__(f"{signal_name} at step {step}; checkpoint written to {checkpoint}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports it (130 for SIGINT, 143 for SIGTERM)."""
        return signal_exit_status(self.signal_name)


class StopRequests(StopFlag):
    """While active, SIGINT/SIGTERM only set ``requested``; the training loop then writes a
    checkpoint and raises :class:`TrainingInterrupted`. A second Ctrl-C while the checkpoint is
    being written stops at once (``KeyboardInterrupt``)."""

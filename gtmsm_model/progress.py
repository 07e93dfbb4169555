"""Training progress on stderr: one tqdm bar per phase of the schedule.

The VAE warm-up's steps take a fraction of a main-phase step's time, so a single bar over both
would extrapolate the warm-up's rate into the main phase and promise an end minutes too early.
Each phase gets its own bar (its own step count, rate and ETA); a resumed run's bar starts where
the checkpoint stopped, and a phase already finished gets none.
"""

from __future__ import annotations

import sys
from typing import Any

from gtmsm_model.config import Schedule

PHASE_NAMES = {"vae": "VAE warm-up", "main": "main"}
"""Each phase's bar description, by the phase name ``train_step`` reports."""

POSTFIX_EVERY = 50
"""Steps between refreshes of the loss parts shown beside a bar."""


def phase_spans(schedule: Schedule) -> list[tuple[str, int, int]]:
    """The schedule's phases as ``(name, first step, end step)``, global step counts, end exclusive
    (a phase with no steps left out)."""
    spans = [("vae", 0, schedule.vae_warmup_iters), ("main", schedule.vae_warmup_iters, schedule.total_steps)]
    return [(name, start, end) for name, start, end in spans if end > start]


class PhaseBars:
    """The bars of one training run: ``update(step, parts)`` after each step, ``close()`` at the
    end (or use it as a context manager, so an error closes the bar too).

    A phase's bar opens when the run first stands inside that phase (at construction for the phase
    the run starts or resumes in) and closes as the next one opens, so at most one is live. With
    ``enabled`` false nothing is created or printed.
    """

    def __init__(self, schedule: Schedule, step: int, enabled: bool = True) -> None:
        self.spans = phase_spans(schedule)
        self.enabled = enabled
        self.bar: Any = None
        self.phase: str | None = None
        self._open(step)

    def _span_at(self, step: int) -> tuple[str, int, int] | None:
        """The phase whose next step is ``step + 1`` (the one step ``step`` leads into)."""
        for span in self.spans:
            if span[1] <= step < span[2]:
                return span
        return None

    def _open(self, step: int) -> None:
        span = self._span_at(step)
        if not self.enabled or span is None or span[0] == self.phase:
            return
        from tqdm.auto import tqdm

        self.close()
        name, start, end = span
        self.phase = name
        self.bar = tqdm(total=end - start, initial=step - start, desc=PHASE_NAMES[name], unit="step",
                        file=sys.stderr, dynamic_ncols=True, mininterval=1.0)

    def update(self, step: int, parts: dict[str, float]) -> None:
        """Step ``step`` (global, counted after the step) is done; ``parts``: its loss parts."""
        if self.bar is None:
            return
        self.bar.update(1)
        if step % POSTFIX_EVERY == 0:
            self.bar.set_postfix(refresh=False, ordered_dict={k: f"{v:.3g}" for k, v in parts.items()})
        self._open(step)

    def write(self, message: str) -> None:
        """Print ``message`` on stdout without breaking the live bar (plain ``print`` without one)."""
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None

    def __enter__(self) -> PhaseBars:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

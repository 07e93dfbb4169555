"""The one way an entry point stops on Ctrl-C or SIGTERM: SIGTERM is raised as :class:`Interrupted`
(a ``KeyboardInterrupt``, so every ``finally`` and ``except KeyboardInterrupt`` cleans up for it
too), the run ends with one line ``prog: interrupted by SIGINT; note`` and exit status 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM), never a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any


def signal_exit_status(signal_name: str) -> int:
    """The exit status of a run a signal stopped: 128 + its number, as a shell reports it
    (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(getattr(signal.Signals, signal_name, signal.SIGINT))


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into an exception (a ``KeyboardInterrupt``, so every ``except
    KeyboardInterrupt`` cleans up for it too); ``signal_name`` says which signal."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def interrupt_signal(error: BaseException) -> str:
    """The signal behind a ``KeyboardInterrupt``: ``SIGTERM`` for :class:`Interrupted`, else ``SIGINT``."""
    return getattr(error, "signal_name", "SIGINT")


def raise_on_sigterm() -> Any:
    """From now on SIGTERM raises :class:`Interrupted` in the main thread (where Ctrl-C raises
    ``KeyboardInterrupt``), so ``finally`` blocks run and the run ends with one line. Returns the
    handler it replaced (``None`` outside the main thread, where nothing changes)."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted("SIGTERM")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: keep the default
        return None


def interrupted(prog: str, stop: BaseException, note: str = "") -> int:
    """Say that ``stop`` (a ``KeyboardInterrupt``) ended ``prog``, on one line of stderr
    (``prog: interrupted by SIGTERM; note``); returns the exit status (130 or 143)."""
    name = interrupt_signal(stop)
    print(f"\n{prog}: interrupted by {name}" + (f"; {note}" if note else ""), file=sys.stderr)
    return signal_exit_status(name)


def run_script(prog: str, main: Callable[[], Any], note: str = "") -> None:
    """A script's ``__main__``: ``main()``, where Ctrl-C or SIGTERM end the run with one line
    (``prog: interrupted by SIGINT; note``) and exit 130 or 143, never a traceback."""
    raise_on_sigterm()
    try:
        main()
    except KeyboardInterrupt as stop:
        raise SystemExit(interrupted(prog, stop, note)) from None

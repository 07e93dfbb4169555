"""The one way an entry point stops on Ctrl-C or SIGTERM: SIGTERM is raised as :class:`Interrupted`
(a ``KeyboardInterrupt``, so every ``finally`` and ``except KeyboardInterrupt`` cleans up for it
too), the run ends with one line ``prog: interrupted by SIGINT; note`` and exit status 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM), never a traceback.

Handlers are only ever installed by :func:`handling` (a context manager that restores the ones it
replaced): :func:`sigterm_raises` for a whole command, :class:`StopFlag` for work that must reach
a safe point (a checkpoint) before it stops.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn


def signal_exit_status(signal_name: str) -> int:
    """The exit status of a run a signal stopped: 128 + its number, as a shell reports it
    (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(getattr(signal.Signals, signal_name, signal.SIGINT))


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into an exception (a ``KeyboardInterrupt``, so every ``except
    KeyboardInterrupt`` cleans up for it too); ``signal_name`` says which signal, ``note`` what
    the run had saved when it stopped (said on the run's one closing line)."""

    def __init__(self, signal_name: str = "SIGTERM", note: str = "") -> None:
        super().__init__(signal_name)
        self.signal_name, self.note = signal_name, note


def interrupt_signal(error: BaseException) -> str:
    """The signal behind a ``KeyboardInterrupt``: ``SIGTERM`` for :class:`Interrupted`, else ``SIGINT``."""
    return getattr(error, "signal_name", "SIGINT")


def exit_status(stop: BaseException) -> int:
    """The exit status of a run the ``KeyboardInterrupt`` ``stop`` ended (130 or 143)."""
    return signal_exit_status(interrupt_signal(stop))


@contextmanager
def handling(handlers: Mapping[int, Callable[[int, Any], None]]) -> Iterator[None]:
    """Inside, each signal number in ``handlers`` runs its handler; on leaving, the handlers it
    replaced are back. Outside the main thread signals cannot be caught: nothing changes there."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for number, handler in handlers.items():
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted("SIGTERM")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Interrupted` in the main thread (as Ctrl-C raises
    ``KeyboardInterrupt``), so ``finally`` blocks run and the run ends with one line."""
    with handling({signal.SIGTERM: _raise_interrupted}):
        yield


class StopFlag:
    """While active (``with StopFlag() as stop:``), SIGINT and SIGTERM only set ``requested`` to the
    signal's name, so a loop can finish its step, reach a safe point and stop there. A second
    Ctrl-C once a stop is requested stops at once (``KeyboardInterrupt``). A request the block
    did not act on (a signal during its last step) is raised as :class:`Interrupted` when the
    block ends, so no signal is ever lost."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._handling: Any = None

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    def __enter__(self) -> StopFlag:
        self._handling = handling({signal.SIGINT: self._handle, signal.SIGTERM: self._handle})
        self._handling.__enter__()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._handling.__exit__(None, None, None)
        if exc_type is None and self.requested is not None:
            raise Interrupted(self.requested)


def interrupted(prog: str, stop: BaseException, note: str = "") -> int:
    """Say that ``stop`` (a ``KeyboardInterrupt``) ended ``prog``, on one line of stderr
    (``prog: interrupted by SIGTERM; note``); returns the exit status (130 or 143). ``note``
    defaults to the one :class:`Interrupted` carries."""
    name = interrupt_signal(stop)
    note = note or getattr(stop, "note", "")
    print(f"\n{prog}: interrupted by {name}" + (f"; {note}" if note else ""), file=sys.stderr)
    return signal_exit_status(name)


def run_script(prog: str, main: Callable[[], Any], note: str = "") -> None:
    """A script's ``__main__``: ``main()``, where Ctrl-C or SIGTERM end the run with one line
    (``prog: interrupted by SIGINT; note``) and exit 130 or 143, never a traceback."""
    try:
        with sigterm_raises():
            main()
    except KeyboardInterrupt as stop:
        raise SystemExit(interrupted(prog, stop, note)) from None


def exit_now(status: int) -> NoReturn:
    """End the process with ``status`` now: flush stdout and stderr, then skip the interpreter's
    teardown (about a second once torch is loaded). For a command that has closed everything it
    wrote: play after its window closed, a refused torchrun rank."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
            pass
    os._exit(status)

"""Plug-in models (``--model``) as the harness runs them: built before any training, each run under a
time limit, every prediction checked, and every way a plug-in can fail turned into one line.

A plug-in is someone else's code, so the harness trusts nothing it does:

* a first instance is built before any training (:func:`build_plugin`, from ``check_plan``) and
  discarded, so a constructor that fails is one ``--model`` error before any work; each seed then
  builds its own instance;
* its constructor, ``fit`` and every ``predict`` call run under one time limit per seed
  (:class:`Guard`; by default :func:`default_time_limit` of its budget). The limit is enforced by
  ``SIGALRM``, which raises inside the plug-in's Python code (a ``time.sleep``, a Python loop, a
  loop of torch calls). Code that never returns to the interpreter (a hung C extension) cannot be
  interrupted in this process; the limit then strikes as soon as control comes back, and only a
  separate process could do better. A plug-in that swallows every interrupt (a loop around a bare
  ``except``) cannot be stopped either: ``GIVE_UP_S`` after its limit the run ends with one line
  (the rows saved before the plug-in started are kept). Outside the main thread no alarm can be
  set, so there the limit is checked only after each call returns;
* every prediction must be a float array of the rollouts' shape, finite and within [0, 1]
  (:func:`prediction_problem`): uint8 pixels or values like -50 are failures, not scores;
* anything it raises — including ``SystemExit`` with any code — is a :class:`PluginFailed` with a
  one-line reason. Only the user's own stop (Ctrl-C, SIGTERM: ``KeyboardInterrupt``, or a training
  run's ``TrainingInterrupted``) passes through and ends the run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gtmsm_cli.flags import error_text
from gtmsm_env.rollouts import Rollouts
from gtmsm_model.stopping import TrainingInterrupted

TIME_LIMIT_FACTOR = 3.0
TIME_LIMIT_MARGIN_S = 60.0
"""The default limit per seed: ``TIME_LIMIT_FACTOR`` × the model's training budget plus this
margin (for construction and predicting every condition)."""
CONSTRUCTOR_LIMIT_S = 60.0
"""The limit on the up-front construction when no ``model_timeout_s`` is given (no budget is
known before GTM-SM has trained)."""
RANGE_TOLERANCE = 1e-6
"""Predictions may stray this far outside [0, 1] (float rounding of a sigmoid or a /255)."""
REFIRE_S = 0.5
"""After the limit, the alarm fires again this often, so a plug-in that swallows the first one
(``except BaseException``, a bare ``except``) is interrupted again."""
GIVE_UP_S = 10.0
"""A plug-in still running this long after its limit swallows every interrupt; then the run ends
(one line, exit status ``GIVE_UP_STATUS``) rather than hang: the rows saved so far are kept."""
GIVE_UP_STATUS = 124


def default_time_limit(budget_seconds: float) -> float:
    """The time limit of a plug-in trained for ``budget_seconds``, when the plan sets none."""
    return TIME_LIMIT_FACTOR * budget_seconds + TIME_LIMIT_MARGIN_S


class PluginFailed(Exception):
    """A plug-in failed; ``reason`` is the one line the report shows (``fit raised ValueError:
    ...``, ``timed out after 12 s in fit``, ``predict returned NaN``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _TimeUp(BaseException):
    """Raised by the alarm inside the plug-in's code. A ``BaseException``, so a plug-in's own
    ``except Exception`` does not swallow it."""


class Guard:
    """Runs a plug-in's calls under one shared time limit of ``limit_s`` seconds: only the time
    spent inside the plug-in's code counts (the harness's scoring between calls does not)."""

    def __init__(self, limit_s: float, who: str = "a plug-in", grace_s: float = GIVE_UP_S) -> None:
        self.limit_s, self.who, self.grace_s = limit_s, who, grace_s
        self.used_s = 0.0

    def call(self, phase: str, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``; its return value, or :class:`PluginFailed` naming ``phase``
        (``the constructor``, ``fit``, ``predict on 'photos'``) for anything it raises or a
        time limit it passes. Ctrl-C and SIGTERM pass through."""
        remaining = self.limit_s - self.used_s
        if remaining <= 0:
            raise PluginFailed(self._timed_out(phase))
        armed = False

        def alarm(signum: int, frame: Any) -> None:
            if not armed:  # a late alarm, handled after the call returned, is ignored
                return
            if time.perf_counter() - start > remaining + self.grace_s:
                sys.stdout.flush()
                print(f"\nerror: {self.who} is still running {self.grace_s:g} s after its {self._timed_out(phase)} "
                      "(it swallows every interrupt); the run ends here, the rows saved so far are kept",
                      file=sys.stderr, flush=True)
                os._exit(GIVE_UP_STATUS)
            raise _TimeUp()

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGALRM, alarm) if main else None
        start = time.perf_counter()
        try:
            if main:
                armed = True
                signal.setitimer(signal.ITIMER_REAL, remaining, REFIRE_S)
            try:
                result = function(*args)
            finally:
                armed = False
                if main:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _TimeUp:
            raise PluginFailed(self._timed_out(phase)) from None
        except (KeyboardInterrupt, TrainingInterrupted):
            raise  # the user's stop, not the plug-in's failure
        except SystemExit as stop:
            raise PluginFailed(f"{phase} raised SystemExit({stop.code!r}) (a plug-in cannot end the benchmark)") \
                from None
        except BaseException as error:  # noqa: BLE001  (a plug-in's code may raise anything)
            raise PluginFailed(f"{phase} raised {type(error).__name__}: {error_text(error)}") from None
        finally:
            self.used_s += time.perf_counter() - start
            if main:
                signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if self.used_s > self.limit_s:  # it swallowed the alarm, or was in C code when it fired
            raise PluginFailed(self._timed_out(phase))
        return result

    def _timed_out(self, phase: str) -> str:
        return f"timed out after {self.limit_s:g} s in {phase}"


def plugin_name(model: Any) -> str:
    """The plug-in's ``name`` (the label of its rows); :class:`PluginFailed` if it is not a
    non-empty string or ``uses_true_positions`` is not a bool."""
    name = getattr(model, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise PluginFailed(f"its name is {name!r}, not a non-empty string")
    flag = getattr(model, "uses_true_positions", None)
    if not isinstance(flag, (bool, np.bool_)):
        raise PluginFailed(f"uses_true_positions is {flag!r}, not True or False")
    return name


def build_plugin(spec: str, cls: type, limit_s: float = CONSTRUCTOR_LIMIT_S) -> Any:
    """``cls()`` under a time limit, checked to name itself; a ``ValueError`` naming ``--model``
    (one error line before any training) for anything that goes wrong."""
    try:
        model = Guard(limit_s).call("the constructor", cls)
        plugin_name(model)
    except PluginFailed as failure:
        raise ValueError(f"--model {spec!r}: {failure.reason}") from None
    return model


def prediction_problem(predicted: Any, expected_shape: tuple[int, ...]) -> str | None:
    """Why ``predicted`` is not a valid prediction of ``expected_shape`` (``returned NaN``; None if
    it is): it must be a numpy float array of that shape, finite, within [0, 1] (±
    ``RANGE_TOLERANCE``)."""
    if not isinstance(predicted, np.ndarray):
        return f"returned a {type(predicted).__name__}, expected a numpy array"
    if predicted.shape != tuple(expected_shape):
        return f"returned shape {predicted.shape}, expected {tuple(expected_shape)}"
    if not np.issubdtype(predicted.dtype, np.floating):
        return f"returned dtype {predicted.dtype}, expected floats in [0, 1]"
    if np.isnan(predicted).any():
        return "returned NaN"
    if not np.isfinite(predicted).all():
        return "returned inf"
    low, high = float(predicted.min()), float(predicted.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        return f"returned values outside [0, 1] (min {low:g}, max {high:g})"
    return None


def checked_predictions(model: Any, rollouts: Rollouts, tau: int, guard: Guard, condition: str,
                        chunk: int = 32) -> np.ndarray:
    """A plug-in's predictions of every rollout, ``chunk`` sequences at a time, each call under
    ``guard`` and each result checked (:class:`PluginFailed` on the first bad one)."""
    parts = []
    for start in range(0, len(rollouts), chunk):
        part = rollouts[start:start + chunk]
        positions = part.positions.copy() if model.uses_true_positions else None
        predicted = guard.call(f"predict on {condition!r}", model.predict, part.observations[:, :tau].copy(),
                               part.actions.copy(), tau, positions)  # copies: it cannot alter the test set
        observations = part.observations
        problem = prediction_problem(predicted, (observations.shape[0], observations.shape[1] - tau,
                                                 *observations.shape[2:]))
        if problem is not None:
            raise PluginFailed(f"predict on {condition!r} {problem}")
        parts.append(predicted)
    return np.concatenate(parts)

"""Play ImageNav-v0 with the keyboard: ``python -m gtmsm_env.play`` (or ``gtmsm-play``).

Arrow keys / WASD move (hold to repeat), space stays, r new image, f fog, h help, Esc or q quits.

Imagination mode: given any object with the imagination protocol (see :class:`PlaySession`), you
first explore for its tau steps while it writes what it sees into its memory (``m`` or Enter ends
memorisation sooner); from then on every move shows its predicted crop beside the true one (``t``
hides every view of the truth), the running prediction error, whether you had been there during
memorisation, and the canvas assembled so far. Both status lines count steps since the reset (step
0). The ``gtmsm-play`` command adds ``--model CHECKPOINT`` for GTM-SM (``gtmsm_model.play_model``);
this module never imports torch or the model package.

``--script wwdd..`` plays keys one per frame and exits, ``--screenshot out.png`` saves the last
frame: with ``SDL_VIDEODRIVER=dummy`` both run without a display.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gtmsm_cli.checks import output_file_problem
from gtmsm_cli.flags import SEED_MAX, bounded, error_text, fail, parse_flags
from gtmsm_cli.signals import interrupted, run_script
from gtmsm_env.env import ImageNavEnv
from gtmsm_env.play_session import (  # noqa: F401  (the session's names, as before the split)
    HELP_LINES,
    KEY_TO_ACTION,
    QUIT_KEYS,
    SCRIPT_ACTIONS,
    SCRIPT_KEYS,
    STOP_MEMORISING_KEYS,
    PlaySession,
    imagination_help,
)
from gtmsm_env.render import NoDisplayError
from gtmsm_env.world import START_MODES, WALL_MODES, World

PROG = "gtmsm-play"
EXIT_NO_DISPLAY = 1

@dataclass
class PlayArgs:
    """Options of ``gtmsm-play``."""

    seed: int | None = bounded(None, ge=0, le=SEED_MAX)
    """Seed of the first image (unset: a random one)."""
    image_source: str | None = None
    """'procedural' (the default scenes), a folder of images or a .npz/.npy file."""
    start: str = "center"
    """Start position: center or random."""
    task: str | None = None
    """Optional reward task (coverage: +1 for each new position); shown in the status line."""
    walls: str = "border"
    """border (only the image border blocks moves) or maze (interior walls too)."""
    scale: int = bounded(8, ge=1, le=64)
    """Screen pixels per image pixel (8: 256-pixel panels). The window can also be resized."""
    fps: int = bounded(30, ge=1, le=1000)
    """Frame-rate cap of the window."""
    repeat_delay_ms: int = bounded(250, ge=1, le=5000)
    """A held move key starts repeating after this many milliseconds."""
    repeat_interval_ms: int = bounded(110, ge=1, le=5000)
    """Then it moves once per this many milliseconds (110: about 9 steps/s, the grid in ~1 s)."""
    fog: bool = False
    """Start with the fog-of-war view (f toggles it): only what the window has seen is shown."""
    script: str | None = None
    """Play these keys, one per frame, then exit: w a s d move, '.' stays; with --model, m stops
    memorising and t hides / shows the truth; q quits there (the rest is not played)."""
    screenshot: str | None = None
    """Save the last frame as this PNG file."""


# ----------------------------------------------------------------------------------------- CLI


DESCRIPTION = ("Play ImageNav-v0 with the keyboard (arrows/WASD hold to repeat, space, r, f, h, Esc/q); "
               "with --model, explore while GTM-SM memorises (m or Enter: stop memorising now), then "
               "watch it imagine what you will see (t hides every view of the truth).")


CHOICES = {"start": list(START_MODES), "task": ["coverage"], "walls": list(WALL_MODES)}


def parse_play_args(argv: list[str] | None, args_class: type = PlayArgs) -> Any:
    """Parse ``argv`` into an ``args_class`` (:class:`PlayArgs`, or a subclass that adds its own
    flags) and run :func:`validate_play_args`."""
    args = parse_flags(args_class, argv, prog=PROG, description=DESCRIPTION, choices=CHOICES)
    validate_play_args(args)
    return args


def validate_play_args(args: PlayArgs) -> None:
    """Checks that need no window; each failure exits with one ``gtmsm-play: error:`` line."""
    if args.script is not None:
        bad = sorted(set(args.script) - set(SCRIPT_ACTIONS) - set(SCRIPT_KEYS))
        if bad or not args.script:
            fail(PROG, f"--script may hold only the keys w a s d . m t q (got {''.join(bad) or 'nothing'!r})")
    if args.screenshot is not None:
        path = Path(args.screenshot)
        if path.suffix.lower() != ".png":
            fail(PROG, f"--screenshot must name a .png file, got {args.screenshot}")
        problem = output_file_problem(path, (".png",))
        if problem is not None:
            fail(PROG, f"--screenshot: {problem}")


def run_interruptible(play_main: Callable[[], int]) -> int:
    """``play_main()``'s status, run by :func:`gtmsm_cli.signals.run_script`: Ctrl-C or SIGTERM
    before the window opened (e.g. while a model loads) end the run with one line and
    ``SystemExit`` 130 / 143."""
    status: list[int] = []
    run_script(PROG, lambda: status.append(play_main()))
    return status[0]


def main(argv: list[str] | None = None) -> int:
    """Play without a model: 0 when the person quits, 1 without a display, 2 for a bad flag (or a
    screenshot the disk refused), 130 on Ctrl-C, 143 on SIGTERM (as ``SystemExit`` before the
    window opened; no screenshot saved, no summary printed). ``gtmsm-play``
    is :func:`gtmsm_model.play_model.main`, which adds ``--model``."""
    return run_interruptible(lambda: play(parse_play_args(argv)))


def play_world(args: PlayArgs, world: World | None = None) -> World:
    """The world play shows: ``world`` whole (default ``World()``), with the ``--start`` and
    ``--walls`` of ``args`` where given (``None``: the world's own). Changing the walls drops a
    wall density meant for the other kind."""
    world = world if world is not None else World()
    changes: dict[str, Any] = {}
    if args.start is not None and args.start != world.start:
        changes["start"] = args.start
    if args.walls is not None and args.walls != world.walls:
        changes.update(walls=args.walls, wall_density=None)
    return world.replace(**changes)


def play(args: PlayArgs, *, imagination: Any = None, world: World | None = None,
         world_flag: str = "ImageNav-v0", env_problem: Callable[[ImageNavEnv], str | None] | None = None) -> int:
    """Open the window and play ``args`` in :func:`play_world` (``world``, default ``World()``,
    with the world flags of ``args``), with ``imagination`` if given. ``world_flag`` names where
    the world came from in errors; ``env_problem(env)`` may refuse the built env."""
    try:
        env = gym.make("ImageNav-v0", render_mode="rgb_array", image_source=args.image_source,
                       task=args.task, world=play_world(args, world))
    except (TypeError, ValueError, OSError) as error:
        flag = "--image-source" if args.image_source is not None else world_flag
        fail(PROG, f"{flag}: {error_text(error)}")
    problem = env_problem(env.unwrapped) if env_problem is not None else None
    if problem is not None:
        env.close()
        fail(PROG, problem)
    try:
        session = PlaySession(
            env, seed=args.seed, scale=args.scale, fps=args.fps, repeat_delay_ms=args.repeat_delay_ms,
            repeat_interval_ms=args.repeat_interval_ms, fog=args.fog, imagination=imagination,
        )
    except NoDisplayError as error:
        env.close()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_NO_DISPLAY
    try:
        if args.script is None:
            print(__doc__.strip().splitlines()[2], flush=True)
        session.run(script=args.script, screenshot=args.screenshot)
    except KeyboardInterrupt as stop:
        session.close()
        unsaved = "; no screenshot saved" if args.screenshot is not None else ""
        return interrupted(PROG, stop, f"{session.status()}{unsaved}")
    except OSError as error:  # the screenshot's write was refused: the old file (if any) stays whole
        if args.screenshot is None:
            raise
        fail(PROG, f"--screenshot: {error_text(error)}")
    print(session.status())
    if session.imagination is not None and session.errors:
        print(f"imagination: {len(session.errors)} predicted steps, mean MSE {np.mean(session.errors):.4f}")
    if args.screenshot is not None:
        print(f"wrote {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

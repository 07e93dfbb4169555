"""``gtmsm-play``: :mod:`gtmsm_env.play` plus ``--model CHECKPOINT``, imagination mode with GTM-SM.

With ``--model`` you first explore while GTM-SM writes what it sees into its memory (``m`` or Enter
ends that early); from then on every move shows the model's predicted crop beside the true one.
Memorisation lasts ``--tau`` steps; unset, the checkpoint's tau but at most the world's number of
window positions (:func:`play_tau`): a trained tau of 256 on a 9 x 9 grid would otherwise leave a
person who has seen every place by step ~90 walking ~170 more steps with nothing new happening; a
``--tau`` above the trained one is refused (a memory that long is one the model never learned to
read). The window plays in the world the checkpoint was trained on (its size, crop, step, start and
walls; ``--start`` and ``--walls`` override those two). Without
``--model`` it is exactly ``python -m gtmsm_env.play``; torch is imported only with ``--model``.

As the ``gtmsm-play`` command, :func:`main` ends the process itself once the window is closed and
the summary printed, skipping the interpreter's teardown (about a second once torch is loaded), so
``q`` returns the shell at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gtmsm_cli.flags import bounded, error_text, fail, flag_text
from gtmsm_cli.inputs import input_file_problem
from gtmsm_cli.signals import exit_now
from gtmsm_env import play
from gtmsm_env.play import PROG, PlayArgs
from gtmsm_env.world import World


@dataclass
class ModelPlayArgs(PlayArgs):
    """Options of ``gtmsm-play``: those of :class:`gtmsm_env.play.PlayArgs` and the model's."""

    start: str | None = None
    """Start position: center or random (unset: center, or with --model the checkpoint's)."""
    walls: str | None = None
    """border (only the image border blocks moves) or maze (interior walls too); unset: border, or
    with --model the checkpoint's walls and wall density."""
    model: str | None = None
    """A GTM-SM checkpoint.pt: imagination mode (explore for tau steps, then watch it predict). The
    world (image size, crop size, step size, start, walls) is the one the checkpoint was trained on."""
    tau: int | None = bounded(None, ge=1)
    """Memorisation steps in imagination mode (unset: the checkpoint's trained tau, at most the
    number of window positions, e.g. 81 on a 9x9 grid: enough to visit every place once, so
    predictions start while there is still somewhere new to go). Any tau up to the trained one is
    a memory the model has been trained to read (a larger one is refused); m or Enter ends
    memorisation sooner."""
    device: str | None = None
    """Torch device of the model in imagination mode (cpu, cuda, cuda:1, ...; unset: cpu). Needs --model."""


def validate_model_args(args: ModelPlayArgs) -> None:
    """The model flags' checks that need no model loaded (one ``gtmsm-play: error:`` line each)."""
    problem = input_file_problem(args.model, "checkpoint") if args.model is not None else None
    if problem is not None:  # before opening it: a FIFO would block forever
        fail(PROG, f"--model: {problem}")
    if args.tau is not None and args.model is None:
        fail(PROG, "--tau applies only with --model")
    if args.device is not None and args.model is None:
        fail(PROG, "--device needs --model (it places the model of imagination mode)")


def load_model_imagination(args: ModelPlayArgs) -> Any:
    """The checkpoint's model, one step per move, and (as ``.world``) the world it was trained on;
    memorising ``--tau`` steps, refused above the tau it was trained with."""
    try:
        from gtmsm_model.checkpoint import CheckpointError
        from gtmsm_model.imagination import load_imagination
        from gtmsm_model.train import resolve_device
    except ImportError as error:
        fail(PROG, f"--model needs the gtmsm_model package and torch ({error_text(error)})")
    device = args.device or "cpu"
    try:
        resolve_device(device)
    except (ValueError, RuntimeError) as error:
        fail(PROG, flag_text(error_text(error)))  # the message names `device`
    try:
        imagination = load_imagination(args.model, device=device)
    except (CheckpointError, ValueError, RuntimeError) as error:
        fail(PROG, f"--model: {error_text(error)}")
    if args.tau is not None:
        if args.tau > imagination.trained_tau:
            fail(PROG, f"--tau {args.tau} is above the tau {imagination.trained_tau} this --model was trained "
                       f"with: a memory that long is one it never learned to read; use --tau 1 to "
                       f"{imagination.trained_tau}")
        imagination.tau = args.tau
    import torch

    torch.set_num_threads(1)  # one tiny step per frame: extra threads only add overhead
    return imagination


def play_tau(trained_tau: int, world: World) -> int:
    """The default memorisation length of play: ``trained_tau``, at most ``world``'s number of
    window positions (a walk that visits every place once fits; beyond that, memorising only
    revisits)."""
    rows, cols = world.grid_shape
    return max(1, min(trained_tau, rows * cols))


def tau_text(imagination: Any, chosen: bool) -> str:
    """``memorising 81 steps (the checkpoint's tau 256, capped at the 81 window positions) ...``"""
    tau, trained = imagination.tau, imagination.trained_tau
    if chosen:
        why = f"--tau; the checkpoint was trained with tau {trained}"
    elif tau < trained:
        why = f"the checkpoint's tau {trained}, capped at the {tau} window positions; --tau sets it"
    else:
        why = "the checkpoint's tau"
    return f"imagination: memorising {tau} steps ({why}); m or Enter starts predicting sooner"


def model_world(imagination: Any) -> World:
    """The checkpoint's world, checked before an env is built from it (``--model`` names it)."""
    from gtmsm_model.imagination import world_text

    world: World = imagination.world
    try:
        world.geometry  # noqa: B018  (validates image size, crop and step)
    except (TypeError, ValueError) as error:
        fail(PROG, f"--model was trained on {world_text(world)}, which no ImageNav-v0 can show: "
                   f"{error_text(error)}")
    return world


def model_env_problem(args: ModelPlayArgs, imagination: Any) -> Any:
    """Why the env built for ``args`` cannot show ``imagination``'s model (``None`` if it can)."""
    config = imagination.model.config

    def problem(env: Any) -> str | None:
        if config.wall_model == "absolute" and env.world.start != "center":
            return (f"--start {env.world.start}: this --model's wall model is 'absolute' (a learned gate of the "
                    "absolute position), which needs the fixed centre start it was trained with; use "
                    "--start center")
        if env.crop_size != config.crop_size:
            return (f"--model reads {config.crop_size}x{config.crop_size} crops; this env's crops are "
                    f"{env.crop_size}x{env.crop_size}")
        return None

    return problem


def _play(argv: list[str] | None) -> int:
    args = play.parse_play_args(argv, ModelPlayArgs)
    validate_model_args(args)
    if args.model is None:
        return play.play(args)
    imagination = load_model_imagination(args)
    world = model_world(imagination)
    if args.tau is None:
        imagination.tau = play_tau(imagination.trained_tau, world)
    if args.script is None:
        print(tau_text(imagination, chosen=args.tau is not None), flush=True)
    return play.play(args, imagination=imagination, world=world, world_flag="--model",
                     env_problem=model_env_problem(args, imagination))


def main(argv: list[str] | None = None) -> int:
    """``gtmsm-play``: 0 when the person quits, 1 without a display, 2 for a bad flag, 130 on Ctrl-C,
    143 on SIGTERM (as ``SystemExit`` before the window opened; no screenshot saved, no summary)."""
    return play.run_interruptible(lambda: _play(argv))


def script() -> None:
    """The console command (and ``python -m``): :func:`main` on the command line's flags, then
    :func:`exit_now` with its status, so that ``q`` closes the program at once."""
    exit_now(main())


if __name__ == "__main__":
    script()

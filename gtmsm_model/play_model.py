"""``gtmsm-play``: :mod:`gtmsm_env.play` plus ``--model CHECKPOINT``, imagination mode with GTM-SM.

With ``--model`` you first explore for the model's tau steps while GTM-SM writes what it sees into
its memory; from then on every move shows the model's predicted crop beside the true one. The
window plays in the world the checkpoint was trained on (play has no world-size flags). Without
``--model`` it is exactly ``python -m gtmsm_env.play``; torch is imported only with ``--model``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtmsm_cli.flags import bounded, error_text, fail
from gtmsm_env import play
from gtmsm_env.play import PROG, PlayArgs
from gtmsm_env.world import World


@dataclass
class ModelPlayArgs(PlayArgs):
    """Options of ``gtmsm-play``: those of :class:`gtmsm_env.play.PlayArgs` and the model's."""

    model: str | None = None
    """A GTM-SM checkpoint.pt: imagination mode (explore for tau steps, then watch it predict). The
    world (image size, crop size, step size) is the one the checkpoint was trained on."""
    tau: int | None = bounded(None, ge=1)
    """Memorisation steps in imagination mode (unset: the tau the checkpoint was trained with)."""
    device: str | None = None
    """Torch device of the model in imagination mode (cpu, cuda, cuda:1, ...; unset: cpu). Needs --model."""


def validate_model_args(args: ModelPlayArgs) -> None:
    """The model flags' checks that need no model loaded (one ``gtmsm-play: error:`` line each)."""
    if args.model is not None and not Path(args.model).is_file():
        fail(PROG, f"--model: checkpoint not found: {args.model}")
    if args.tau is not None and args.model is None:
        fail(PROG, "--tau applies only with --model")
    if args.device is not None and args.model is None:
        fail(PROG, "--device needs --model (it places the model of imagination mode)")


def load_model_imagination(args: ModelPlayArgs) -> Any:
    """The checkpoint's model, one step per move, and (as ``.world``) the world it was trained on."""
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
        fail(PROG, error_text(error))  # the message names --device
    try:
        imagination = load_imagination(args.model, args.tau, device=device)
    except (CheckpointError, ValueError, RuntimeError) as error:
        fail(PROG, f"--model: {error_text(error)}")
    import torch

    torch.set_num_threads(1)  # one tiny step per frame: extra threads only add overhead
    return imagination


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
        if config.wall_model == "absolute" and args.start != "center":
            return (f"--start {args.start}: this --model's wall model is 'absolute' (a learned gate of the "
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
    return play.play(args, imagination=imagination, world=model_world(imagination), world_flag="--model",
                     env_problem=model_env_problem(args, imagination))


def main(argv: list[str] | None = None) -> int:
    """``gtmsm-play``: 0 when the person quits, 1 without a display, 2 for a bad flag, 130 on Ctrl-C,
    143 on SIGTERM (then no screenshot is saved and no summary printed)."""
    return play.run_interruptible(lambda: _play(argv))


if __name__ == "__main__":
    sys.exit(main())

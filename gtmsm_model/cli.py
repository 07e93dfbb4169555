"""``gtmsm``: train, evaluate and predict with GTM-SM from the command line.

    gtmsm run                       # the main job: train the quick preset, evaluate, print, plot
    gtmsm train --preset quick --seed 1 --out-dir runs/s1
    gtmsm train --out-dir runs/s1 --resume          # continue an interrupted run
    gtmsm evaluate --checkpoint runs/s1/checkpoint.pt
    gtmsm predict --checkpoint runs/s1/checkpoint.pt --out prediction.gif

Every ``TrainConfig`` setting is a flag (``--z-dim``, ``--iterations``, ...), grouped in ``--help`` by
the part it belongs to (world, model, schedule, run); a preset sets them all and explicit flags
override it. Errors the libraries raise name fields; ``gtmsm_cli.flags.flag_text`` turns them into flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtmsm_cli.checks import output_dir_problem, output_file_problem
from gtmsm_cli.flags import (
    SEED_MAX,
    ArgumentParser,
    Bounds,
    add_dataclass_flags,
    bounded,
    error_text,
    flag_text,
    number,
)
from gtmsm_cli.signals import (
    Interrupted,
    exit_now,
    exit_status,
    interrupt_signal,
    interrupted,
    sigterm_raises,
)
from gtmsm_env.world import START_MODES, WALL_MODES, World
from gtmsm_env.world_flags import add_world_flags
from gtmsm_model.config import (
    MODEL_FIELDS,
    SECTIONS,
    RunConfig,
    Schedule,
    TrainConfig,
    flatten,
)
from gtmsm_model.model import NOVEL_VIEWS, UNTRIED_EDGES, WALL_MODELS, GTMSMConfig
from gtmsm_model.presets import PRESETS, flat_preset
from gtmsm_model.train import (
    TrainingInterrupted,
    check_image_source,
    check_memory,
    eval_memory_need,
    make_config,
    resolve_device,
)

EXIT_ERROR = 2


@dataclass
class EvalArgs:
    """Which held-out rollouts an evaluation or prediction uses."""

    eval_image_source: str | None = None
    """Held-out images: a folder or .npz/.npy path (unset: procedural images from a seed stream training never uses)."""
    eval_seed: int = bounded(0, ge=0, le=SEED_MAX)
    """Seed of the held-out rollouts (offset from any training stream)."""
    eval_sequences: int = bounded(64, ge=1)
    """Held-out rollouts."""
    eval_tau: int | None = bounded(None, ge=1)
    """Memorisation steps (unset: the checkpoint's training eval_tau, 256 for the quick preset)."""
    eval_horizon: int | None = bounded(None, ge=1)
    """Predicted steps (unset: the checkpoint's training eval_horizon, 256 for the quick preset)."""
    eval_start: str | None = None
    """Start cell of the held-out rollouts: center or random (unset: as in training)."""
    eval_walls: str | None = None
    """Walls of the held-out rollouts: border or maze (unset: as in training)."""


CHOICES: dict[str, list[str]] = {"start": list(START_MODES), "walls": list(WALL_MODES),
                                 "wall_model": list(WALL_MODELS), "novel_view": list(NOVEL_VIEWS),
                                 "untried_edges": list(UNTRIED_EDGES)}



def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every ``TrainConfig`` setting as a flag, grouped by part; unset flags come from ``--preset``."""
    quick = flat_preset("quick")
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="named set of hyperparameters (default: quick); flags below override it")
    add_world_flags(parser, defaults=quick, default_label="quick preset", suppress_defaults=True)
    fixed = [f.name for f in dataclasses.fields(GTMSMConfig) if f.name not in MODEL_FIELDS]  # by design
    for cls, title, what, skip in (
            (GTMSMConfig, "model", "GTM-SM's sizes and choices (GTMSMConfig)", fixed),
            (Schedule, "schedule", "what training does step by step", ()),
            (RunConfig, "run", "where and how the run happens", ())):
        add_dataclass_flags(parser.add_argument_group(title, what), cls, defaults=quick, skip=skip,
                            suppress_defaults=True, default_label="quick preset", choices=CHOICES)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return make_config(args.preset, **{name: value for name, value in vars(args).items() if name in SECTIONS})


def add_eval_flags(parser: argparse.ArgumentParser, shape_flags: bool = True,
                   defaults: dict[str, Any] | None = None) -> None:
    """Flags choosing the held-out rollouts; ``run`` takes their shape from the TrainConfig."""
    skip = set() if shape_flags else {"eval_sequences", "eval_tau", "eval_horizon"}
    add_dataclass_flags(parser, EvalArgs, skip=skip, defaults=defaults,
                        choices={"eval_start": ["center", "random"], "eval_walls": ["border", "maze"]})


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="gtmsm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train a preset, evaluate it on held-out rollouts, print the table, write plots")
    add_train_flags(run)
    add_eval_flags(run, shape_flags=False)
    run.add_argument("--final-eval-sequences", type=number(int, Bounds(ge=1)), default=64,
                     help="held-out rollouts of the final evaluation (default: 64; periodic evaluations "
                          "during training use --eval-sequences)")

    train = commands.add_parser("train", help="train GTM-SM (checkpoints to OUT_DIR/checkpoint.pt)")
    add_train_flags(train)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint: metrics.json, table, plots")
    evaluate.add_argument("--checkpoint", required=True, help="path to a checkpoint.pt written by gtmsm train")
    evaluate.add_argument("--out-dir", default=None, help="where to write metrics.json and plots (default: the checkpoint's folder)")
    evaluate.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_eval_flags(evaluate)

    predict = commands.add_parser("predict", help="predict one held-out rollout: a GIF (true | predicted) or PNG strip")
    predict.add_argument("--checkpoint", required=True, help="path to a checkpoint.pt written by gtmsm train")
    predict.add_argument("--out", default="prediction.gif", help="output .gif (animation) or .png (strip) (default: prediction.gif)")
    predict.add_argument("--mode", default="mean", choices=["mean", "sample"], help="decode the mixture mean or a sample (default: mean)")
    predict.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_eval_flags(predict, defaults={"eval_sequences": 1})
    return parser


def eval_world(args: argparse.Namespace, train_config: dict[str, Any]) -> World:
    """The held-out rollouts' world: the training world (a checkpoint's nested ``train_config``),
    with --eval-start/--eval-walls applied."""
    world = World.from_dict((train_config or {}).get("world") or {})
    if args.eval_start is not None:
        world = world.replace(start=args.eval_start)
    if args.eval_walls is not None and args.eval_walls != world.walls:
        world = world.replace(walls=args.eval_walls, wall_density=None)
    return world


def _heldout(args: argparse.Namespace, world: World) -> Any:
    from gtmsm_model.data import heldout_rollouts

    return heldout_rollouts(args.eval_sequences, args.eval_tau + args.eval_horizon, args.eval_seed,
                            image_source=args.eval_image_source, world=world)


def provenance(args: argparse.Namespace, checkpoint: Path, train_config: dict[str, Any]) -> dict[str, Any]:
    """Where a metrics.json came from: the checkpoint (path, SHA-256), its run, the held-out data, versions."""
    from gtmsm_model.data import HELDOUT_SEED_OFFSET
    from gtmsm_model.run_folder import file_sha256, machine_description, package_versions

    settings = flatten(train_config or {})
    return {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": file_sha256(checkpoint),
        "preset": settings.get("preset"),
        "seed": settings.get("seed"),
        "train_image_source": settings.get("image_source") or settings.get("dataset") or "procedural",
        "eval_seed": args.eval_seed,
        "eval_rollout_seed": args.eval_seed + HELDOUT_SEED_OFFSET,
        "eval_image_source": args.eval_image_source or "procedural",
        "eval_sequences": args.eval_sequences,
        "eval_tau": args.eval_tau,
        "eval_horizon": args.eval_horizon,
        "eval_world": eval_world(args, train_config).to_dict(),
        "packages": package_versions(),
        "machine": machine_description(),
        "command": ["gtmsm", *sys.argv[1:]],
    }


EVALUATION_FILES = ("metrics.json", "horizon.png", "prediction.png", "state_map.png")


def evaluate_and_report(model: Any, args: argparse.Namespace, out_dir: Path, device: str,
                        world: World, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on the held-out rollouts ``args`` and ``world`` describe; metrics.json,
    plots, table. Every file is written into a staging folder first and moved into ``out_dir``
    only once all are complete, so a failed or interrupted evaluation leaves ``out_dir`` as it was."""
    import torch

    from gtmsm_cli.files import os_error_reason, staged_folder
    from gtmsm_model.evaluate import (
        GTMSMPredictor,
        check_targets,
        evaluate_gtmsm,
        format_table,
        write_metrics,
    )
    from gtmsm_model.plots import (
        horizon_bounds,
        plot_horizon,
        plot_prediction_figure,
        plot_state_map,
    )

    rollouts = _heldout(args, world)
    evaluation = evaluate_gtmsm(model, rollouts, args.eval_tau, device=device)
    metrics = {**evaluation.to_dict(), **(extra or {}), "targets_met": check_targets(evaluation)}
    predicted = GTMSMPredictor(model, device).predict(rollouts.observations[:1], rollouts.actions[:1], args.eval_tau)
    with torch.no_grad():
        states = model.predict(torch.as_tensor(rollouts.observations).to(device),
                               torch.as_tensor(rollouts.actions).long().to(device), args.eval_tau).states
    bounds = horizon_bounds(evaluation, rollouts, args.eval_tau)
    try:
        with staged_folder(out_dir) as stage:
            write_metrics(metrics, stage / "metrics.json")
            plot_horizon({"GTM-SM": evaluation.scores.horizon}, stage / "horizon.png", bounds=bounds,
                         title=f"GTM-SM on {args.eval_sequences} held-out rollouts, τ = {args.eval_tau} memorised, "
                               f"{args.eval_horizon} predicted (VAE floor, revisited: "
                               f"{evaluation.diagnostics.vae_mse_revisited:.4g})")
            plot_prediction_figure(rollouts.images[0], rollouts.positions[0], rollouts.observations[0], predicted[0],
                                   args.eval_tau, world.step_size, stage / "prediction.png")
            plot_state_map(states.cpu().numpy(), rollouts.positions, stage / "state_map.png")
    except OSError as error:
        raise OSError(f"cannot write the evaluation into {out_dir}: {os_error_reason(error)}; "
                      "nothing there was changed") from None
    print(f"held-out evaluation on {args.eval_sequences} sequences (tau {args.eval_tau} memorised + "
          f"{args.eval_horizon} predicted)\n" + format_table(evaluation))
    print("\ntargets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in metrics["targets_met"].items()))
    print(f"\nwrote {out_dir / 'metrics.json'} and plots {out_dir / 'horizon.png'}, "
          f"{out_dir / 'prediction.png'}, {out_dir / 'state_map.png'}")
    return metrics


def resume_hint(argv: list[str]) -> str:
    """The command that continues an interrupted run: the same flags plus --resume, under torchrun
    with the same process layout when that is how it ran."""
    kept = [a for a in argv if a not in ("--overwrite", "--resume", "--no-resume")]
    command = ["gtmsm", *kept, "--resume"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        nodes = f" --nnodes={world // local}" if local != world else ""
        command = [f"torchrun{nodes} --nproc_per_node={local}", sys.argv[0], *command[1:]]
    return " ".join(command)


def check_final_evaluation(args: argparse.Namespace, config: TrainConfig) -> None:
    """``run``'s evaluation inputs, before training: the held-out images and the memory it takes."""
    check_image_source("--eval-image-source", args.eval_image_source, config.world.image_size)
    check_memory({"--final-eval-sequences": ("the final evaluation", eval_memory_need(
        args.final_eval_sequences, config.schedule.eval_tau + config.schedule.eval_horizon, config.world,
        config.model.z_dim))})


def claim_out_dir(config: TrainConfig, context: Any, device: Any) -> None:
    """Rank 0 claims and locks the out-dir (see run_folder.py); under torchrun every rank joins the
    process group first and learns the outcome, so a refusal ends every rank at once with status 2
    (only rank 0 prints it) instead of leaving the others waiting for a rank that is gone."""
    from gtmsm_model.run_folder import RunFolder

    context.start(device)
    problem = None
    if context.is_main:
        try:
            RunFolder(config.run.out_dir).claim(resume=config.run.resume, overwrite=config.run.overwrite)
        except (ValueError, OSError) as error:
            problem = error_text(error)
    problem = context.broadcast(problem)
    if problem is not None:
        context.stop()
        raise ValueError(problem)


def short_schedule_note(config: TrainConfig) -> str | None:
    """A note when the learned localiser's run ends before its training gate has sharpened."""
    if config.model.wall_model != "learned":
        return None
    from gtmsm_model.wall_models import LearnedLocaliser

    sharp = config.model.gate_open_iters + LearnedLocaliser.SHARPEN_ITERS
    if config.schedule.iterations > sharp:
        return None
    return (f"note: the learned localiser's gate sharpens until main iteration {sharp} and learns the world span "
            f"only after it; {config.schedule.iterations} iterations stop it before then (the learned preset runs "
            f"{PRESETS['learned']['schedule']['iterations']})")


def run_or_train(args: argparse.Namespace, argv: list[str]) -> None:
    import torch

    from gtmsm_model import train as training
    from gtmsm_model.distributed import DistributedContext

    config = config_from_args(args)
    run, schedule = config.run, config.schedule
    context = DistributedContext.from_environment()
    main = context.is_main  # under torchrun only rank 0 reports
    say = print if main else (lambda *a, **k: None)
    if args.command == "run":
        check_final_evaluation(args, config)
    checked = training.preflight(config, claim=False)  # every input checked before the first step
    fresh = run.resume and not (Path(run.out_dir) / "checkpoint.pt").exists()
    claim_out_dir(config, context, checked[0])
    if fresh:
        say(f"note: --resume: {run.out_dir} holds no checkpoint yet, so this starts the run")
    say(f"training GTM-SM, preset {config.preset}, seed {run.seed}, device {run.device}, "
        f"torch threads {run.threads or torch.get_num_threads()} → {run.out_dir}")
    if (note := short_schedule_note(config)) is not None:
        say(note)
    started = time.perf_counter()
    checkpoint = Path(run.out_dir) / "checkpoint.pt"
    try:
        result = training.train(config, checked=checked)
    except TrainingInterrupted as stop:
        say(f"\ngtmsm {args.command}: interrupted by {stop.signal_name} at step {stop.step}; checkpoint "
            f"written to {stop.checkpoint}; resume with: {resume_hint(argv)}", file=sys.stderr)
        raise
    except KeyboardInterrupt as stop:  # a stop at the last step, or a second Ctrl-C
        saved = (f"the last checkpoint is {checkpoint}; resume with: {resume_hint(argv)}"
                 if checkpoint.exists() else "no checkpoint was written")
        raise Interrupted(interrupt_signal(stop), saved) from None
    warmup = min(result.iterations, schedule.vae_warmup_iters)
    say(f"trained {result.iterations} steps ({warmup} VAE warm-up + {result.iterations - warmup} main) in "
        f"{result.seconds:.0f} s (this call: {time.perf_counter() - started:.0f} s); checkpoint {checkpoint}")
    if args.command == "run" and main:
        args.eval_sequences, args.eval_tau, args.eval_horizon = (
            args.final_eval_sequences, schedule.eval_tau, schedule.eval_horizon)
        if args.eval_image_source is None and run.image_source is not None:
            args.eval_image_source = run.image_source
            print("note: evaluating on the training image source (another seed stream); for a "
                  "finite folder/array that reuses training images: pass --eval-image-source")
        try:
            evaluate_and_report(result.model, args, Path(run.out_dir), run.device,
                                eval_world(args, config.to_dict()),
                                {"train_seconds": result.seconds,
                                 "provenance": provenance(args, checkpoint, config.to_dict())})
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (signals.Interrupted)
            raise Interrupted(interrupt_signal(stop), (
                f"during the final evaluation: training is complete and saved in {checkpoint}; the "
                f"evaluation was not written (evaluate it with: gtmsm evaluate --checkpoint {checkpoint})")) from None


def evaluate_or_predict(args: argparse.Namespace) -> None:
    from gtmsm_model.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.command == "predict" else None
    out_dir = (Path(args.out_dir) if args.out_dir else checkpoint.parent) if out is None else None
    if out is not None:
        problem = output_file_problem(out, (".gif", ".png"))
    else:  # created only when there is something to write (a failed evaluation leaves no folder)
        problem = output_dir_problem(out_dir, create=False)
        if problem is None and out_dir.resolve() != checkpoint.resolve().parent and (out_dir / "checkpoint.pt").exists():
            problem = (f"{out_dir} holds another run's checkpoint; its metrics.json and plots would then describe "
                       "a model it does not hold (choose another --out-dir)")
    if problem is not None:
        raise ValueError(f"{'--out' if out is not None else '--out-dir'}: {problem}")
    if out is None:  # one writer per run folder: not while a run trains there
        from gtmsm_model.run_folder import RunFolder

        RunFolder(out_dir).lock(create=False)
    device = resolve_device(args.device)
    payload = load_checkpoint(checkpoint, map_location=device)
    model = model_from_checkpoint(payload, checkpoint).to(device)
    train_config = payload.get("train_config", {})
    schedule = (train_config or {}).get("schedule") or {}
    for name in ("eval_tau", "eval_horizon"):  # unset: what the checkpoint was evaluated with in training
        if getattr(args, name) is None:
            setattr(args, name, int(schedule.get(name, getattr(Schedule, name))))
    world = eval_world(args, train_config)
    check_image_source("--eval-image-source", args.eval_image_source, world.image_size)
    check_memory({"--eval-sequences/--eval-tau/--eval-horizon": ("the evaluation", eval_memory_need(
        args.eval_sequences, args.eval_tau + args.eval_horizon, world.replace(crop_size=model.config.crop_size),
        model.config.z_dim))})
    if args.command == "evaluate":
        try:
            evaluate_and_report(model, args, out_dir, args.device, world,
                                {"provenance": provenance(args, checkpoint, train_config)})
        except KeyboardInterrupt as stop:
            raise Interrupted(interrupt_signal(stop), f"nothing was written to {out_dir}") from None
        return
    from gtmsm_model.evaluate import GTMSMPredictor
    from gtmsm_model.plots import save_prediction_gif, save_prediction_strip

    rollouts = _heldout(args, world)
    predicted = GTMSMPredictor(model, args.device, args.mode).predict(
        rollouts.observations[:1], rollouts.actions[:1], args.eval_tau)[0]
    save = save_prediction_gif if out.suffix.lower() == ".gif" else save_prediction_strip
    from gtmsm_cli.files import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:  # an interrupted or failed write leaves any old file as it was
        save(rollouts.observations[0], predicted, args.eval_tau, tmp, positions=rollouts.positions[0])
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    prog = f"gtmsm {args.command}"
    from gtmsm_model.checkpoint import CheckpointError

    # Under torchrun every process meets the same bad input: only rank 0 says so.
    report = print if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)
    try:
        with sigterm_raises():  # outside training, SIGTERM stops like Ctrl-C (training checkpoints first)
            if args.command in ("run", "train"):
                run_or_train(args, argv)
            else:
                evaluate_or_predict(args)
    except TrainingInterrupted as stop:
        return stop.exit_status
    except KeyboardInterrupt as stop:
        close_progress_bars()
        return interrupted(prog, stop) if report is print else exit_status(stop)
    except (ValueError, TypeError, OSError, RuntimeError, CheckpointError) as error:
        close_progress_bars()  # the libraries' errors name fields (`out_dir`): say the flags
        report(f"{prog}: error: {flag_text(error_text(error))}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def exit_process(status: int) -> int:
    """What the command's process does with ``main``'s status: under torchrun a refused rank ends at
    once, skipping the interpreter's teardown (about a second with torch loaded): every rank met the
    same refusal at the same moment (the claim is broadcast), and a rank still tearing down when
    torchrun sees another one's status would be killed instead of exiting with its own. Otherwise
    (and for status 0) the status is returned, for ``SystemExit``."""
    if status != 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_now(status)
    return status


def close_progress_bars() -> None:
    """Close every open tqdm bar (it ends its line), so an ``error:`` line starts on its own line."""
    tqdm_module = sys.modules.get("tqdm.std")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar that cannot close must not hide the error itself
            pass


if __name__ == "__main__":
    raise SystemExit(exit_process(main()))

"""``gtmsm``: train, evaluate and predict with GTM-SM from the command line.

    gtmsm run                       # the main job: train the quick preset, evaluate, print, plot
    gtmsm train --preset quick --seed 1 --out-dir runs/s1
    gtmsm train --out-dir runs/s1 --resume          # continue an interrupted run
    gtmsm evaluate --checkpoint runs/s1/checkpoint.pt
    gtmsm predict --checkpoint runs/s1/checkpoint.pt --out prediction.gif

Every ``TrainConfig`` field is a flag (``--z-dim``, ``--iterations``, ...); a preset sets them all
and explicit flags override it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import time
import typing
from pathlib import Path
from typing import Any

from gtmsm_model.train import PRESETS, TrainConfig, make_config, resolve_device


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (the CleanRL convention), read from the source."""
    try:
        body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    except (OSError, TypeError):
        return {}
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
            docs[node.target.id] = str(following.value.value)
    return docs


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    docs = _field_docs(TrainConfig)
    hints = typing.get_type_hints(TrainConfig)
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="named set of hyperparameters (default: quick); flags below override it")
    for field in dataclasses.fields(TrainConfig):
        if field.name == "preset":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        default = PRESETS["quick"].get(field.name, field.default)
        help_text = f"{docs.get(field.name, '')} (quick preset: {default})"
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            base = str if typing.get_origin(kind) is not None else kind  # Optional[str] → str
            parser.add_argument(flag, dest=field.name, type=base, default=argparse.SUPPRESS,
                                metavar=field.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset"}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return make_config(args.preset, **overrides)


def add_eval_flags(parser: argparse.ArgumentParser, shape_flags: bool = True) -> None:
    """Flags choosing the held-out rollouts; ``run`` takes their shape from the TrainConfig."""
    parser.add_argument("--eval-image-source", default=None,
                        help="held-out images: a folder or .npz/.npy path (default: procedural images "
                             "from a seed stream training never uses)")
    parser.add_argument("--eval-seed", type=int, default=0,
                        help="seed of the held-out rollouts (offset from any training stream; default: 0)")
    if shape_flags:
        parser.add_argument("--eval-sequences", type=int, default=64, help="held-out rollouts (default: 64)")
        parser.add_argument("--eval-tau", type=int, default=256, help="memorisation steps (default: 256)")
        parser.add_argument("--eval-horizon", type=int, default=256, help="predicted steps (default: 256)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gtmsm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train a preset, evaluate it on held-out rollouts, print the table, write plots")
    add_train_flags(run)
    add_eval_flags(run, shape_flags=False)
    run.add_argument("--final-eval-sequences", type=int, default=64,
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
    add_eval_flags(predict)
    predict.set_defaults(eval_sequences=1)
    return parser


def _heldout(args: argparse.Namespace, image_size: int = 32) -> Any:
    from gtmsm_model.data import heldout_rollouts

    return heldout_rollouts(args.eval_sequences, args.eval_tau + args.eval_horizon, args.eval_seed,
                            image_source=args.eval_image_source, image_size=image_size)


def evaluate_and_report(model: Any, args: argparse.Namespace, out_dir: Path, device: str,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from gtmsm_model.evaluate import (
        GTMSMPredictor,
        check_targets,
        evaluate_gtmsm,
        format_table,
        write_metrics,
    )
    from gtmsm_model.plots import plot_horizon, plot_prediction_figure, plot_state_map

    rollouts = _heldout(args)
    metrics = evaluate_gtmsm(model, rollouts, args.eval_tau, device=device)
    metrics.update(extra or {})
    metrics["targets_met"] = check_targets(metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out_dir / "metrics.json")
    plot_horizon({"GTM-SM": metrics}, out_dir / "horizon.png",
                 title=f"GTM-SM on {args.eval_sequences} held-out rollouts (VAE floor, revisited: {metrics['vae_mse_revisited']:.4f})")
    predicted = GTMSMPredictor(model, device).predict(rollouts.observations[:1], rollouts.actions[:1], args.eval_tau)
    step_size = int(rollouts.metadata.get("step_size", 3))
    plot_prediction_figure(rollouts.images[0], rollouts.positions[0], rollouts.observations[0], predicted[0],
                           args.eval_tau, step_size, out_dir / "prediction.png")
    import torch

    with torch.no_grad():
        states, _ = model.transition(torch.as_tensor(rollouts.actions).long().to(device))
    plot_state_map(states.cpu().numpy(), rollouts.positions, out_dir / "state_map.png")
    print(format_table(metrics))
    print("\ntargets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in metrics["targets_met"].items()))
    print(f"\nwrote {out_dir / 'metrics.json'} and plots {out_dir / 'horizon.png'}, "
          f"{out_dir / 'prediction.png'}, {out_dir / 'state_map.png'}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("run", "train"):
            import torch

            from gtmsm_model.train import train

            config = config_from_args(args)
            print(f"training GTM-SM, preset {config.preset}, seed {config.seed}, device {config.device}, "
                  f"torch threads {config.threads or torch.get_num_threads()} → {config.out_dir}")
            started = time.perf_counter()
            result = train(config)
            print(f"trained {result.iterations} iterations in {result.seconds:.0f} s "
                  f"(this call: {time.perf_counter() - started:.0f} s); checkpoint {Path(config.out_dir) / 'checkpoint.pt'}")
            if args.command == "run":
                args.eval_sequences, args.eval_tau, args.eval_horizon = (
                    args.final_eval_sequences, config.eval_tau, config.eval_horizon)
                if args.eval_image_source is None and config.image_source is not None:
                    args.eval_image_source = config.image_source
                    print("note: evaluating on the training image source (another seed stream); for a "
                          "finite folder/array that reuses training images: pass --eval-image-source")
                evaluate_and_report(result.model, args, Path(config.out_dir), config.device,
                                    {"train_seconds": result.seconds, "preset": config.preset, "seed": config.seed})
        elif args.command == "evaluate":
            from gtmsm_model.checkpoint import load_model

            model = load_model(args.checkpoint, map_location=resolve_device(args.device)).to(args.device)
            out_dir = Path(args.out_dir) if args.out_dir else Path(args.checkpoint).parent
            evaluate_and_report(model, args, out_dir, args.device)
        elif args.command == "predict":
            from gtmsm_model.checkpoint import load_model
            from gtmsm_model.evaluate import GTMSMPredictor
            from gtmsm_model.plots import save_prediction_gif, save_prediction_strip

            model = load_model(args.checkpoint, map_location=resolve_device(args.device)).to(args.device)
            rollouts = _heldout(args)
            predicted = GTMSMPredictor(model, args.device, args.mode).predict(
                rollouts.observations[:1], rollouts.actions[:1], args.eval_tau)[0]
            out = Path(args.out)
            if out.suffix.lower() == ".gif":
                save_prediction_gif(rollouts.observations[0], predicted, args.eval_tau, out)
            elif out.suffix.lower() == ".png":
                save_prediction_strip(rollouts.observations[0], predicted, args.eval_tau, out)
            else:
                raise ValueError(f"--out must end in .gif or .png, got {out}")
            print(f"wrote {out}")
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"gtmsm {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train GTM-SM on several seeds and check the per-run targets (``gtmsm_model.evaluate``) on held-out rollouts.

For each seed: train a preset on the procedural default images, centre starts, border walls
(wall-clock timed), then evaluate the project's protocol (tau = 256 memorised, 256 predicted steps)
on four conditions, each reported on its own:

* ``centre``: held-out procedural images (a seed stream training never uses), centre start;
* ``random``: the same images, random start;
* ``maze``: the same images, random start, interior walls (``walls="maze"``, 5 % of interior
  edges walled, a new layout per sequence);
* ``photos``: natural photos it never saw (32×32 patches of scikit-learn's sample photos,
  ``gtmsm_env/photo_patches.py``), centre start.

Every condition is scored against its own VAE floor (the model's reconstruction of the same
crops) and its own canvas oracle (memorised raw crops pasted at their true places, unseen pixels
= the memorisation mean colour). Prints one row per seed and condition with PASS/FAIL per target
and writes ``--out`` (.md and .json).

    python benchmarks/train_gtmsm.py --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: the repository root holds the harness
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.conditions import (
    CONDITIONS,
    MAZE_WALL_DENSITY,
    condition_rollouts,
    photo_patches,
)
from benchmarks.harness.models import predict_in_chunks
from benchmarks.harness.targets import TRAINING_TARGETS, check_training
from gtmsm_cli.checks import (
    duplicates_problem,
    output_dir_problem,
    output_stem_problem,
    threads_problem,
)
from gtmsm_cli.files import write_text
from gtmsm_cli.flags import SEED_MAX, bounded, fail, parse_dataclass
from gtmsm_cli.signals import run_script
from gtmsm_model.baselines import MemorisationMean
from gtmsm_model.evaluate import GTMSMEvaluation, evaluate_gtmsm, json_safe, prediction_metrics
from gtmsm_model.train import TrainingInterrupted, make_config, train

PROG = "train_gtmsm.py"

CONDITION_NAMES = {"centre": "reference", "random": "random start", "maze": "maze", "photos": "photos"}
"""This benchmark's condition names → the harness's conditions (full lengths: tau 256, 256 predicted)."""
TAU, HORIZON = CONDITIONS["reference"].lengths(quick=False)


@dataclass
class Args:
    """Benchmark options."""

    seeds: list[int] = bounded([0, 1, 2], ge=0, le=SEED_MAX)
    """Training seeds; each trains and is evaluated separately."""
    preset: str = "quick"
    """TrainConfig preset."""
    eval_sequences: int = bounded(128, ge=1)
    """Held-out rollouts per condition."""
    threads: int = bounded(1, ge=0)
    """Torch CPU threads for training (0: torch's default)."""
    photo_patches: int = bounded(256, ge=1)
    """Natural-photo patches to draw held-out images from."""
    conditions: list[str] = field(default_factory=lambda: ["centre", "random", "maze", "photos"])
    """Conditions to evaluate."""
    runs_dir: str = "runs/benchmark"
    """Where each seed's checkpoint goes."""
    out: str = "benchmarks/results/train_gtmsm"
    """Results path stem: writes OUT.md and OUT.json."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Every flag, and every path the run will write, checked before any training: one
    ``train_gtmsm.py: error: ...`` line naming the flag, exit status 2."""
    from gtmsm_model.train import PRESETS

    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__,
                           choices={"preset": sorted(PRESETS), "conditions": list(CONDITION_NAMES)})
    problem = (threads_problem(args.threads) or duplicates_problem("--seeds", args.seeds)
               or duplicates_problem("--conditions", args.conditions))
    if problem is not None:
        fail(PROG, problem)
    problem = output_stem_problem(args.out, (".md", ".json"))
    if problem is not None:
        fail(PROG, f"--out: {problem}")
    problem = output_dir_problem(args.runs_dir)  # last: it creates the folder
    if problem is not None:
        fail(PROG, f"--runs-dir: {problem}")
    return args


def exit_interrupted(stop: TrainingInterrupted, seed: int, done: list[int], args: Args) -> None:
    """One line saying what SIGINT/SIGTERM cut and what is kept; exit 128 + the signal's number."""
    report = Path(args.out).with_suffix(".md")
    print(f"{PROG}: interrupted by {stop.signal_name} while training seed {seed} (step {stop.step}; its checkpoint "
          f"is kept at {stop.checkpoint}); seeds finished before: {done or 'none'}, but {report} and .json are "
          "written only at the end, so nothing was written there; rerun the same command to start over",
          file=sys.stderr)
    raise SystemExit(stop.exit_status)


def trivial_mse_revisited(rollouts, tau: int) -> float:
    """The trivial predictor's (``MemorisationMean``) revisited MSE on ``rollouts``."""
    return prediction_metrics(predict_in_chunks(MemorisationMean(), rollouts, tau), rollouts, tau).mse_revisited


def make_conditions(args: Args) -> dict[str, Any]:
    """The held-out rollouts of every condition (the same for every seed)."""
    photos = lambda: photo_patches(Path(args.runs_dir) / "photo_patches.npz", args.photo_patches,  # noqa: E731
                                   reuse=False)
    return {name: condition_rollouts(CONDITIONS[CONDITION_NAMES[name]], args.eval_sequences, quick=False,
                                     photos=photos) for name in args.conditions}


def format_rows(rows: list[dict[str, Any]], conditions: list[str]) -> list[str]:
    """One table line per seed and condition."""
    header = ("| seed | condition | rev. MSE | VAE floor | ratio | k-NN hit | drift | s-map RMS | novel MSE "
              "| canvas oracle (novel) | novel / oracle | wall decisions right | fraction novel |")
    lines = [header, "|" + "---|" * 13]
    for row in rows:
        for name in conditions:
            s, d = row["evaluations"][name].scores, row["evaluations"][name].diagnostics
            lines.append(
                f"| {row['seed']} | {name} | {s.mse_revisited:.5f} | {d.vae_mse_revisited:.5f} | "
                f"{d.ratio_to_vae_revisited:.3f} | {d.knn_hit_rate:.4f} | {s.drift_ratio:.3f} | "
                f"{d.smap_rms:.3f} | {s.mse_novel:.4f} | {d.canvas_oracle_mse_novel:.4f} | "
                f"{d.ratio_to_canvas_oracle_novel:.3f} | {d.wall_decision_accuracy:.4f} | "
                f"{s.fraction_novel:.3f} |")
    return lines


def summary_lines(rows: list[dict[str, Any]], conditions: list[str]) -> list[str]:
    """Mean ± std over seeds of the headline numbers per condition."""
    lines = ["| condition | rev. MSE | ratio to floor | k-NN hit | drift | novel / canvas oracle |", "|---|---:|---:|---:|---:|---:|"]
    for name in conditions:
        def stat(value: Callable[[GTMSMEvaluation], float], digits: int, name: str = name) -> str:
            values = np.array([value(row["evaluations"][name]) for row in rows], float)
            return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"
        lines.append(f"| {name} | {stat(lambda e: e.scores.mse_revisited, 5)} | "
                     f"{stat(lambda e: e.diagnostics.ratio_to_vae_revisited, 3)} | "
                     f"{stat(lambda e: e.diagnostics.knn_hit_rate, 4)} | {stat(lambda e: e.scores.drift_ratio, 3)} | "
                     f"{stat(lambda e: e.diagnostics.ratio_to_canvas_oracle_novel, 3)} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    targets = TRAINING_TARGETS
    conditions = make_conditions(args)
    trivial = {name: trivial_mse_revisited(r, TAU) for name, r in conditions.items()}
    threads = args.threads or torch.get_num_threads()
    machine = (f"{platform.machine()} Linux, {os.cpu_count()} CPU cores (shared with other jobs), {threads} torch "
               f"thread(s), torch {torch.__version__}, no GPU")
    rows = []
    for seed in args.seeds:
        config = make_config(args.preset, seed=seed, threads=args.threads, progress=False, overwrite=True,
                             out_dir=f"{args.runs_dir}/{args.preset}-seed{seed}")
        cpu_before = time.process_time()
        try:
            result = train(config)
        except TrainingInterrupted as stop:
            exit_interrupted(stop, seed, [row["seed"] for row in rows], args)
        cpu_seconds = time.process_time() - cpu_before
        evaluations = {name: evaluate_gtmsm(result.model, r, TAU) for name, r in conditions.items()}
        passed = check_training(evaluations, result.seconds, targets)
        rows.append({"seed": seed, "train_seconds": result.seconds, "train_cpu_seconds": cpu_seconds,
                     "evaluations": evaluations, "passed": passed})
        print(f"seed {seed}: trained in {result.seconds:.0f} s ({cpu_seconds:.0f} CPU s); " + ", ".join(
            f"{k} {'PASS' if v else 'FAIL'}" for k, v in passed.items()), flush=True)

    names = list(conditions)
    verdicts = ["| seed | train s (wall) | train CPU s | targets met | failed |", "|---|---:|---:|---|---|"]
    for row in rows:
        failed = [k for k, v in row["passed"].items() if not v]
        verdicts.append(f"| {row['seed']} | {row['train_seconds']:.0f} | {row['train_cpu_seconds']:.0f} | "
                        f"{sum(row['passed'].values())}/{len(row['passed'])} "
                        f"| {', '.join(failed) if failed else '—'} |")
    maze_line = ""
    if "maze" in conditions:
        ratios = [row["evaluations"]["maze"].diagnostics.ratio_to_vae_revisited for row in rows]
        maze_line = (f"Maze (stretch goal ≤ {targets.maze_ratio_stretch:g}× floor): revisited MSE / floor "
                     + ", ".join(f"{r:.2f}" for r in ratios) + " per seed.  ")
    command = "python " + " ".join(sys.argv)
    report = "\n".join([
        f"# GTM-SM training benchmark ({args.preset} preset)", "",
        f"Command: `{command}`  ", f"Machine: {machine}  ", f"Date: {time.strftime('%Y-%m-%d')}", "",
        f"Trained on procedural default images, centre start, border walls. Held-out: {args.eval_sequences} rollouts "
        f"per condition, tau = {TAU} memorised, {HORIZON} predicted steps. centre / random = procedural images from a "
        "seed stream training never uses, centre / random start; maze = the same images, random start, "
        f"{MAZE_WALL_DENSITY:.0%} of interior edges walled (a new layout per sequence); photos = 32×32 patches of "
        "scikit-learn's sample photos at random scales (never seen in training), centre start.", "",
        "## Per seed and condition", "", *format_rows(rows, names), "",
        "## Mean ± std over seeds", "", *summary_lines(rows, names), "",
        "## Targets", "", *verdicts, "",
        f"Targets: centre and random start: revisited MSE ≤ {targets.ratio_to_floor}× VAE floor, k-NN hit ≥ "
        f"{targets.knn_hit}, drift (revisited MSE steps 193–256 / 1–64) ≤ {targets.drift}; novel MSE ≤ "
        f"{targets.novel_to_canvas_oracle}× the canvas oracle's (centre, photos); revisited MSE ≤ "
        f"{targets.default_revisited_mse} (centre) and ≤ {targets.photo_revisited_mse} (photos); training ≤ "
        f"{targets.train_seconds:.0f} s per seed (wall clock, which other jobs on the same cores inflate; the CPU "
        "seconds of the training process are what one dedicated core would take).  ",
        maze_line,
        "Trivial predictor (memorisation-phase mean crop), revisited MSE: "
        + ", ".join(f"{k} {v:.4f}" for k, v in trivial.items()) + ".",
    ])
    print("\n" + report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), report + "\n")
    write_text(out.with_suffix(".json"), json.dumps(json_safe({
        "command": command, "machine": machine, "date": time.strftime("%Y-%m-%d"),
        "targets": dataclasses.asdict(targets), "trivial_mse_revisited": trivial,
        "rows": [{"seed": row["seed"], "train_seconds": row["train_seconds"],
                  "train_cpu_seconds": row["train_cpu_seconds"],
                  "metrics": {name: e.to_dict() for name, e in row["evaluations"].items()},
                  "passed": row["passed"]} for row in rows]}), indent=1))


if __name__ == "__main__":  # outside training (its SIGINT/SIGTERM end in exit_interrupted)
    run_script(PROG, main, "--out is written only at the end")

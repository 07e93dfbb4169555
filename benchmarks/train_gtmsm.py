"""Train GTM-SM on several seeds and check the per-run targets (``gtmsm_model.evaluate``) on held-out rollouts.

For each preset (``--presets``: the wall models side by side — ``quick`` edges, ``learned``,
``seed-gate``) and seed: train on the procedural default images, centre starts, border walls
(wall-clock and CPU timed), then evaluate the project's protocol (tau = 256 memorised, 256
predicted steps, unless the condition says tau 64) on each condition, reported on its own:

* ``centre`` / ``random``: held-out procedural images (a seed stream training never uses), centre /
  random start; ``maze``: the same images, random start, interior walls (5 % of interior edges);
* ``photos`` (``-random``, ``-tau64``): texture-rich photos it never saw (32×32 patches of
  scikit-learn's sample photos, ``gtmsm_env/photo_patches.py``), centre start / random start / tau 64;
* ``flat-photos`` (``-random``, ``-tau64``): the localisation stress set, photos with large flat areas
  beside strong edges (scikit-image's photos);
* ``flat-scenes`` (``-random``, ``-tau64``): procedural scenes with large flat areas and dark
  backgrounds (``gtmsm_env/flat_scenes.py``).

Every condition is scored against its own VAE floor (the model's reconstruction of the same
crops) and its own canvas oracle (memorised raw crops pasted at their true places, unseen pixels
= the memorisation mean colour), with the worst case beside the average (per-rollout revisited
MSE: 99th percentile, maximum, rollouts worse than their own memorisation mean). Prints one row per
preset, seed and condition with PASS/FAIL per target and writes ``--out`` (.md and .json).

    python benchmarks/train_gtmsm.py --presets quick seed-gate --seeds 0 1 2 --threads 1 \
        --eval-sequences 64 --out benchmarks/results/train_gtmsm      # the committed results: edges, seed gate
    python benchmarks/train_gtmsm.py --presets learned --seeds 0 1 2 --threads 1 \
        --eval-sequences 64 --out benchmarks/results/train_gtmsm_learned   # ... and the learned localiser
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
    Condition,
    condition_rollouts,
    image_file,
)
from benchmarks.harness.models import predict_in_chunks
from benchmarks.harness.scoreboard import commit
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
from gtmsm_env.world import World
from gtmsm_model.baselines import MemorisationMean
from gtmsm_model.evaluate import GTMSMEvaluation, evaluate_gtmsm, json_safe, prediction_metrics
from gtmsm_model.train import TrainingInterrupted, make_config, train

PROG = "train_gtmsm.py"

RANDOM_START = World(start="random")


def _variants(key: str, harness_name: str) -> dict[str, Condition]:
    base = CONDITIONS[harness_name]
    return {key: base,
            f"{key}-random": dataclasses.replace(base, name=f"{base.name}, random start", world=RANDOM_START,
                                                 description=base.description.replace("centre start", "random start")),
            f"{key}-tau64": dataclasses.replace(base, name=f"{base.name}, tau 64", tau=64)}


BENCH_CONDITIONS: dict[str, Condition] = {
    "centre": CONDITIONS["reference"], "random": CONDITIONS["random start"], "maze": CONDITIONS["maze"],
    **_variants("photos", "photos"), **_variants("flat-photos", "flat photos"),
    **_variants("flat-scenes", "flat scenes"),
}
"""This benchmark's condition names → the harness's conditions (full lengths: tau 256 (or 64), 256 predicted)."""
TAU, HORIZON = CONDITIONS["reference"].lengths(quick=False)


@dataclass
class Args:
    """Benchmark options."""

    seeds: list[int] = bounded([0, 1, 2], ge=0, le=SEED_MAX)
    """Training seeds; each trains and is evaluated separately."""
    presets: list[str] = field(default_factory=lambda: ["quick"])
    """TrainConfig presets, each trained on every seed (e.g. quick learned seed-gate: the three wall models)."""
    eval_sequences: int = bounded(128, ge=1)
    """Held-out rollouts per condition."""
    threads: int = bounded(1, ge=0)
    """Torch CPU threads for training (0: torch's default)."""
    photo_patches: int = bounded(256, ge=1)
    """Natural-photo patches to draw held-out images from."""
    conditions: list[str] = field(default_factory=lambda: list(BENCH_CONDITIONS))
    """Conditions to evaluate."""
    runs_dir: str = "runs/benchmark"
    """Where each seed's checkpoint goes."""
    out: str = "runs/benchmark/train_gtmsm"
    """Results path stem: writes OUT.md and OUT.json (the committed results: --out benchmarks/results/train_gtmsm)."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Every flag, and every path the run will write, checked before any training: one
    ``train_gtmsm.py: error: ...`` line naming the flag, exit status 2."""
    from gtmsm_model.train import PRESETS

    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__,
                           choices={"presets": sorted(PRESETS), "conditions": list(BENCH_CONDITIONS)})
    problem = (threads_problem(args.threads) or duplicates_problem("--seeds", args.seeds)
               or duplicates_problem("--presets", args.presets)
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
    images = lambda kind: image_file(Path(args.runs_dir), kind, args.photo_patches, reuse=True)  # noqa: E731
    return {name: condition_rollouts(BENCH_CONDITIONS[name], args.eval_sequences, quick=False,
                                     images=images) for name in args.conditions}


def condition_tau(name: str) -> int:
    return BENCH_CONDITIONS[name].lengths(quick=False)[0]


def format_rows(rows: list[dict[str, Any]], conditions: list[str]) -> list[str]:
    """One table line per preset, seed and condition."""
    header = ("| preset | seed | condition | rev. MSE | VAE floor | ratio | rev. p99 | rev. max | lost | k-NN hit "
              "| drift | novel MSE | novel / canvas oracle | wall decisions right |")
    lines = [header, "|" + "---|" * 14]
    for row in rows:
        for name in conditions:
            s, d = row["evaluations"][name].scores, row["evaluations"][name].diagnostics
            lines.append(
                f"| {row['preset']} | {row['seed']} | {name} | {s.mse_revisited:.5f} | {d.vae_mse_revisited:.5f} | "
                f"{d.ratio_to_vae_revisited:.3f} | {s.revisited_p99:.5f} | {s.revisited_max:.5f} | "
                f"{s.rollouts_lost:.0f}/{s.sequences} | {d.knn_hit_rate:.4f} | {s.drift_ratio:.3f} | "
                f"{s.mse_novel:.4f} | {d.ratio_to_canvas_oracle_novel:.3f} | {d.wall_decision_accuracy:.4f} |")
    return lines


def summary_lines(rows: list[dict[str, Any]], conditions: list[str], presets: list[str]) -> list[str]:
    """Mean ± std over seeds of the headline numbers per preset and condition, and the worst seed's tail."""
    lines = ["| condition | preset | rev. MSE | ratio to floor | worst rollout (max over seeds) | lost (sum) "
             "| drift | novel / canvas oracle |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in conditions:
        for preset in presets:
            mine = [row for row in rows if row["preset"] == preset]
            if not mine:
                continue

            def stat(value: Callable[[GTMSMEvaluation], float], digits: int, mine=mine, name=name) -> str:
                values = np.array([value(row["evaluations"][name]) for row in mine], float)
                return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"
            worst = float(np.nanmax([row["evaluations"][name].scores.revisited_max for row in mine]))
            lost = sum(row["evaluations"][name].scores.rollouts_lost for row in mine)
            total = sum(row["evaluations"][name].scores.sequences for row in mine)
            lines.append(f"| {name} | {preset} | {stat(lambda e: e.scores.mse_revisited, 5)} | "
                         f"{stat(lambda e: e.diagnostics.ratio_to_vae_revisited, 3)} | {worst:.5f} | "
                         f"{lost:.0f}/{total} | {stat(lambda e: e.scores.drift_ratio, 3)} | "
                         f"{stat(lambda e: e.diagnostics.ratio_to_canvas_oracle_novel, 3)} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    revision = commit()  # the code that runs: read before any training (HEAD may move while it runs)
    targets = TRAINING_TARGETS
    conditions = make_conditions(args)
    trivial = {name: trivial_mse_revisited(r, condition_tau(name)) for name, r in conditions.items()}
    threads = args.threads or torch.get_num_threads()
    machine = (f"{platform.machine()} Linux, {os.cpu_count()} CPU cores (shared with other jobs), {threads} torch "
               f"thread(s), torch {torch.__version__}, no GPU")
    rows = []
    for preset in args.presets:
        for seed in args.seeds:
            config = make_config(preset, seed=seed, threads=args.threads, progress=False, overwrite=True,
                                 out_dir=f"{args.runs_dir}/{preset}-seed{seed}")
            cpu_before = time.process_time()
            try:
                result = train(config)
            except TrainingInterrupted as stop:
                exit_interrupted(stop, seed, [row["seed"] for row in rows], args)
            cpu_seconds = time.process_time() - cpu_before
            evaluations = {}
            for name, r in conditions.items():
                evaluations[name] = evaluate_gtmsm(result.model, r, condition_tau(name))
            passed = check_training(evaluations, cpu_seconds, targets, wall_model=config.model.wall_model,
                                    preset=preset)
            rows.append({"preset": preset, "wall_model": config.model.wall_model, "seed": seed,
                         "train_seconds": result.seconds, "train_cpu_seconds": cpu_seconds,
                         "evaluations": evaluations, "passed": passed})
            print(f"{preset} seed {seed}: trained in {result.seconds:.0f} s ({cpu_seconds:.0f} CPU s); " + ", ".join(
                f"{k} {'PASS' if v else 'FAIL'}" for k, v in passed.items()), flush=True)

    names = list(conditions)
    verdicts = ["| preset | seed | train s (wall) | train CPU s | targets met | failed |", "|---|---|---:|---:|---|---|"]
    for row in rows:
        failed = [k for k, v in row["passed"].items() if not v]
        verdicts.append(f"| {row['preset']} | {row['seed']} | {row['train_seconds']:.0f} | "
                        f"{row['train_cpu_seconds']:.0f} | {sum(row['passed'].values())}/{len(row['passed'])} "
                        f"| {', '.join(failed) if failed else '—'} |")
    maze_line = ""
    if "maze" in conditions:
        ratios = [f"{row['preset']} {row['evaluations']['maze'].diagnostics.ratio_to_vae_revisited:.2f}" for row in rows]
        maze_line = (f"Maze (reported; stretch goal ≤ {targets.maze_ratio_stretch:g}× floor): revisited MSE / floor "
                     + ", ".join(ratios) + " per seed.  ")
    command = "python " + " ".join(sys.argv)
    descriptions = "; ".join(f"{name} = {BENCH_CONDITIONS[name].description} (tau {condition_tau(name)})"
                             for name in names)
    report = "\n".join([
        f"# GTM-SM training benchmark (presets {', '.join(args.presets)})", "",
        f"Command: `{command}`  ", f"Commit: {revision}  ", f"Machine: {machine}  ",
        f"Date: {time.strftime('%Y-%m-%d')}", "",
        f"Trained on procedural default images, centre start, border walls. Held-out: {args.eval_sequences} rollouts "
        f"per condition, {HORIZON} predicted steps. Conditions: {descriptions}. "
        "Per-rollout columns: each rollout's own revisited MSE, its 99th percentile and maximum over the "
        "rollouts, and 'lost' = rollouts worse than their own memorisation mean on revisited steps.", "",
        "## Mean ± std over seeds", "", *summary_lines(rows, names, args.presets), "",
        "## Targets", "", *verdicts, "",
        f"Targets: centre and random start: revisited MSE ≤ {targets.ratio_to_floor}× VAE floor, k-NN hit ≥ "
        f"{targets.knn_hit}, drift (revisited MSE steps 193–256 / 1–64) ≤ {targets.drift}; novel MSE ≤ "
        f"{targets.novel_to_canvas_oracle}× the canvas oracle's (centre, photos); revisited MSE ≤ "
        f"{targets.default_revisited_mse} (centre) and ≤ {targets.photo_revisited_mse} (photos); stress conditions "
        f"(photos, flat-photos, flat-scenes; centre, random start, tau 64): revisited MSE ≤ "
        f"{targets.stress_ratio_to_floor}× floor, worst rollout's revisited MSE ≤ {targets.stress_max_rollout}, drift ≤ "
        f"{targets.stress_drift}; learned wall model: centre and random ≤ {targets.learned_ratio_to_floor}× floor, "
        f"flat conditions ≤ {targets.learned_flat_ratio_to_floor}× floor (no tail or drift target); training ≤ "
        f"{targets.train_seconds:.0f} CPU seconds per seed for the quick preset (the CPU seconds of the training "
        "process: what one dedicated core takes, whatever else runs on the machine).  ",
        maze_line,
        "Trivial predictor (memorisation-phase mean crop), revisited MSE: "
        + ", ".join(f"{k} {v:.4f}" for k, v in trivial.items()) + ".", "",
        "## Per preset, seed and condition", "", *format_rows(rows, names),
    ])
    print("\n" + report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), report + "\n")
    write_text(out.with_suffix(".json"), json.dumps(json_safe({
        "command": command, "commit": revision, "machine": machine, "date": time.strftime("%Y-%m-%d"),
        "targets": dataclasses.asdict(targets), "trivial_mse_revisited": trivial,
        "rows": [{"preset": row["preset"], "wall_model": row["wall_model"], "seed": row["seed"],
                  "train_seconds": row["train_seconds"], "train_cpu_seconds": row["train_cpu_seconds"],
                  "metrics": {name: e.to_dict() for name, e in row["evaluations"].items()},
                  "passed": row["passed"]} for row in rows]}), indent=1))


if __name__ == "__main__":  # outside training (its SIGINT/SIGTERM end in exit_interrupted)
    run_script(PROG, main, "--out is written only at the end")

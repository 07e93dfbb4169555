"""GTM-SM (three wall models) against a no-learning reference, learned peers with a memory (retrieval
transformer, pose retrieval), memory-less controls (RSSM, action LSTM) and bounds, on one protocol and
nine conditions (the evaluation protocol of ``gtmsm_model/evaluate.py``; ``benchmarks/harness``).

    python benchmarks/compare_models.py --threads 1                  # the full run (2 workers), to runs/compare/
    python benchmarks/compare_models.py --threads 1 --publish        # ... and to benchmarks/results/ (committed)
    python benchmarks/compare_models.py --quick                      # smoke run of every code path, < 2 min
    python benchmarks/compare_models.py --model my_pkg.my_module:MyModel   # add your model (README)

A run writes only under ``--out-dir`` (default ``runs/compare``, outside the committed results):
``benchmarks/results`` changes only with ``--publish`` (or that folder named as ``--out-dir``), and
``--quick``, a smoke run whose numbers mean nothing, never writes there.

Everything the numbers depend on (conditions, budgets, the metric record, targets, outputs) lives in
``benchmarks/harness``; this script only turns flags into a ``Plan``. Writes ``compare.md``,
``compare.json`` (top-level ``"summary"``), ``peer_sweep.md``/``.json``, one
``compare_horizon_<condition>.png`` per condition and ``compare_overview.png`` to ``--out-dir``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the repository root holds the harness
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import plan as planning
from benchmarks.harness import report, runner, scoreboard
from benchmarks.harness.conditions import CONDITIONS, missing_packages
from benchmarks.harness.plan import GTMSMInterrupted, Plan
from gtmsm_cli.checks import duplicates_problem, output_dir_problem, threads_problem
from gtmsm_cli.flags import SEED_MAX, bounded, error_text, fail, parse_dataclass
from gtmsm_cli.signals import interrupted, run_script

PROG = "compare_models.py"
DEFAULT_PPO_POLICY = Path("benchmarks/results/ppo_coverage.zip")
"""As the help shows it; it stands for the repository's file (``harness.plan.DEFAULT_PPO_POLICY``)."""


@dataclass
class Args:
    preset: str = "quick"
    """the default GTM-SM's training preset (debug, quick, paper); its training CPU seconds are the peers' 1× budget
    (the learned-localiser and seed-formulation rows train with their own presets, learned and seed-gate)"""
    seeds: list[int] = bounded([0, 1, 2], ge=0, le=SEED_MAX)
    """training seeds; every learned model trains once per seed"""
    sweep: bool = True
    """choose every learned peer's and control's settings by the documented sweep on the first seed"""
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    """conditions to evaluate (reference, photos, flat photos, flat scenes, random start, uniform policy, long horizon, short memory, maze)"""
    model: list[str] = field(default_factory=list)
    """your model(s), module:Class or path/to/file.py:Class, run through the same harness at 1×"""
    ppo_policy: Path | None = DEFAULT_PPO_POLICY
    """SB3 policy for the 'GTM-SM with PPO-explored memorisation' row ('none' to skip); the default is the
    repository's committed policy, found from this script's location (so it works from any folder); a path you
    give is relative to the current folder"""
    eval_sequences: int = bounded(64, ge=1)
    """held-out sequences per condition"""
    device: str = "cpu"
    """torch device for every model"""
    threads: int = bounded(0, ge=0)
    """torch CPU threads per worker process (0: the machine's cores shared out among --workers; the committed run uses 1)"""
    quick: bool = False
    """smoke run: debug preset, tiny peers, a few steps, short sequences, 1 seed"""
    out_dir: Path = Path("runs/compare")
    """where compare.md, compare.json, peer_sweep.* and the plots go (the committed results only with --publish)"""
    publish: bool = False
    """write the report to benchmarks/results (the committed results) instead of --out-dir"""
    run_dir: Path = Path("runs/compare")
    """where GTM-SM's run folders and the photo patches go (not committed)"""
    progress: bool = False
    """show GTM-SM's progress bar"""
    workers: int = bounded(2, ge=1, le=64)
    """processes that train and evaluate at once (each job timed in its own process's CPU seconds; 1: all in this one)"""
    model_timeout_s: float | None = bounded(None, gt=0)
    """each --model's time limit per seed, in seconds, for building, fit and every predict together (unset: 3 × its budget + 60 s)"""


def parse_args(argv: list[str] | None = None) -> Args:
    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__.split("\n\n")[0],
                           choices={"preset": ["debug", "quick", "paper"], "conditions": list(CONDITIONS)})
    if args.ppo_policy is not None and str(args.ppo_policy).lower() == "none":
        args.ppo_policy = None
    problem = threads_problem(args.threads) or next(
        filter(None, (duplicates_problem(flag, getattr(args, name)) for flag, name in (
            ("--seeds", "seeds"), ("--conditions", "conditions"),
            ("--model", "model")))), None)
    if problem is not None:
        fail(PROG, problem)
    committed = planning.REPO_ROOT / "benchmarks" / "results"
    if args.publish:
        if args.out_dir != Args.out_dir and args.out_dir.resolve() != committed.resolve():
            fail(PROG, f"--publish writes to {committed}; --out-dir {args.out_dir} contradicts it (drop one)")
        args.out_dir = committed
    if args.quick and args.out_dir.resolve() == committed.resolve():
        fail(PROG, "--quick is a smoke run (tiny models, a few steps): it never writes the committed results in "
                   "benchmarks/results; drop --publish or choose another --out-dir")
    if args.quick and args.preset not in (Args.preset, "debug"):
        fail(PROG, f"--quick trains GTM-SM with the debug preset; --preset {args.preset} contradicts it (drop one)")
    return args


def ppo_policy_path(args: Args) -> Path | None:
    """``--ppo-policy`` as a path to open: the default is the repository's file wherever this runs."""
    if args.ppo_policy is not None and args.ppo_policy == DEFAULT_PPO_POLICY:
        return planning.DEFAULT_PPO_POLICY
    return args.ppo_policy


def make_plan(args: Args) -> Plan:
    seeds = args.seeds[:1] if args.quick else args.seeds
    return Plan(
        seeds=seeds, preset=args.preset, workers=args.workers,
        sweep=args.sweep, eval_sequences=4 if args.quick else args.eval_sequences, conditions=args.conditions,
        plugins=args.model, ppo_policy=ppo_policy_path(args), device=args.device, threads=args.threads,
        quick=args.quick, run_dir=args.run_dir, progress=args.progress,
        model_timeout_s=args.model_timeout_s,
    )


def check_inputs(args: Args, plan: Plan) -> None:
    """Every flag, file, folder and optional package the run needs, before any training (one error
    line, exit 2)."""
    missing = missing_packages(plan.conditions)
    if missing:
        names = sorted({package for _, package in missing})
        fail(PROG, f"the condition(s) {', '.join(c for c, _ in missing)} need {' and '.join(names)}, which "
                   "is not installed: pip install -e '.[dev]' brings it (or leave those out with --conditions)")
    if plan.ppo_policy is not None and "reference" in plan.conditions and importlib.util.find_spec(
            "stable_baselines3") is None:
        fail(PROG, "the PPO-explored row needs stable-baselines3, which is not installed: pip install -e '.[sb3]' "
                   "brings it (or --ppo-policy none skips the row)")
    try:
        if args.out_dir.exists() and not args.out_dir.is_dir():  # before check_plan creates --run-dir
            fail(PROG, f"--out-dir: {args.out_dir} exists and is not a folder")
        planning.check_plan(plan)
        problem = output_dir_problem(args.out_dir)  # last: it creates the folder
        if problem is not None:
            fail(PROG, f"--out-dir: {problem}")
    except ValueError as error:  # the harness's messages name the flag
        fail(PROG, error_text(error))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    plan = make_plan(args)
    check_inputs(args, plan)
    try:
        return measure(args, plan, argv)
    except GTMSMInterrupted as stop:
        print(f"\n{PROG}: interrupted by {stop.signal_name} while training GTM-SM on seed {stop.seed} (step "
              f"{stop.step}; its checkpoint is kept at {stop.checkpoint}); {args.out_dir} was not touched (it is "
              "written at the end); rerun the same command to start over", file=sys.stderr)
        raise SystemExit(stop.exit_status) from None
    except KeyboardInterrupt as stop:
        raise SystemExit(interrupted(PROG, stop, f"{args.out_dir} was not touched (it is written at the end); "
                                                 "rerun the same command to start over")) from None


def measure(args: Args, plan: Plan, argv: list[str] | None) -> dict[str, Any]:
    command = "python benchmarks/compare_models.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    revision = scoreboard.code_revision()  # the code that runs: read before any training (HEAD may move)
    start = time.perf_counter()
    if args.quick:
        print(f"{PROG}: --quick is a smoke run of every code path (tiny models, a few training steps, 4 sequences): "
              f"its numbers mean nothing and its targets are expected to FAIL; it writes only to {args.out_dir}",
              flush=True)
    harness = runner.run(plan)
    wall_seconds = time.perf_counter() - start
    written = report.write_outputs(harness, args.out_dir, command.strip(), wall_seconds, dataclasses.asdict(args),
                                  revision)
    print()
    print("\n".join(f"{'NOTE' if c.get('report_only') else 'PASS' if c['passed'] else 'FAIL'}: {c['target']} — {c['value']}" for c in written["checks"]))
    if args.quick:
        print("(a smoke run: the FAIL lines above are expected; the targets are judged on the full run)")
    print(f"\nwrote {args.out_dir / 'compare.md'} and compare.json, plots, peer_sweep.*, scores/")
    if harness.plugin_labels:  # your model's rows, ranked among the committed scoreboard (only read, never written)
        committed = scoreboard.load_scores()
        for entry in written["summary"]:
            if entry["model"] in harness.plugin_labels:
                print("\n" + "\n".join(scoreboard.ranking(entry, committed)))
        print(f"\nyour score files: {args.out_dir / 'scores'} (the committed scoreboard, {scoreboard.COMMITTED}, "
              "is not touched)")
    return written


if __name__ == "__main__":
    run_script(PROG, main)

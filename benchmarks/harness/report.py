"""The comparison's report: ``compare.md``, ``compare.json``, ``peer_sweep.md``/``.json`` and the
plots, with the command, the machine (``run_folder.machine_description``) and the package versions."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.conditions import (
    CONDITIONS,
    EVAL_SEED,
    TRAINING_DISTRIBUTION,
    VALIDATION_SEED,
)
from benchmarks.harness.figures import plot_condition, plot_overview
from benchmarks.harness.models import PPO_NAME, SWEEP_FRACTION
from benchmarks.harness.plan import Plan
from benchmarks.harness.records import summarise
from benchmarks.harness.runner import Harness, score
from benchmarks.harness.targets import COMPARE_TARGETS, check_comparison
from gtmsm_cli.files import write_text
from gtmsm_model.baselines import MemorisationMean
from gtmsm_model.data import HELDOUT_SEED_OFFSET
from gtmsm_model.evaluate import json_safe
from gtmsm_model.run_folder import machine_description, package_versions


def _cell(entry: dict[str, Any], key: str, digits: str) -> str:
    value, std = entry.get(key), entry.get(f"{key}_std")
    if value is None or not math.isfinite(value):
        return "—"
    text = format(value, digits)
    return text if std is None or not math.isfinite(std) else f"{text} ± {format(std, digits)}"


def condition_table(entries: list[dict[str, Any]]) -> str:
    """One condition's Markdown table, one line per model (a failed model's note says why)."""
    lines = ["| model | kind | seeds | MSE | MSE revisited | MSE novel | revisited, last half | fraction revisited "
             "| SSIM | train s | train steps | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in entries:
        note = "**below trivial**" if e["below_trivial"] else ""
        if e.get("failed"):
            note = "**failed**: " + e["failed"].replace("|", "\\|")
        seconds = "—" if not math.isfinite(e["train_seconds"]) else f"{e['train_seconds']:.0f}"
        steps = "—" if not math.isfinite(e["train_iterations"]) else f"{e['train_iterations']:.0f}"
        lines.append(f"| {e['model']} | {e['kind']} | {e['seeds']} | {_cell(e, 'mse', '.5f')} | "
                     f"{_cell(e, 'mse_revisited', '.5f')} | {_cell(e, 'mse_novel', '.5f')} | "
                     f"{_cell(e, 'mse_revisited_late', '.5f')} | {_cell(e, 'fraction_revisited', '.3f')} | "
                     f"{_cell(e, 'ssim', '.3f')} | {seconds} | {steps} | {note} |")
    return "\n".join(lines)


def slug(condition: str) -> str:
    """A condition's name as it appears in file names."""
    return condition.replace(" ", "_")


def write_outputs(harness: Harness, out_dir: Path, command: str, wall_seconds: float,
                  args: dict[str, Any]) -> dict[str, Any]:
    """Every file of the report into ``out_dir``; returns what ``compare.json`` holds."""
    plan = harness.plan
    summary = summarise(harness.rows)
    checks = check_comparison(summary, wall_seconds, plan.quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    versions = package_versions()
    threads = plan.threads or torch.get_num_threads()
    machine_line = (f"{machine['platform']}, {machine['cpu_count']} logical cores (shared with other jobs), "
                    f"{threads} torch thread(s), device {plan.device}, torch {versions.get('torch')}, "
                    f"Python {versions.get('python')}")
    report = {
        "command": command, "date": machine["date"], "machine": machine, "machine_line": machine_line,
        "package_versions": versions, "wall_seconds": wall_seconds,
        "args": json_safe({k: str(v) if isinstance(v, Path) else v for k, v in args.items()}),
        "training_distribution": TRAINING_DISTRIBUTION,
        "conditions": {name: dataclasses.asdict(CONDITIONS[name]) for name in plan.conditions},
        "targets": dataclasses.asdict(COMPARE_TARGETS), "checks": checks,
        "summary": summary, "sweep": harness.sweep, "seeds": harness.seeds_info, "skipped": harness.skipped,
        "rows": [row.to_dict() for row in harness.rows],
    }
    write_text(out_dir / "compare.json", json.dumps(json_safe(report), indent=1, allow_nan=False))
    for name in plan.conditions:
        entries = [e for e in summary if e["condition"] == name]
        plot_condition(entries, name, out_dir / f"compare_horizon_{slug(name)}.png")
    plot_overview(summary, out_dir / "compare_overview.png")
    write_text(out_dir / "compare.md", format_markdown(report, plan))
    if harness.sweep:
        write_sweep(harness, out_dir, command, machine_line, machine["date"])
    return report


def write_sweep(harness: Harness, out_dir: Path, command: str, machine_line: str, date: str) -> None:
    lines = ["# Peer sweep: RSSM and action LSTM", "",
             f"- command: `{command}` (the sweep is the first part of the comparison run)",
             f"- machine: {machine_line}", f"- date: {date}", "",
             "Each candidate trains on the first seed, on GTM-SM's training distribution and sampler keys, for "
             f"{SWEEP_FRACTION:.2g} of GTM-SM's measured wall-clock on that seed (a weight snapshot is kept at half "
             f"of that). Score: revisited MSE on {len(harness.validation)} validation rollouts of the reference "
             f"setup (training distribution; seed stream {VALIDATION_SEED} + {HELDOUT_SEED_OFFSET}, disjoint from "
             "the test conditions). The lowest score at the end is chosen, continued in the same run to 1× (and "
             "to the slow multiple on the slow seeds) and used for every other seed. The longer budgets' effect "
             "(training length) is in compare.md's @1× and @4× rows.", "",
             "| family | candidate | lr | s (early) | steps | validation revisited MSE | s (end) | steps | "
             "validation revisited MSE | chosen |", "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in harness.sweep:
        lines.append(f"| {r['family']} | {r['candidate']} | {r['lr']:g} | {r['seconds_early']:.0f} | "
                     f"{r['iterations_early']} | {r['val_mse_revisited_early']:.5f} | {r['seconds_end']:.0f} | "
                     f"{r['iterations_end']} | {r['val_mse_revisited_end']:.5f} | {'yes' if r.get('chosen') else ''} |")
    tau = CONDITIONS["reference"].lengths(harness.plan.quick)[0]
    bar = score(MemorisationMean(), harness.validation, tau).mse_revisited
    lines += ["", f"Memorisation mean on the same validation rollouts (the trivial bar): {bar:.5f}."]
    write_text(out_dir / "peer_sweep.md", "\n".join(lines) + "\n")
    write_text(out_dir / "peer_sweep.json", json.dumps(json_safe({
        "command": command, "machine": machine_line, "date": date, "sweep_fraction_of_1x": SWEEP_FRACTION,
        "validation_memorisation_mean_mse_revisited": bar, "candidates": harness.sweep}), indent=1))


def format_markdown(report: dict[str, Any], plan: Plan) -> str:
    summary = report["summary"]
    seeds_info = report["seeds"]
    one_x = ", ".join(f"seed {s['seed']}: {s['gtmsm_seconds']:.0f} s" for s in seeds_info)
    slow = [s for s in plan.slow_seeds if s in plan.seeds] if plan.slow_multiple > 1 else []
    lines = [
        "# Model comparison: GTM-SM vs learned peers and bounds, seven conditions",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine_line']}",
        f"- date: {report['date']}; total wall-clock {report['wall_seconds'] / 60:.1f} min",
        f"- evaluation: {plan.eval_sequences} held-out sequences per condition, the same for every training seed "
        f"(seed stream {EVAL_SEED} + {HELDOUT_SEED_OFFSET}, images no model trained on); predicted from actions "
        "alone after tau memorised steps; pixels in [0, 1]; revisited = the true position was seen while "
        "memorising, novel = it was not; 'last half' = revisited steps in the last half of the horizon.",
        f"- **what every learned model saw in training**: {TRAINING_DISTRIBUTION}. GTM-SM, the RSSM, the action "
        "LSTM and the transformer read the same sampler with the same keys (GTM-SM's main-phase keys). No model "
        "trained on photos, random starts, uniform actions, long horizons, short memories or mazes: those "
        "conditions test transfer, and the rows say so by this line.",
        f"- **budgets**: GTM-SM trains with its preset (`{plan.preset}`); its measured wall-clock per seed is the "
        f"1× budget of the peers on that seed ({one_x}). Each peer is one run: evaluated at 1× "
        + (f"and, on seed(s) {slow}, continued in the same run (same optimiser, next data keys) to "
           f"{plan.slow_multiple:g}× and evaluated again (so the @{plan.slow_multiple:g}× rows have "
           f"{len(slow)} seed(s)). " if slow else ". ")
        + "Wall-clock on a shared 2-core machine is noisy; the step counts are in the table. "
        "The RSSM's and LSTM's settings come from the sweep in `peer_sweep.md` (first seed, a third of the 1× "
        "budget per candidate); the transformer's design is in `gtmsm_model/baselines/transformer.py`.",
        "- bounds: dataset mean, memorisation mean (the trivial bar: a learned model that does not beat it on "
        "revisited steps is marked **below trivial**), copy last observed; oracles read the true positions "
        "(oracle memory, canvas oracle, oracle-position VAE) or the true future crops (VAE floor). Bounds without "
        "a trained part are deterministic and computed once (seeds = 1).",
        f"- {PPO_NAME} (reference condition only): the same trained GTM-SM, the same test images, starts and "
        "prediction-phase random walk, but the memorisation actions chosen by the committed PPO coverage policy "
        "(`benchmarks/results/ppo_coverage.zip`, greedy).",
        "",
        *([f"- **cut to stay within {plan.time_limit_minutes:g} minutes**: " + "; ".join(report["skipped"])]
          if report["skipped"] else []),
        "",
        "## Targets",
        "",
        *[f"- {'PASS' if c['passed'] else 'FAIL'}: {c['target']} — {c['value']}" for c in report["checks"]],
        "",
        "![overview](compare_overview.png)",
        "",
    ]
    for name in plan.conditions:
        condition = CONDITIONS[name]
        tau, horizon = condition.lengths(plan.quick)
        entries = [e for e in summary if e["condition"] == name]
        lines += [f"## {name}", "", f"{condition.description}; tau {tau} + {horizon} predicted steps.", "",
                  condition_table(entries), "", f"![{name}](compare_horizon_{slug(name)}.png)", ""]
    return "\n".join(lines)



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
from benchmarks.harness.figures import model_colours, plot_condition, plot_overview
from benchmarks.harness.models import FAMILY_KIND, PPO_NAME, SWEEP_FRACTION
from benchmarks.harness.plan import Plan
from benchmarks.harness.records import summarise
from benchmarks.harness.runner import Harness, score
from benchmarks.harness.scoreboard import code_revision, write_scores
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


def _interval(bounds: list[float] | None) -> str:
    return "—" if not bounds else f"{bounds[0]:.5f}–{bounds[1]:.5f}"


def condition_table(entries: list[dict[str, Any]]) -> str:
    """One condition's Markdown table, one line per model (a failed model's note says why)."""
    lines = ["| model | kind | seeds | MSE | MSE revisited | revisited 95 % CI | MSE novel | revisited, last half "
             "| revisited p99 | worst rollout | lost | fraction revisited | SSIM | train CPU s | train steps | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in entries:
        note = "**below trivial**" if e["below_trivial"] else ""
        if e.get("failed"):
            note = "**failed**: " + e["failed"].replace("|", "\\|")
        seconds = "—" if not math.isfinite(e["train_seconds"]) else f"{e['train_seconds']:.0f}"
        steps = "—" if not math.isfinite(e["train_iterations"]) else f"{e['train_iterations']:.0f}"
        lines.append(f"| {e['model']} | {e['kind']} | {e['seeds']} | {_cell(e, 'mse', '.5f')} | "
                     f"{_cell(e, 'mse_revisited', '.5f')} | {_interval(e.get('mse_revisited_ci95'))} | "
                     f"{_cell(e, 'mse_novel', '.5f')} | "
                     f"{_cell(e, 'mse_revisited_late', '.5f')} | {_cell(e, 'revisited_p99', '.5f')} | "
                     f"{_cell({'v': e.get('revisited_max')}, 'v', '.5f')} | {_cell(e, 'rollouts_lost', '.1f')} | "
                     f"{_cell(e, 'fraction_revisited', '.3f')} | "
                     f"{_cell(e, 'ssim', '.3f')} | {seconds} | {steps} | {note} |")
    return "\n".join(lines)


def learning_table(summary: list[dict[str, Any]], conditions: list[str]) -> list[str]:
    """Per condition: GTM-SM's best learned configuration (the GTM-SM row with the lowest revisited MSE on the
    reference condition, the same row in every condition) against the best no-learning row and the best
    of the project's generic learned peers (plug-ins are not among them) in that condition, revisited and novel MSE and their ratios (< 1: GTM-SM is better)."""
    scored = [e for e in summary if not e.get("failed") and math.isfinite(e["mse_revisited"])]
    gtmsm = [e for e in scored if e["kind"] == "GTM-SM" and e["condition"] == "reference" and e["model"] != PPO_NAME]
    if not gtmsm:
        return ["(needs the reference condition and a trained GTM-SM row: not in this run)"]
    best = min(gtmsm, key=lambda e: e["mse_revisited"])["model"]
    lines = [f"GTM-SM's best learned configuration on the reference condition is **{best}**; each ratio is its "
             "MSE over the other row's (below 1: GTM-SM is better; above 1: it loses).", "",
             "| condition | GTM-SM revisited | no learning (best) | revisited | ratio | learned peer (best) | revisited "
             "| ratio | GTM-SM novel | no learning novel | ratio | peer novel | ratio |",
             "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in conditions:
        here = [e for e in scored if e["condition"] == name]
        ours = next((e for e in here if e["model"] == best), None)
        plain = [e for e in here if e["kind"] == "no learning"]
        peers = [e for e in here if e["kind"] == "learned peer" and e["model"].split(" @")[0] in FAMILY_KIND]
        if ours is None or not plain or not peers:
            continue
        plain_best = min(plain, key=lambda e: e["mse_revisited"])
        peer_best = min(peers, key=lambda e: e["mse_revisited"])
        ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "—"  # noqa: E731
        lines.append(f"| {name} | {ours['mse_revisited']:.5f} | {plain_best['model']} | {plain_best['mse_revisited']:.5f} "
                     f"| {ratio(ours['mse_revisited'], plain_best['mse_revisited'])} | {peer_best['model']} | "
                     f"{peer_best['mse_revisited']:.5f} | {ratio(ours['mse_revisited'], peer_best['mse_revisited'])} | "
                     f"{ours['mse_novel']:.5f} | {plain_best['mse_novel']:.5f} | "
                     f"{ratio(ours['mse_novel'], plain_best['mse_novel'])} | {peer_best['mse_novel']:.5f} | "
                     f"{ratio(ours['mse_novel'], peer_best['mse_novel'])} |")
    return lines


def slug(condition: str) -> str:
    """A condition's name as it appears in file names."""
    return condition.replace(" ", "_")


def write_outputs(harness: Harness, out_dir: Path, command: str, wall_seconds: float,
                  args: dict[str, Any], revision: str | None = None) -> dict[str, Any]:
    """Every file of the report into ``out_dir``; returns what ``compare.json`` holds. ``revision``: the
    code the run measured (``scoreboard.code_revision`` read when it started; HEAD now if not given)."""
    revision = revision or code_revision()
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
        "command": command, "commit": revision, "date": machine["date"], "machine": machine, "machine_line": machine_line,
        "package_versions": versions, "wall_seconds": wall_seconds,
        "args": json_safe({k: str(v) if isinstance(v, Path) else v for k, v in args.items()}),
        "training_distribution": TRAINING_DISTRIBUTION,
        "conditions": {name: dataclasses.asdict(CONDITIONS[name]) for name in plan.conditions},
        "targets": dataclasses.asdict(COMPARE_TARGETS), "checks": checks,
        "summary": summary, "sweep": harness.sweep, "seeds": harness.seeds_info,
        "rows": [row.to_dict() for row in harness.rows],
    }
    write_text(out_dir / "compare.json", json.dumps(json_safe(report), indent=1, allow_nan=False))
    colours = model_colours(list(dict.fromkeys(e["model"] for e in summary)))  # one colour per model, every figure
    for name in plan.conditions:
        entries = [e for e in summary if e["condition"] == name]
        plot_condition(entries, name, out_dir / f"compare_horizon_{slug(name)}.png", colours)
    plot_overview(summary, out_dir / "compare_overview.png", colours)
    write_text(out_dir / "compare.md", format_markdown(report, plan))
    write_scores(summary, out_dir / "scores", {"command": command, "commit": revision, "date": machine["date"],
                                               "machine": machine_line})
    if harness.sweep:
        write_sweep(harness, out_dir, command, machine_line, machine["date"])
    return report


def write_sweep(harness: Harness, out_dir: Path, command: str, machine_line: str, date: str) -> None:
    lines = ["# Peer sweep: every learned peer and control", "",
             f"- command: `{command}` (the sweep is the first part of the comparison run)",
             f"- machine: {machine_line}", f"- date: {date}", "",
             "Each candidate trains on the first seed, on GTM-SM's training distribution and sampler keys, for "
             f"{SWEEP_FRACTION:.2g} of GTM-SM's training CPU seconds on that seed (a weight snapshot is kept at half "
             f"of that). Score: revisited MSE on {len(harness.validation)} validation rollouts of the reference "
             f"setup (training distribution; seed stream {VALIDATION_SEED} + {HELDOUT_SEED_OFFSET}, disjoint from "
             "the test conditions). The lowest score at the end is chosen and trained from scratch with the same "
             "settings to 1× on every seed (the first included).", "",
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
    one_x = ", ".join(f"seed {s['seed']}: {s['gtmsm_seconds']:.0f} CPU s" for s in seeds_info)
    lines = [
        ("# Model comparison (a --quick smoke run: tiny models, numbers mean nothing)" if plan.quick else
         f"# Model comparison: GTM-SM vs a no-learning reference, learned peers and bounds, "
         f"{len(plan.conditions)} conditions"),
        "",
        f"- command: `{report['command']}`",
        f"- commit: {report['commit'] or 'unknown (not run from a git checkout)'} (read when the run started)",
        f"- machine: {report['machine_line']}",
        f"- date: {report['date']}; total wall-clock {report['wall_seconds'] / 60:.1f} min",
        f"- evaluation: {plan.eval_sequences} held-out sequences per condition, the same for every training seed "
        f"(seed stream {EVAL_SEED} + {HELDOUT_SEED_OFFSET}, images no model trained on); predicted from actions "
        "alone after tau memorised steps; pixels in [0, 1]; revisited = the true position was seen while "
        "memorising, novel = it was not; 'last half' = revisited steps in the last half of the horizon; the worst case "
        "beside the average: each test rollout's own revisited MSE, its 99th percentile ('revisited p99', mean over "
        "seeds), the worst rollout of any seed, and 'lost' = rollouts (mean over seeds) worse on their revisited steps "
        "than that rollout's memorisation mean. ± is the std over training seeds (population std); the 95 % CI of "
        "the revisited MSE is a bootstrap over the test sequences (1000 resamples, the same for every seed).",
        f"- **what every learned model saw in training**: {TRAINING_DISTRIBUTION}. Every learned row reads the "
        "same sampler with the same keys (GTM-SM's main-phase keys). No model trained on photos, flat areas, "
        "random starts, uniform actions, long horizons, short memories or mazes: those conditions test transfer.",
        "- **what each row is given** (every row gets the memorised crops and all actions; nothing else unless said):",
        "  - *GTM-SM* (default, `edges`): reads blocked moves off the pixels of a sliding window (\"the view stayed\" "
        "against \"the view slid by the action's shift\"), settles flat views by its multi-hypothesis tracker; "
        "learns its VAE and the two move directions. *GTM-SM, learned localiser*: an inference network "
        "q(moved | x_{t-1}, x_t, a_t) learnt by the GTM-SM objective takes the pixel rule's place. *GTM-SM, seed "
        "formulation*: the 2018 seed's learned gate of the absolute state (actions trusted; right only when every "
        "episode starts on one cell).",
        "  - *no-learning* rows: path integration with \"blocked iff the crop did not change\", untried edges blocked "
        "iff they leave the visited box, raw memorised crops looked up (or pasted on a canvas): the bar that says "
        "what learning adds.",
        "  - *learned peers* (generic, with a memory of the memorised crops): the retrieval transformer and the "
        "pose-retrieval peer, each also given one \"did the view change\" bit per memorised step; no grid, no "
        "positions, no pixel shifts.",
        "  - *controls* (memory-less: their whole memory is a recurrent state): the RSSM and the action LSTM, "
        "shown to say what a memory buys, not as contenders.",
        f"- **budgets**: the default GTM-SM trains with its preset (`{plan.preset}`); its training time in CPU "
        f"seconds of one process on each seed is the 1× budget of every peer on that seed ({one_x}); the other "
        "GTM-SM rows train with their own presets (their CPU seconds are in the table). Each peer's settings "
        "come from the sweep in `peer_sweep.md` (first seed, a third of the 1× budget per candidate, learning "
        "rate at least); the winner then trains from scratch to 1× on every seed. Steps and CPU seconds are in "
        f"the table. The run's jobs ran in {plan.workers} worker process(es) at once, each timed in its own "
        "process's CPU seconds.",
        "- bounds: dataset mean, memorisation mean (the trivial bar: a learned model that does not beat it on "
        "revisited steps is marked **below trivial**), copy last observed; oracles read the true positions "
        "(oracle memory, canvas oracle, oracle-position VAE) or the true future crops (VAE floor). Rows without "
        "a trained part are deterministic and computed once (seeds = 1).",
        f"- {PPO_NAME} (reference condition only): the same trained GTM-SM, the same test images, starts and "
        "prediction-phase random walk, but the memorisation actions chosen by the committed PPO coverage policy "
        "(`benchmarks/results/ppo_coverage.zip`, greedy).",
        "",
        "## Targets",
        "",
        *[f"- {'NOTE' if c.get('report_only') else 'PASS' if c['passed'] else 'FAIL'}: {c['target']} — {c['value']}" for c in report["checks"]],
        "",
        "![overview](compare_overview.png)",
        "",
        "## What learning adds",
        "",
        *learning_table(summary, plan.conditions),
        "",
    ]
    for name in plan.conditions:
        condition = CONDITIONS[name]
        tau, horizon = condition.lengths(plan.quick)
        entries = [e for e in summary if e["condition"] == name]
        lines += [f"## {name}", "", f"{condition.description}; tau {tau} + {horizon} predicted steps.", "",
                  condition_table(entries), "", f"![{name}](compare_horizon_{slug(name)}.png)", ""]
    return "\n".join(lines)



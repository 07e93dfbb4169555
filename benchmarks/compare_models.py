"""GTM-SM against baselines and bounds, on one protocol (SPEC, "The evaluation protocol").

    python benchmarks/compare_models.py                     # the committed run (preset quick, seed 0)
    python benchmarks/compare_models.py --seeds 0 1 2 --image-source ~/data/celeba/img_align_celeba
    python benchmarks/compare_models.py --quick --out-dir /tmp/compare   # smoke run, seconds

Per seed: train GTM-SM with ``train(make_config(preset, seed=seed))``; train the RSSM and the action
LSTM on the same sampler (same seed, same keys as GTM-SM's main phase) for the same number of
gradient steps at the full sequence length; evaluate every model, the oracles and the VAE floor on
the same held-out rollouts with ``prediction_metrics``. Writes ``compare.md``, ``compare.json`` and
``compare_horizon.png`` to ``--out-dir`` and prints the table and the issue's two targets.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_env.flags import bounded, parse_dataclass
from gtmsm_model.baselines import (
    RSSM,
    ActionLSTM,
    ActionLSTMConfig,
    Budget,
    CopyLastObserved,
    DatasetMean,
    OracleMemory,
    OraclePositionVAE,
    RSSMConfig,
    WorldModel,
)
from gtmsm_model.data import heldout_rollouts
from gtmsm_model.evaluate import GTMSMPredictor, json_safe, prediction_metrics
from gtmsm_model.train import make_config, make_sampler, train

GTMSM_NAME = "GTM-SM"
FLOOR_NAME = "VAE reconstruction (floor)"
TARGET_RATIO_TEMPORAL = 5.0
TARGET_RATIO_ORACLE_VAE = 1.1


@dataclass
class Args:
    preset: str = "quick"
    """GTM-SM training preset (debug, quick, paper); sets the shared budget"""
    seeds: list[int] = bounded([0], ge=0)
    """training seeds; each trains every model and evaluates on that seed's held-out rollouts"""
    iterations: int | None = bounded(None, ge=1)
    """gradient steps of the RSSM and the LSTM (default: GTM-SM's main-phase iterations)"""
    baseline_max_seconds: float | None = bounded(None, gt=0)
    """wall-clock cap per learned baseline (default: none, the step budget alone)"""
    lr: float = bounded(6e-4, gt=0, le=1)
    """Adam learning rate of the learned baselines (PlaNet's)"""
    hidden: int = bounded(256, ge=1)
    """hidden size of the RSSM and the LSTM"""
    eval_sequences: int = bounded(64, ge=1)
    """held-out sequences per seed"""
    eval_tau: int = bounded(256, ge=1)
    """memorisation steps of the evaluation rollouts"""
    eval_horizon: int = bounded(256, ge=1)
    """predicted steps of the evaluation rollouts"""
    image_source: str | None = None
    """image folder or .npz/.npy for training rollouts (e.g. a local CelebA folder); unset: procedural"""
    eval_image_source: str | None = None
    """separate image source for evaluation (needed for a finite source); unset: same as training"""
    device: str = "cpu"
    """torch device for every model"""
    threads: int = bounded(0, ge=0)
    """torch CPU threads (0: torch's default)"""
    quick: bool = False
    """smoke run: debug preset, a few steps, tiny baselines, short sequences"""
    out_dir: Path = Path("benchmarks/results")
    """where compare.md, compare.json and compare_horizon.png go"""
    run_dir: Path = Path("runs/compare")
    """where GTM-SM's checkpoints go (not committed)"""
    progress: bool = False
    """show GTM-SM's progress bar"""


def parse_args(argv: list[str] | None = None) -> Args:
    return parse_dataclass(Args, argv, description=__doc__.split("\n\n")[0],
                           choices={"preset": ["debug", "quick", "paper"]})


# --------------------------------------------------------------------------- one seed


def predict_in_chunks(model: WorldModel, rollouts, tau: int, chunk: int = 32) -> np.ndarray:
    parts = []
    for start in range(0, len(rollouts), chunk):
        part = rollouts[start:start + chunk]
        positions = part.positions if model.uses_true_positions else None
        parts.append(model.predict(part.observations[:, :tau], part.actions, tau, positions))
    return np.concatenate(parts)


def run_seed(args: Args, seed: int) -> dict[str, Any]:
    overrides: dict[str, Any] = dict(
        seed=seed, device=args.device, threads=args.threads, image_source=args.image_source,
        out_dir=str(args.run_dir / f"seed{seed}"), progress=args.progress,
    )
    if args.quick:
        overrides.update(iterations=6, vae_warmup_iters=4, eval_every=0)
    config = make_config("debug" if args.quick else args.preset, **overrides)

    print(f"[seed {seed}] training GTM-SM (preset {config.preset}) ...", flush=True)
    trained = train(config, progress=args.progress)
    gtmsm = trained.model.to(args.device).eval()

    budget = Budget(
        iterations=args.iterations if args.iterations is not None else config.iterations,
        batch_size=config.batch_size, seq_len=config.seq_len, tau=config.tau, lr=args.lr,
        device=args.device, seed=seed, max_seconds=args.baseline_max_seconds,
        first_key=config.vae_warmup_iters,  # GTM-SM's main phase trains on keys from here on
    )
    hidden = 16 if args.quick else args.hidden
    models: list[WorldModel] = [
        GTMSMPredictor(gtmsm, device=args.device),
        RSSM(RSSMConfig(deter=hidden, hidden=hidden, stoch=min(32, hidden))),
        ActionLSTM(ActionLSTMConfig(hidden=hidden, embed=hidden)),
        DatasetMean(),
        CopyLastObserved(),
        OracleMemory(),
        OraclePositionVAE(gtmsm.vae, k=gtmsm.config.knn_k, delta=gtmsm.config.delta),
    ]
    sampler = make_sampler(config)
    eval_source = args.eval_image_source or args.image_source
    tau = config.eval_tau if args.quick else args.eval_tau
    horizon = config.eval_horizon if args.quick else args.eval_horizon
    sequences = config.eval_sequences if args.quick else args.eval_sequences
    rollouts = heldout_rollouts(sequences, tau + horizon, seed, image_source=eval_source)

    rows: dict[str, dict[str, Any]] = {}
    for model in models:
        if model.name == GTMSM_NAME:
            seconds, steps = trained.seconds, config.iterations
        else:
            print(f"[seed {seed}] fitting {model.name} ...", flush=True)
            start = time.perf_counter()
            model.fit(sampler, budget)
            seconds = time.perf_counter() - start
            steps = getattr(model, "iterations_done", 0)
        metrics = prediction_metrics(predict_in_chunks(model, rollouts, tau), rollouts, tau)
        rows[model.name] = {**metrics, "uses_true_positions": model.uses_true_positions,
                            "train_seconds": seconds, "train_iterations": steps}
        print(f"[seed {seed}] {model.name}: mse_revisited={metrics['mse_revisited']:.5f} "
              f"mse_novel={metrics['mse_novel']:.5f} train {seconds:.0f} s", flush=True)

    # The floor: GTM-SM's VAE reconstructing the true future crops (reads the future; a bound only).
    with torch.no_grad():
        future = torch.as_tensor(rollouts.observations[:, tau:]).to(args.device)
        floor = gtmsm.reconstruct(future).cpu().numpy()
    rows[FLOOR_NAME] = {**prediction_metrics(floor, rollouts, tau), "uses_true_positions": False,
                        "reads_future_observations": True, "train_seconds": None, "train_iterations": None}
    return {
        "seed": seed,
        "gtmsm_config": dataclasses.asdict(config),
        "budget": dataclasses.asdict(budget),
        "eval": {"sequences": sequences, "tau": tau, "horizon": horizon, "image_source": eval_source},
        "models": rows,
    }


# --------------------------------------------------------------------------- summary


TABLE_KEYS = ("mse", "psnr", "mse_revisited", "psnr_revisited", "mse_novel", "psnr_novel",
              "mse_revisited_late_half", "ssim", "train_seconds")


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite)) if len(finite) > 1 else float("nan")


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean (and std across seeds) of every table metric and horizon bin, per model."""
    summary: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]["models"]:
        runs = [seed["models"][name] for seed in per_seed]
        entry: dict[str, Any] = {"uses_true_positions": runs[0]["uses_true_positions"]}
        for key in TABLE_KEYS + ("fraction_revisited",):
            entry[key], entry[f"{key}_std"] = _mean_std([run.get(key) for run in runs])
        entry["horizon"] = {"bins": runs[0]["horizon"]["bins"]}
        for part in ("mse", "mse_revisited", "mse_novel"):
            entry["horizon"][part] = [_mean_std([run["horizon"][part][i] for run in runs])[0]
                                      for i in range(len(runs[0]["horizon"]["bins"]))]
        summary[name] = entry
    return summary


def check_targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    gtmsm = summary[GTMSM_NAME]
    checks = []
    for other in (RSSM.name, ActionLSTM.name):
        ratio = summary[other]["mse_revisited_late_half"] / gtmsm["mse_revisited_late_half"]
        checks.append({
            "target": f"GTM-SM revisited MSE, steps {_late_label(gtmsm)}, ≥ {TARGET_RATIO_TEMPORAL:g}× lower than {other}",
            "value": f"{other} / GTM-SM = {ratio:.2f}×", "ratio": ratio,
            "passed": bool(ratio >= TARGET_RATIO_TEMPORAL),
        })
    ratio = gtmsm["mse_revisited"] / summary[OraclePositionVAE.name]["mse_revisited"]
    checks.append({
        "target": f"GTM-SM revisited MSE ≤ {TARGET_RATIO_ORACLE_VAE:g}× the oracle-position VAE's",
        "value": f"GTM-SM / oracle-position VAE = {ratio:.3f}×", "ratio": ratio,
        "passed": bool(ratio <= TARGET_RATIO_ORACLE_VAE),
    })
    return checks


def _late_label(entry: dict[str, Any]) -> str:
    horizon = entry["horizon"]["bins"][-1][1]
    return f"{horizon // 2 + 1}–{horizon}"


def _fmt(value: float, std: float, digits: str) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    text = format(value, digits)
    return text if not math.isfinite(std) else f"{text} ± {format(std, digits)}"


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    late = _late_label(summary[GTMSM_NAME])
    lines = [
        f"| model | reads true positions? | MSE | PSNR (dB) | MSE revisited | PSNR revisited | MSE novel "
        f"| PSNR novel | revisited MSE, steps {late} | SSIM | train (s) |",
        "|---|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary.items():
        reads = "yes (oracle)" if entry["uses_true_positions"] else "no"
        if name == FLOOR_NAME:
            reads = "no (decodes the true future crops)"
        cell = lambda key, digits, entry=entry: _fmt(entry[key], entry[f"{key}_std"], digits)  # noqa: E731
        lines.append(
            f"| {name} | {reads} | {cell('mse', '.5f')} | {cell('psnr', '.2f')} | {cell('mse_revisited', '.5f')} "
            f"| {cell('psnr_revisited', '.2f')} | {cell('mse_novel', '.5f')} | {cell('psnr_novel', '.2f')} "
            f"| {cell('mse_revisited_late_half', '.5f')} | {cell('ssim', '.4f')} | {cell('train_seconds', '.0f')} |"
        )
    return "\n".join(lines)


def format_horizon(summary: dict[str, dict[str, Any]], part: str) -> str:
    bins = summary[GTMSM_NAME]["horizon"]["bins"]
    lines = [f"| {part} | " + " | ".join(f"{a}–{b}" for a, b in bins) + " |", "|---|" + "---:|" * len(bins)]
    for name, entry in summary.items():
        values = entry["horizon"][part]
        lines.append(f"| {name} | " + " | ".join("—" if not math.isfinite(v) else f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines)


def plot_horizon(summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, part, title in ((axes[0], "mse_revisited", "revisited steps"), (axes[1], "mse_novel", "novel steps")):
        for name, entry in summary.items():
            bins = entry["horizon"]["bins"]
            centres = [(a + b) / 2 for a, b in bins]
            values = np.array(entry["horizon"][part], dtype=float)
            # Oracle memory is exactly 0 on revisited steps: a log axis cannot show it, so it is left out there.
            values[~(values > 0)] = np.nan
            if np.isnan(values).all():
                continue
            style = "--" if entry["uses_true_positions"] or name == FLOOR_NAME else "-"
            axis.plot(centres, values, style, marker="o", markersize=3, label=name,
                      linewidth=2.5 if name == GTMSM_NAME else 1.5)
        axis.set_yscale("log")
        axis.set_xlabel("steps after memorisation (bin centre)")
        axis.set_title(f"MSE vs horizon, {title}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("per-pixel MSE (pixels in [0, 1])")
    axes[1].legend(fontsize=8, loc="best")
    figure.text(0.5, 0.005, "dashed: bounds (oracles read the true positions; the floor reads the true crops). "
                "Oracle memory's revisited MSE is exactly 0 and is not drawn.", ha="center", fontsize=8)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def machine_description(args: Args) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = args.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, device {device}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def budget_statement(result: dict[str, Any]) -> str:
    config, budget = result["gtmsm_config"], result["budget"]
    return (
        f"GTM-SM (preset `{config['preset']}`): {config['vae_warmup_iters']} VAE warm-up iterations "
        f"({config['vae_batch_size']} crops each), then {config['iterations']} main-phase gradient steps × "
        f"batch {config['batch_size']} × up to {config['seq_len']} steps (length curriculum from "
        f"{config['curriculum_start']}), tau {config['tau']}; model z {config['z_dim']}, VAE width "
        f"{config['vae_hidden']}, pixel sigma {config['pixel_sigma']:g}, K {config['knn_k']}. RSSM and action LSTM: {budget['iterations']} "
        f"gradient steps × batch {budget['batch_size']} × {budget['seq_len']} steps (the full length every "
        f"step, so at least GTM-SM's main-phase sequence-steps), tau {budget['tau']}, Adam lr {budget['lr']:g}"
        + (f", capped at {budget['max_seconds']:g} s" if budget["max_seconds"] else "")
        + ". Every learned model reads the same sampler (seed, keys from "
        f"{budget['first_key']}); wall-clock per model is in the table. The oracles and bounds are not trained "
        "(dataset mean: 8 batches of training crops; the oracle-position VAE uses GTM-SM's trained VAE)."
    )


def write_results(args: Args, per_seed: list[dict[str, Any]], command: str, wall_seconds: float) -> dict[str, Any]:
    summary = summarise(per_seed)
    checks = check_targets(summary)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    machine = machine_description(args)
    evaluation = per_seed[0]["eval"]
    seeds = [result["seed"] for result in per_seed]
    report = {
        "command": command, "date": date, "machine": machine, "wall_seconds": wall_seconds,
        "seeds": seeds, "args": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(args).items()},
        "budget": budget_statement(per_seed[0]), "checks": checks, "summary": summary, "per_seed": per_seed,
    }
    (args.out_dir / "compare.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    plot_horizon(summary, args.out_dir / "compare_horizon.png")

    spread = " (mean ± std over seeds)" if len(seeds) > 1 else ""
    check_lines = [f"- {'PASS' if c['passed'] else 'FAIL'}: {c['target']} — {c['value']}" for c in checks]
    if args.eval_image_source is not None:
        held_out_images = f"images from {args.eval_image_source}"
    elif args.image_source is None:
        held_out_images = "procedural images from a seed stream training never uses"
    else:  # a finite folder/array: another seed stream can still draw the training images
        held_out_images = (f"drawn from the training source {args.image_source} with another seed; "
                           "pass --eval-image-source for images never used in training")
    markdown = "\n".join([
        "# Model comparison: GTM-SM vs temporal baselines and bounds",
        "",
        f"- command: `{command}`",
        f"- machine: {machine}",
        f"- date: {date}; total wall-clock {wall_seconds / 60:.1f} min",
        f"- seeds: {seeds}; evaluation: {evaluation['sequences']} held-out sequences per seed "
        f"({held_out_images}), tau = {evaluation['tau']} memorisation steps, "
        f"{evaluation['horizon']} predicted steps from actions alone, pixels in [0, 1]",
        f"- budget: {budget_statement(per_seed[0])}",
        "",
        f"## Results{spread}",
        "",
        format_table(summary),
        "",
        f"Revisited = the true position was seen during memorisation (fraction of predicted steps: "
        f"{summary[GTMSM_NAME]['fraction_revisited']:.3f}); novel = it was not. PSNR = 10·log10(1 / mean MSE). "
        f"SSIM: {per_seed[0]['models'][GTMSM_NAME]['ssim_window']}×{per_seed[0]['models'][GTMSM_NAME]['ssim_window']} "
        "uniform window. Oracle memory and the oracle-position VAE read the true positions; the VAE floor decodes "
        "the true future crops through GTM-SM's VAE. They are bounds, not competitors.",
        "",
        "## Targets (issue 5)",
        "",
        *check_lines,
        "",
        "## MSE vs horizon (bins of predicted steps)",
        "",
        format_horizon(summary, "mse_revisited"),
        "",
        format_horizon(summary, "mse_novel"),
        "",
        "![MSE vs horizon](compare_horizon.png)",
        "",
    ])
    (args.out_dir / "compare.md").write_text(markdown)
    print()
    print(format_table(summary))
    print()
    print("targets:")
    print("\n".join(check_lines))
    print(f"\nwrote {args.out_dir / 'compare.md'}, compare.json, compare_horizon.png")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # ---- seeding and device
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device} asked for, but CUDA is not available")
    command = "python benchmarks/compare_models.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    per_seed = [run_seed(args, seed) for seed in args.seeds]
    return write_results(args, per_seed, command.strip(), time.perf_counter() - start)


if __name__ == "__main__":
    main()

"""Train GTM-SM on several seeds and check the issue's targets on held-out rollouts.

For each seed: train a preset on the procedural default images (wall-clock timed), then evaluate
with the SPEC protocol (tau = 256 memorised, 256 predicted steps) on

* held-out procedural images (a seed stream training never uses), and
* natural photos it never saw: 32×32 patches cut at random scales from scikit-learn's sample
  photos, read through ImageNav's npz image source (``photo_patches.py``).

Prints one table row per seed with a PASS/FAIL per target and writes ``--out`` (.md and .json).

    python benchmarks/train_gtmsm.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_patches import write_photo_patches  # noqa: E402

from gtmsm_model.data import heldout_rollouts  # noqa: E402
from gtmsm_model.evaluate import check_targets, evaluate_gtmsm, json_safe, prediction_metrics  # noqa: E402
from gtmsm_model.train import make_config, train  # noqa: E402


@dataclass
class Args:
    """Benchmark options."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Training seeds; each trains and is evaluated separately."""
    preset: str = "quick"
    """TrainConfig preset."""
    eval_sequences: int = 128
    """Held-out rollouts per image source."""
    threads: int = 0
    """Torch CPU threads for training (0: torch's default)."""
    photo_patches: int = 256
    """Natural-photo patches to draw held-out images from."""
    max_train_seconds: float = 300.0
    """Wall-clock target per seed (training, warm-up included)."""
    photo_mse_target: float = 0.004
    """Revisited-step MSE target on natural photos."""
    runs_dir: str = "runs/benchmark"
    """Where each seed's checkpoint goes."""
    out: str = "benchmarks/results/train_gtmsm"
    """Results path stem: writes OUT.md and OUT.json."""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Args()
    parser.add_argument("--seeds", type=int, nargs="+", default=defaults.seeds, help="training seeds (default: 0 1 2)")
    parser.add_argument("--preset", default=defaults.preset, help="TrainConfig preset (default: quick)")
    parser.add_argument("--eval-sequences", type=int, default=defaults.eval_sequences, help="held-out rollouts per source (default: 128)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads (default: 0 = torch's default)")
    parser.add_argument("--photo-patches", type=int, default=defaults.photo_patches, help="natural-photo patches (default: 256)")
    parser.add_argument("--max-train-seconds", type=float, default=defaults.max_train_seconds, help="time target per seed (default: 300)")
    parser.add_argument("--runs-dir", default=defaults.runs_dir, help="checkpoint folder (default: runs/benchmark)")
    parser.add_argument("--out", default=defaults.out, help="results path stem (default: benchmarks/results/train_gtmsm)")
    return Args(**vars(parser.parse_args()))


def memorisation_mean_mse(rollouts, tau: int) -> float:
    """The trivial predictor: every future crop = the mean crop of the memorisation phase."""
    mean = rollouts.observations[:, :tau].astype(np.float32).mean(1, keepdims=True) / 255.0
    predicted = np.broadcast_to(mean, rollouts.observations[:, tau:].shape)
    return prediction_metrics(predicted, rollouts, tau)["mse_revisited"]


def main() -> None:
    args = parse_args()
    tau, horizon = 256, 256
    photos_path = write_photo_patches(Path(args.runs_dir) / "photo_patches.npz", args.photo_patches, seed=12345)
    procedural = heldout_rollouts(args.eval_sequences, tau + horizon, seed=0)
    photos = heldout_rollouts(args.eval_sequences, tau + horizon, seed=0, image_source=str(photos_path))
    trivial_photo = memorisation_mean_mse(photos, tau)
    import os

    threads = args.threads or torch.get_num_threads()
    machine = (f"{platform.machine()} Linux, {os.cpu_count()} CPU cores, {threads} torch thread(s), "
               f"torch {torch.__version__}, no GPU")
    rows = []
    for seed in args.seeds:
        config = make_config(args.preset, seed=seed, threads=args.threads, progress=False,
                             out_dir=f"{args.runs_dir}/{args.preset}-seed{seed}")
        result = train(config)
        default_metrics = evaluate_gtmsm(result.model, procedural, tau)
        photo_metrics = evaluate_gtmsm(result.model, photos, tau)
        passed = check_targets(default_metrics)
        passed["train_seconds"] = result.seconds <= args.max_train_seconds
        passed["photo_mse_revisited"] = photo_metrics["mse_revisited"] <= args.photo_mse_target
        rows.append({"seed": seed, "train_seconds": result.seconds, "default": default_metrics,
                     "photos": photo_metrics, "passed": passed})
        print(f"seed {seed}: {passed}", flush=True)

    header = ("| seed | train s | k-NN hit | s-map RMS | rev. MSE | VAE floor | ratio | drift | gate wall/free "
              "| novel MSE | photos: rev. MSE (PSNR) | photos: VAE floor | all pass |")
    lines = [header, "|" + "---|" * 13]
    for row in rows:
        d, p = row["default"], row["photos"]
        lines.append(
            f"| {row['seed']} | {row['train_seconds']:.0f} | {d['knn_hit_rate']:.4f} | {d['smap_rms']:.3f} | "
            f"{d['mse_revisited']:.5f} | {d['vae_mse_revisited']:.5f} | {d['ratio_to_vae_revisited']:.3f} | "
            f"{d['drift_ratio']:.3f} | {d['gate_ratio']:.4f} | {d['mse_novel']:.4f} | "
            f"{p['mse_revisited']:.5f} ({p['psnr_revisited']:.1f} dB) | {p['vae_mse_revisited']:.5f} | "
            f"{'yes' if all(row['passed'].values()) else 'NO: ' + ', '.join(k for k, v in row['passed'].items() if not v)} |"
        )
    command = "python " + " ".join(sys.argv)
    report = "\n".join([
        f"# GTM-SM training benchmark ({args.preset} preset)", "",
        f"Command: `{command}`  ", f"Machine: {machine}  ", f"Date: {time.strftime('%Y-%m-%d')}", "",
        f"Held-out: {args.eval_sequences} rollouts per source, tau = {tau} memorised, {horizon} predicted steps. "
        "Default = procedural images from a seed stream training never uses; photos = 32×32 patches of "
        "scikit-learn's sample photos at random scales (never seen in training).", "",
        *lines, "",
        f"Targets: k-NN hit ≥ 0.95, s-map RMS ≤ 0.2 cells, revisited MSE ≤ 1.1× VAE floor, drift (revisited MSE "
        f"steps 193–256 / 1–64) ≤ 1.15, gate wall/free ≤ 0.1, train ≤ {args.max_train_seconds:.0f} s, "
        f"photo revisited MSE ≤ {args.photo_mse_target}.  ",
        f"Trivial predictor on the photo rollouts (memorisation-phase mean crop): revisited MSE {trivial_photo:.4f}.",
    ])
    print("\n" + report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report + "\n")
    out.with_suffix(".json").write_text(json.dumps(json_safe({
        "command": command, "machine": machine, "date": time.strftime("%Y-%m-%d"),
        "trivial_photo_mse_revisited": trivial_photo, "rows": rows}), indent=1))


if __name__ == "__main__":
    main()

"""GTM-SM with PPO-explored memorisation vs the reference random walk's, side by side in one run.

    python benchmarks/ppo_memories.py [--checkpoint runs/gtmsm/checkpoint.pt] [--threads 1]

Without ``--checkpoint`` it first trains GTM-SM with
``gtmsm train --preset quick --threads T --seed S --out-dir runs/ppo_memories --overwrite``.
Evaluation: ``--num-sequences`` held-out rollouts (the seed stream training never uses,
``seed + gtmsm_model.data.HELDOUT_SEED_OFFSET``) of tau + horizon steps, collected twice with the
same images and starts: once with the reference random walk everywhere, once with the PPO policy
(``--policy``, greedy) choosing the actions of the memorisation phase (the first tau steps). The
prediction phase is the same random walk in both. The model memorises tau steps and predicts the
rest from actions alone. Printed and written to ``benchmarks/results/ppo_memories.{json,md}``:
positions memorised, overall / revisited / novel predicted-step MSE, the novel fraction and the
ratio PPO / random walk.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np

from gtmsm_cli.checks import output_stem_problem, threads_problem
from gtmsm_cli.files import write_text
from gtmsm_cli.flags import (
    SEED_MAX,
    bounded,
    error_text,
    fail,
    parse_flags,
)
from gtmsm_cli.signals import exit_status, run_script
from gtmsm_env import Rollouts, collect_rollouts
from gtmsm_env.world import World

ROOT = Path(__file__).resolve().parent.parent
PROG = "ppo_memories.py"


@dataclass
class Args:
    checkpoint: str | None = None
    """a trained GTM-SM checkpoint; unset: train one with the quick preset first"""
    checkpoint_command: str | None = None
    """with --checkpoint: the command that trained it (recorded in the results)"""
    policy: str = "benchmarks/results/ppo_coverage.zip"
    """the saved SB3 policy that drives memorisation (a relative path is relative to the repository root)"""
    num_sequences: int = bounded(64, ge=1)
    """held-out sequences per condition"""
    tau: int = bounded(256, ge=1)
    """memorisation steps"""
    horizon: int = bounded(256, ge=1)
    """predicted steps"""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """training seed (when training) and evaluation seed"""
    threads: int = bounded(1, ge=1)
    """torch threads"""
    out: str = "benchmarks/results/ppo_memories"
    """output path without suffix (.json and .md are written; a relative path is relative to the repository root)"""


def predicted_step_errors(model, rollouts: Rollouts, tau: int) -> dict[str, float]:
    import torch

    with torch.no_grad():
        prediction = model.predict(
            torch.as_tensor(rollouts.observations), torch.as_tensor(rollouts.actions).long(), tau
        )
    predicted = prediction.pixels.cpu().numpy()
    target = rollouts.observations[:, tau:].astype(np.float32) / 255.0
    per_step = ((predicted - target) ** 2).reshape(*target.shape[:2], -1).mean(-1)
    memorised = rollouts.positions[:, :tau]
    # a predicted step is revisited iff its true position was seen while memorising
    revisited = (rollouts.positions[:, tau:, None, :] == memorised[:, None, :, :]).all(-1).any(-1)
    positions_memorised = [len({tuple(p) for p in seq}) for seq in memorised]
    return {
        "positions_memorised": float(np.mean(positions_memorised)),
        "mse": float(per_step.mean()),
        "mse_revisited": float(per_step[revisited].mean()) if revisited.any() else float("nan"),
        "mse_novel": float(per_step[~revisited].mean()) if (~revisited).any() else float("nan"),
        "novel_fraction": float((~revisited).mean()),
    }


DEFAULT_WORLD = World()
"""ImageNav-v0's default world: the one the rollouts below and the PPO policy use (its image,
crop and step sizes are what a checkpoint must match)."""


def load_default_world_model(path: str):
    """The model of ``--checkpoint``, or one ``--checkpoint: ...`` error line (missing, empty,
    damaged, or trained on another world than ImageNav-v0's default)."""
    from gtmsm_model.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
    from gtmsm_model.imagination import checkpoint_world, world_text

    try:
        payload = load_checkpoint(path)
        model = model_from_checkpoint(payload)
        world = checkpoint_world(payload)
    except (CheckpointError, OSError) as error:
        fail(PROG, f"--checkpoint: {error_text(error)}")
    if (world.image_shape, world.crop_size, world.step_size) != (
            DEFAULT_WORLD.image_shape, DEFAULT_WORLD.crop_size, DEFAULT_WORLD.step_size):
        fail(PROG, f"--checkpoint was trained on {world_text(world)}; this benchmark (and its PPO policy) uses "
                   f"ImageNav-v0's default world, {world_text(DEFAULT_WORLD)}")
    return model


def main(argv: list[str] | None = None) -> None:
    args = parse_flags(Args, argv, prog=PROG, description=__doc__.split("\n\n")[0])
    policy_path = ROOT / args.policy if not Path(args.policy).is_absolute() else Path(args.policy)
    problem = threads_problem(args.threads)
    if problem is not None:
        fail(PROG, problem)
    out_text = os.path.join(ROOT, args.out)  # relative to the repository root; keeps a trailing /
    problem = output_stem_problem(out_text, (".json", ".md"))  # every input is checked before any work
    if problem is not None:
        fail(PROG, f"--out: {problem}")
    out = Path(out_text)
    if args.checkpoint_command is not None and args.checkpoint is None:
        fail(PROG, "--checkpoint-command needs --checkpoint (without it the command is the training run's own)")
    model = None
    if args.checkpoint is not None:
        model = load_default_world_model(args.checkpoint)
    from gtmsm_env.policies import load_sb3_policy

    try:
        policy = load_sb3_policy(policy_path, deterministic=True, seed=args.seed)
    except (OSError, ValueError) as error:
        fail(PROG, f"--policy: {error_text(error)}")

    import torch

    from gtmsm_model.checkpoint import load_model
    from gtmsm_model.data import HELDOUT_SEED_OFFSET

    torch.set_num_threads(args.threads)
    train_seconds = None
    checkpoint = args.checkpoint
    if checkpoint is None:
        run_dir = ROOT / "runs" / "ppo_memories"
        command = ["gtmsm", "train", "--preset", "quick", "--threads", str(args.threads),
                   "--seed", str(args.seed), "--out-dir", str(run_dir), "--overwrite"]
        print("$", " ".join(command), flush=True)
        start = time.perf_counter()
        try:
            code = subprocess.run(command).returncode
        except KeyboardInterrupt as stop:
            code = exit_status(stop)
        except OSError as error:
            fail(PROG, f"cannot run {command[0]!r} (is the project installed in this environment?): "
                       f"{error_text(error)}")
        if code != 0:  # gtmsm train has said why on its own (error line, or the interrupt and how to resume)
            print(f"{PROG}: training the checkpoint ended with exit status {code}; nothing was evaluated",
                  file=sys.stderr)
            raise SystemExit(code if code in (130, 143) else 1)
        train_seconds = round(time.perf_counter() - start, 1)
        checkpoint = str(run_dir / "checkpoint.pt")
        args.checkpoint_command = " ".join(command)
        model = load_model(checkpoint)
    model.eval()

    n, length = args.num_sequences, args.tau + args.horizon
    eval_seed = args.seed + HELDOUT_SEED_OFFSET
    conditions = {
        "random_walk": collect_rollouts(n, length, seed=eval_seed),
        "ppo": collect_rollouts(n, length, seed=eval_seed, policy=policy, policy_steps=args.tau),
    }
    assert np.array_equal(conditions["ppo"].actions[:, args.tau:],
                          conditions["random_walk"].actions[:, args.tau:])
    rows = {name: predicted_step_errors(model, r, args.tau) for name, r in conditions.items()}
    ratios = {key: rows["ppo"][key] / rows["random_walk"][key] if rows["random_walk"][key] else float("nan")
              for key in ("mse", "mse_revisited", "mse_novel", "novel_fraction")}
    result = {
        "command": "python benchmarks/ppo_memories.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} CPU, {args.threads} torch thread(s)",
        "checkpoint": checkpoint,
        "checkpoint_command": args.checkpoint_command,
        "train_seconds": train_seconds,
        "policy_path": args.policy,
        "args": asdict(args),
        "eval_seed": eval_seed,
        "protocol": f"{n} held-out sequences, tau={args.tau} memorised, {args.horizon} predicted; "
                    "memorisation actions by PPO (greedy) or the reference random walk, prediction "
                    "phase the same random walk in both; pixels in [0, 1]",
        "conditions": rows,
        "ppo_over_random_walk": ratios,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    lines = [
        "# GTM-SM with PPO-explored memorisation",
        "",
        f"`{result['command']}` — {result['date']}, {result['machine']} (shared 2-core machine); "
        f"checkpoint `{checkpoint}` (trained by `{args.checkpoint_command}`"
        f"{f', {train_seconds} s' if train_seconds else ''}); {result['protocol']}.",
        "",
        "| memorisation policy | positions memorised (of 81) | MSE all | MSE revisited | MSE novel | novel fraction |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("random_walk", "reference random walk"), ("ppo", "PPO (coverage)")):
        r = rows[name]
        lines.append(f"| {label} | {r['positions_memorised']:.1f} | {r['mse']:.5f} | "
                     f"{r['mse_revisited']:.5f} | {r['mse_novel']:.5f} | {r['novel_fraction']:.3f} |")
    lines.append(f"| ratio PPO / random walk | | {ratios['mse']:.3f} | {ratios['mse_revisited']:.3f} | "
                 f"{ratios['mse_novel']:.3f} | {ratios['novel_fraction']:.3f} |")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines[4:]))


if __name__ == "__main__":
    run_script(PROG, main, "nothing was written")

"""Env throughput, measured side by side in one run.

    python benchmarks/env_throughput.py [--num-envs 4096] [--json benchmarks/results/env_throughput.json]

Rows: single ``gym.make("ImageNav-v0")`` vs ``gym.make("CartPole-v1")`` (both with the default
wrappers, random actions pre-drawn, reset on episode end), then ``SyncVectorEnv`` of ImageNav vs
the native vector env at the same number of envs (env-steps/s = vector steps/s x num_envs).
Reset and environment construction are outside the timed loops.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

import gtmsm_env  # noqa: F401  (registers ImageNav-v0)
from gtmsm_cli.checks import memory_problem, output_file_problem
from gtmsm_cli.files import write_text
from gtmsm_cli.flags import SEED_MAX, bounded, fail, parse_dataclass
from gtmsm_cli.signals import run_script

PROG = "env_throughput.py"


@dataclass
class Args:
    num_envs: int = bounded(4096, ge=1)
    """envs in both vector rows (equal N, as the targets require)"""
    single_steps: int = bounded(100_000, ge=1)
    """timed steps of each single env"""
    sync_steps: int = bounded(20, ge=1)
    """timed vector steps of SyncVectorEnv"""
    native_steps: int = bounded(1000, ge=1)
    """timed vector steps of the native vector env"""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """seed of envs and actions"""
    json: Path | None = None
    """also write the results here (a .json file)"""


def single_env_steps_per_second(env_id: str, steps: int, seed: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, steps).tolist()
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def vector_env_steps_per_second(mode: str, num_envs: int, steps: int, seed: int) -> float:
    env = gym.make_vec("ImageNav-v0", num_envs=num_envs, vectorization_mode=mode)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 5, (steps, num_envs))
    env.step(actions[0])  # warm-up
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - start
    env.close()
    return steps * num_envs / elapsed


SYNC_ENV_BYTES, NATIVE_ENV_BYTES = 40_000, 80_000
"""Measured peak bytes per env of a SyncVectorEnv / the native vector env (default world), rounded up."""


def memory_needs(args: Args) -> dict[str, tuple[str, float]]:
    """Bytes the measurements hold at once, by the flags that ask for them."""
    return {
        "--num-envs": ("the vector envs and their pre-drawn actions", args.num_envs * (
            SYNC_ENV_BYTES + NATIVE_ENV_BYTES + 8 * (args.sync_steps + args.native_steps + 1))),
        "--single-steps": ("the single envs' pre-drawn actions", 24 * args.single_steps),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__)
    problem = memory_problem(memory_needs(args))
    if problem is not None:
        fail(PROG, problem)
    if args.json is not None:  # checked before the measurements, not after them
        problem = output_file_problem(args.json, (".json",))
        if problem is not None:
            fail(PROG, f"--json: {problem}")

    cartpole = single_env_steps_per_second("CartPole-v1", args.single_steps, args.seed)
    imagenav = single_env_steps_per_second("ImageNav-v0", args.single_steps, args.seed)
    sync = vector_env_steps_per_second("sync", args.num_envs, args.sync_steps, args.seed)
    native = vector_env_steps_per_second(
        "vector_entry_point", args.num_envs, args.native_steps, args.seed
    )

    rows = [
        ("CartPole-v1, gym.make", cartpole, "1.00x (reference)"),
        (
            "ImageNav-v0, gym.make",
            imagenav,
            f"{imagenav / cartpole:.2f}x CartPole (target >= 0.8x)",
        ),
        (f"ImageNav-v0, SyncVectorEnv N={args.num_envs}", sync, "1.00x (reference)"),
        (
            f"ImageNav-v0, native vector env N={args.num_envs}",
            native,
            f"{native / sync:.1f}x Sync (target >= 20x); {native / 1e6:.1f} M/s (target >= 5 M/s)",
        ),
    ]
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}, numpy {np.__version__}, gymnasium {gym.__version__}"
    print(f"Env throughput ({machine})\n")
    print("| env | env-steps/s | ratio |")
    print("|---|---:|---|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:,.0f} | {ratio} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {
            "machine": machine,
            "num_envs": args.num_envs,
            "steps_per_second": {
                "cartpole_single": cartpole,
                "imagenav_single": imagenav,
                "imagenav_sync_vector": sync,
                "imagenav_native_vector": native,
            },
            "ratios": {
                "single_vs_cartpole": imagenav / cartpole,
                "native_vs_sync": native / sync,
            },
        }
        write_text(args.json, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    run_script(PROG, main, "nothing was written")

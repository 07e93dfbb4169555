"""Train PPO (Stable-Baselines3) to explore ImageNav (the coverage task) and compare it with the
reference random walk, a uniformly random policy and the optimum, side by side in one run.

    python benchmarks/train_ppo.py [--timesteps 300000] [--threads 1] [--observation crop]

Training: ``ImageNavCoverage-v0`` (reward 1 per newly seen position, 256-step episodes,
observation ``crop+position+visited`` unless ``--observation`` says otherwise) through the native
vector env's SB3 adapter (``gtmsm_model.sb3.make_sb3_vec_env``), with the PPO settings of
``gtmsm_model.sb3.ppo_kwargs`` (the ones docs/sb3.md uses): ``MultiInputPolicy`` with
``ImageNavExtractor``, or for the bare crop ``CnnPolicy`` with ``CropCNN``.
Evaluation: ``--eval-episodes`` fresh episodes (seeds never used in training), 256 steps each, the
same seeds for every policy; "covered in t steps" = distinct positions among the observations
after steps 0..t (the start included), so the optimum is ``min(t + 1, 81)``.

Writes ``benchmarks/results/ppo_coverage.json`` (``env_kwargs`` rebuild the evaluation env with
``gym.make("ImageNav-v0", **env_kwargs)``; ``policy_path`` is the saved zip, relative to the repo
root), ``ppo_coverage.zip`` and ``ppo_coverage.png`` (coverage vs steps).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np

import gtmsm_env
from gtmsm_cli.checks import memory_problem, output_stem_problem, threads_problem
from gtmsm_cli.files import atomic_path, write_text
from gtmsm_cli.flags import SEED_MAX, bounded, fail, parse_flags
from gtmsm_cli.signals import run_script
from gtmsm_env import ImageNavVectorEnv, random_walk_actions
from gtmsm_env.observations import OBSERVATION_MODES

ROOT = Path(__file__).resolve().parent.parent
PROG = "train_ppo.py"
ENV_ID = "ImageNavCoverage-v0"
EVAL_SEED_OFFSET = 1_000_000  # evaluation seeds: seed + 1e6 + i, never reset during training


@dataclass
class Args:
    timesteps: int = bounded(300_000, ge=1)
    """PPO environment steps"""
    num_envs: int = bounded(16, ge=1)
    """parallel envs in training"""
    eval_episodes: int = bounded(100, ge=1)
    """evaluation episodes per policy"""
    horizon: int = bounded(256, ge=81)
    """evaluation steps per episode"""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """seed of training (envs, PPO) and evaluation"""
    observation: str = "crop+position+visited"
    """observation mode; "crop" trains CnnPolicy with CropCNN, the others MultiInputPolicy with ImageNavExtractor"""
    threads: int = bounded(1, ge=1)
    """torch threads"""
    deterministic: bool = True
    """evaluate PPO's greedy actions (--no-deterministic samples)"""
    out: str = "benchmarks/results/ppo_coverage"
    """output path without suffix (.json, .zip, .png are written; a relative path is relative to the repository root)"""


def coverage_curve(policy, episodes: int, horizon: int, seed: int, observation: str) -> np.ndarray:
    """``(episodes, horizon + 1)``: positions seen after 0..horizon steps, one vector env of
    ``episodes`` envs reset with ``seed`` (env i gets ``seed + i``)."""
    env = ImageNavVectorEnv(episodes, task="coverage", observation=observation)
    obs, info = env.reset(seed=seed)
    curve = np.empty((episodes, horizon + 1), np.int64)
    curve[:, 0] = info["coverage"]
    for t in range(1, horizon + 1):
        obs, _, _, _, info = env.step(policy(obs, info, t))
        curve[:, t] = info["coverage"]
    return curve


def memory_needs(args: Args) -> dict[str, tuple[str, float]]:
    """Bytes the run holds at once, by the flags that ask for them: PPO's rollout buffer (float32
    observations, about 100 floats per step with ``crop+position+visited``, n_steps x num_envs)
    and the envs, and the evaluation's vector env and coverage curves (3 policies)."""
    per_step = (8 * 8 * 3 + 2 + 81 + 8) * 4 * 2  # observation floats, value/logp/advantage..., twice in minibatches
    per_env = 64 * 1024  # a native env's image, grid and bookkeeping, generously
    from gtmsm_model.sb3 import PPO_SETTINGS

    n_steps = PPO_SETTINGS["n_steps"]
    return {
        "--num-envs": ("PPO's rollout buffer and envs", args.num_envs * (n_steps * per_step + per_env)),
        "--eval-episodes/--horizon": ("the evaluation's envs and coverage curves",
                                      args.eval_episodes * (per_env + 3 * (args.horizon + 1) * 8 + args.horizon * 16)),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_flags(Args, argv, prog=PROG, description=__doc__.split("\n\n")[0],
                       choices={"observation": OBSERVATION_MODES})
    problem = threads_problem(args.threads) or memory_problem(memory_needs(args))
    if problem is not None:
        fail(PROG, problem)
    out_text = os.path.join(ROOT, args.out)  # relative to the repository root; keeps a trailing /
    problem = output_stem_problem(out_text, (".zip", ".json", ".png"))  # checked before training, not after it
    if problem is not None:
        fail(PROG, f"--out: {problem}")
    out = Path(out_text)

    import torch
    from stable_baselines3 import PPO

    from gtmsm_model.sb3 import PPO_SETTINGS, CropCNN, make_sb3_vec_env, ppo_kwargs

    torch.set_num_threads(args.threads)
    registered, max_steps = gtmsm_env.REGISTERED_ENVS[ENV_ID]
    observation = args.observation
    env_kwargs = {**registered, "observation": observation}

    venv = make_sb3_vec_env(ENV_ID, num_envs=args.num_envs, seed=args.seed, observation=observation)
    policy, kwargs = ("CnnPolicy", ppo_kwargs(CropCNN)) if observation == "crop" else ("MultiInputPolicy", ppo_kwargs())
    model = PPO(policy, venv, seed=args.seed, device="cpu", verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(args.timesteps)
    train_seconds = time.perf_counter() - start
    policy_file = out.with_suffix(".zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(policy_file) as tmp:
        model.save(tmp)
    print(f"trained {args.timesteps} steps in {train_seconds:.0f} s ({args.threads} torch threads)")

    eval_seed = args.seed + EVAL_SEED_OFFSET
    n, horizon = args.eval_episodes, args.horizon
    walk = random_walk_actions(np.random.default_rng([eval_seed, 1]), n, horizon)
    uniform = np.random.default_rng([eval_seed, 2]).integers(0, 5, (horizon, n))
    policies = {
        "ppo": lambda obs, info, t: model.predict(obs, deterministic=args.deterministic)[0],
        "random_walk": lambda obs, info, t: walk[:, t - 1],
        "uniform_random": lambda obs, info, t: uniform[t - 1],
    }
    curves = {name: coverage_curve(p, n, horizon, eval_seed, observation) for name, p in policies.items()}
    mean = {name: c.mean(axis=0) for name, c in curves.items()}
    cells = int(np.prod(gtmsm_env.ImageNavEnv().grid_shape))
    mean["optimum"] = np.minimum(np.arange(horizon + 1) + 1, cells).astype(float)

    def at(name: str, t: int) -> float:
        return round(float(mean[name][t]), 2)

    rows = {name: {"covered_in_81": at(name, 81), "covered_in_256": at(name, min(256, horizon))}
            for name in mean}
    for name in ("ppo", "random_walk", "uniform_random"):
        rows[name]["std_in_81"] = round(float(curves[name][:, 81].std()), 2)
    ratio = rows["ppo"]["covered_in_81"] / rows["random_walk"]["covered_in_81"]
    result = {
        "command": "python benchmarks/train_ppo.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} CPU, {platform.processor() or 'unknown'}, "
                   f"{args.threads} torch thread(s)",
        "env_id": ENV_ID,
        "env_kwargs": {**env_kwargs, "max_episode_steps": max_steps},
        "policy_path": str(policy_file.relative_to(ROOT)) if policy_file.is_relative_to(ROOT) else str(policy_file),
        "algorithm": "PPO",
        "policy": policy,
        "ppo_kwargs": PPO_SETTINGS,
        "policy_kwargs": {
            "features_extractor_class": "gtmsm_model.sb3." + kwargs["policy_kwargs"]["features_extractor_class"].__name__,
            "net_arch": kwargs["policy_kwargs"]["net_arch"]},
        "args": asdict(args),
        "train_seconds": round(train_seconds, 1),
        "eval_episodes": n,
        "eval_seeds": f"{eval_seed} .. {eval_seed + n - 1}",
        "coverage_definition": "distinct positions among the observations after steps 0..t "
                               "(start included); optimum = min(t + 1, 81)",
        "coverage": rows,
        "ppo_over_random_walk_in_81": round(ratio, 3),
        "target_ppo_over_random_walk_in_81": 1.5,
        "curves_mean": {name: [round(float(x), 3) for x in c] for name, c in mean.items()},
        "versions": {"gtmsm_env": gtmsm_env.__version__, "torch": torch.__version__,
                     "stable_baselines3": __import__("stable_baselines3").__version__},
    }
    write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"ppo": "PPO", "random_walk": "reference random walk",
              "uniform_random": "uniform random", "optimum": "optimum"}
    for name, curve in mean.items():
        ax.plot(curve, label=f"{labels[name]} ({rows[name]['covered_in_81']:.1f} in 81)",
                ls="--" if name == "optimum" else "-")
    ax.axvline(81, color="grey", lw=0.5)
    ax.set_xlabel("steps")
    ax.set_ylabel(f"positions seen (of {cells})")
    ax.set_title(f"ImageNav coverage, {n} episodes each")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=100)

    print(f"{'policy':<16}{'in 81 steps':>12}{'in 256 steps':>14}")
    for name, row in rows.items():
        print(f"{name:<16}{row['covered_in_81']:>12.2f}{row['covered_in_256']:>14.2f}")
    print(f"PPO / random walk in 81 steps: {ratio:.2f}x (target >= 1.5x); "
          f"wrote {out.with_suffix('.json')}")


if __name__ == "__main__":
    run_script(PROG, main, "--out's .zip is written after training, its .json and .png at the end")

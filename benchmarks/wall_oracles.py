"""How much of a trained GTM-SM's error is its walls: the same checkpoint and held-out rollouts, evaluated
three ways.

* ``model``: as trained: the wall model localises the memorised walk and decides every move while
  imagining (``gtmsm_model.evaluate``'s protocol, as in ``train_gtmsm.py``);
* ``true-imagined``: the true walls decide the moves while imagining (the predicted steps, which
  no view shows); the memorised walk is localised by the model as before;
* ``true-walls``: the true walls everywhere: localisation and imagination both given.

The step from ``model`` to ``true-imagined`` is what the model's decisions while imagining cost:
its guesses at walls no view showed, and the edges its memory holds wrongly where it mislocalised
the memorised walk. From ``true-imagined`` to ``true-walls`` is the rest of what its localisation
costs (memories stored at the wrong cells); ``true-walls`` against the VAE floor is what is left
for the codec and the read-out. A short
memory leaves the world's edges unseen: the script also counts the rollouts whose prediction leaves
the memorised walk's box along an axis that walk spans less of than the world does. There the
model has to guess where the edge lies, and without the start cell or the grid size (which no wall
model may use) nothing in the views can tell it.

Only tracker-based wall models (``edges``, ``learned``) can be given the true walls of the memorised
walk; for the seed's ``absolute`` gate that row is left out.

    python benchmarks/wall_oracles.py --checkpoint runs/benchmark/quick-seed0/checkpoint.pt \\
        --eval-sequences 64 --out benchmarks/results/wall_oracles
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: the repository root holds the harness
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.conditions import condition_rollouts, image_file
from benchmarks.harness.scoreboard import commit
from benchmarks.train_gtmsm import BENCH_CONDITIONS
from gtmsm_cli.checks import (
    duplicates_problem,
    output_dir_problem,
    output_stem_problem,
    threads_problem,
)
from gtmsm_cli.files import write_text
from gtmsm_cli.flags import bounded, fail, parse_dataclass
from gtmsm_cli.signals import run_script
from gtmsm_env.rollouts import Rollouts
from gtmsm_model.checkpoint import CheckpointError, load_model
from gtmsm_model.evaluate import evaluate_gtmsm, json_safe
from gtmsm_model.model import GTMSM

PROG = "wall_oracles.py"
MODES = ("model", "true-imagined", "true-walls")
DEFAULT_CONDITIONS = ["centre", "photos-tau64", "flat-photos-tau64", "flat-scenes", "flat-scenes-random",
                      "flat-scenes-tau64"]


@dataclass
class Args:
    """Diagnostic options."""

    checkpoint: str = ""
    """A checkpoint.pt written by gtmsm train or train_gtmsm.py (required)."""
    conditions: list[str] = field(default_factory=lambda: list(DEFAULT_CONDITIONS))
    """Conditions to evaluate (train_gtmsm.py's names)."""
    eval_sequences: int = bounded(64, ge=1)
    """Held-out rollouts per condition."""
    photo_patches: int = bounded(256, ge=1)
    """Natural-photo patches to draw held-out images from."""
    threads: int = bounded(1, ge=0)
    """Torch CPU threads (0: torch's default)."""
    images_dir: str = "runs/benchmark"
    """Where the photo image sets are built (or reused: train_gtmsm.py's --runs-dir holds the same ones)."""
    out: str = "runs/benchmark/wall_oracles"
    """Results path stem: writes OUT.md and OUT.json."""


def parse_args(argv: list[str] | None = None) -> tuple[Args, GTMSM]:
    """Every flag, the checkpoint and the output paths checked before any evaluation: one
    ``wall_oracles.py: error: ...`` line naming the flag, exit status 2."""
    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__, choices={"conditions": list(BENCH_CONDITIONS)})
    if not args.checkpoint:
        fail(PROG, "--checkpoint is required: the checkpoint.pt of a trained GTM-SM")
    problem = threads_problem(args.threads) or duplicates_problem("--conditions", args.conditions)
    if problem is not None:
        fail(PROG, problem)
    try:
        model = load_model(args.checkpoint).eval()
    except CheckpointError as error:
        fail(PROG, f"--checkpoint: {error}")
    problem = output_stem_problem(args.out, (".md", ".json"))
    if problem is not None:
        fail(PROG, f"--out: {problem}")
    problem = output_dir_problem(args.images_dir)  # last: it creates the folder
    if problem is not None:
        fail(PROG, f"--images-dir: {problem}")
    return args, model


def tracks_walks(model: GTMSM) -> bool:
    """Whether the wall model localises through the tracker (``track``), which the true walls can replace."""
    return hasattr(model.wall_model, "track")


@contextmanager
def true_walls(model: GTMSM, rollouts: Rollouts, tau: int, *, observing: bool) -> Iterator[None]:
    """Within the block the true walls of ``rollouts`` decide every move while imagining (steps tau..) and,
    with ``observing``, localise the memorised walk too: the wall model's own methods shadowed on the
    instance, and restored after."""
    wall_model = model.wall_model
    hits = torch.as_tensor(np.asarray(rollouts.wall_hits))

    def move_rule(moves):
        step = [0]

        def decide(state, move, moving, edges, visited):
            if state.shape[0] != hits.shape[0]:
                raise ValueError("true_walls: the prediction's batch is not the rollouts'")
            blocked = hits[:, tau + step[0]].to(state.device) & moving
            step[0] += 1
            return 1.0 - blocked.to(move.dtype), edges
        return decide

    def track(moves, pixels, actions, beliefs, *rest, **kwargs):
        return hits[:, :actions.shape[1]].to(pixels.device).clone()

    wall_model.move_rule = move_rule
    if observing:
        wall_model.track = track
    try:
        yield
    finally:
        del wall_model.move_rule
        if observing:
            del wall_model.track


def unseen_edges(rollouts: Rollouts, tau: int) -> int:
    """Rollouts whose predicted walk leaves the memorised walk's box along an axis that walk spans less of
    than the world: where an edge of the world lies there, no view has shown."""
    positions = np.asarray(rollouts.positions)
    memorised, predicted = positions[:, :tau], positions[:, tau:]
    low, high = memorised.min(1), memorised.max(1)
    world = np.array(rollouts.metadata["grid_shape"]) - 1  # the world's span in moves along each axis
    leaves = (predicted < low[:, None]) | (predicted > high[:, None])  # (B, H, 2)
    short = (high - low) < world  # (B, 2)
    return int((leaves & short[:, None]).any((1, 2)).sum())


def evaluate_modes(model: GTMSM, rollouts: Rollouts, tau: int) -> dict[str, Any]:
    """The three evaluations of one condition (``true-walls`` only for a tracker-based wall model)."""
    results = {"model": evaluate_gtmsm(model, rollouts, tau)}
    with true_walls(model, rollouts, tau, observing=False):
        results["true-imagined"] = evaluate_gtmsm(model, rollouts, tau)
    if tracks_walks(model):
        with true_walls(model, rollouts, tau, observing=True):
            results["true-walls"] = evaluate_gtmsm(model, rollouts, tau)
    return results


def table(results: dict[str, dict[str, Any]], unseen: dict[str, int]) -> list[str]:
    lines = ["| condition | walls | rev. MSE | VAE floor | ratio to floor | rev. p99 | rev. max | lost | drift "
             "| wall decisions right | rollouts with an unseen edge |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, modes in results.items():
        for mode, e in modes.items():
            s, d = e.scores, e.diagnostics
            lines.append(f"| {name} | {mode} | {s.mse_revisited:.5f} | {d.vae_mse_revisited:.5f} | "
                         f"{d.ratio_to_vae_revisited:.3f} | {s.revisited_p99:.5f} | {s.revisited_max:.5f} | "
                         f"{s.rollouts_lost}/{s.sequences} | {s.drift_ratio:.3f} | {d.wall_decision_accuracy:.4f} | "
                         f"{unseen[name]}/{s.sequences} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args, model = parse_args(argv)
    revision = commit()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = lambda kind: image_file(Path(args.images_dir), kind, args.photo_patches, reuse=True)  # noqa: E731
    results, unseen = {}, {}
    for name in args.conditions:
        condition = BENCH_CONDITIONS[name]
        tau = condition.lengths(quick=False)[0]
        rollouts = condition_rollouts(condition, args.eval_sequences, quick=False, images=images)
        with torch.no_grad():
            results[name] = evaluate_modes(model, rollouts, tau)
        unseen[name] = unseen_edges(rollouts, tau)
        print(" | ".join(f"{name} {mode}: {e.diagnostics.ratio_to_vae_revisited:.3f}x floor, worst "
                         f"{e.scores.revisited_max:.4f}" for mode, e in results[name].items()), flush=True)
    threads = args.threads or torch.get_num_threads()
    machine = (f"{platform.machine()} Linux, {os.cpu_count()} CPU cores, {threads} torch thread(s), "
               f"torch {torch.__version__}, no GPU")
    command = "python benchmarks/wall_oracles.py " + " ".join(sys.argv[1:] if argv is None else argv)
    date = time.strftime("%Y-%m-%d")
    lines = ["# How much of the error is the walls", "",
             f"Checkpoint `{args.checkpoint}` (wall model `{model.config.wall_model}`), {args.eval_sequences} held-out "
             f"rollouts per condition (train_gtmsm.py's conditions and seed stream), commit {revision}.",
             f"Command: `{command}`", f"Machine: {machine}", f"Date: {date}", "",
             "Walls: `model` = the model localises the memorised walk and decides every move while imagining; "
             "`true-imagined` = the true walls decide the moves while imagining; `true-walls` = the true walls "
             "everywhere. 'Rollouts with an unseen edge': the prediction leaves the memorised walk's box along an "
             "axis that walk spans less of than the world.", "", *table(results, unseen), ""]
    payload = {"commit": revision, "machine": machine, "date": date, "command": command, "checkpoint": args.checkpoint,
               "wall_model": model.config.wall_model,
               "conditions": {name: {"unseen_edge_rollouts": unseen[name],
                                     **{mode: e.to_dict() for mode, e in modes.items()}}
                              for name, modes in results.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines))
    write_text(Path(args.out).with_suffix(".json"), json.dumps(json_safe(payload), indent=1))
    print("\n".join(lines))
    print(f"wrote {args.out}.md and {args.out}.json")


if __name__ == "__main__":
    run_script(PROG, main, "--out is written only at the end")

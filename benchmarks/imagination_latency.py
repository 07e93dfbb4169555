"""Imagination mode's cost per move, measured side by side in one run.

    SDL_VIDEODRIVER=dummy python benchmarks/imagination_latency.py --checkpoint runs/play_model/checkpoint.pt

After memorising ``tau`` steps of a random walk (the reference walk of the env), every further move
costs one ``Imagination.imagine`` (one model step: state, memory read-out, decode). Rows:

* ``observe``: ms per ``Imagination.observe`` call while memorising (re-infers the walk's states,
  refines the new crop's code), averaged over the tau memorised steps;
* ``imagine``: ms per ``Imagination.imagine`` call (the model alone);
* ``predict, whole sequence``: ms per ``GTMSM.predict`` on the sequence so far (what a
  non-incremental player would re-run every move), at the longest length of the run;
* ``play frame``: ms per frame of ``gtmsm-play --model`` (env step + imagine + drawing the window
  with the dummy SDL driver), hence frames/s when nothing caps the frame rate.

Torch runs on 1 thread (what ``gtmsm-play`` sets: one tiny step per frame).
"""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import platform
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from gtmsm_cli.flags import SEED_MAX, bounded, error_text, fail, parse_dataclass
from gtmsm_cli.signals import run_script
from gtmsm_env import random_walk_actions

PROG = "imagination_latency.py"


@dataclass
class Args:
    checkpoint: Path = Path("runs/play_model/checkpoint.pt")
    """a GTM-SM checkpoint.pt (gtmsm train --out-dir ...)"""
    steps: int = bounded(300, ge=1)
    """timed imagined moves after memorisation"""
    predict_repeats: int = bounded(20, ge=1)
    """timed GTMSM.predict calls on the whole sequence"""
    tau: int | None = bounded(None, ge=1)
    """memorisation steps (unset: the checkpoint's training tau)"""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """seed of the image and the walk"""


def main(argv: list[str] | None = None) -> None:
    args = parse_dataclass(Args, argv, prog=PROG, description=__doc__)
    import gymnasium as gym

    from gtmsm_env.play import PlaySession
    from gtmsm_model.checkpoint import CheckpointError
    from gtmsm_model.imagination import load_imagination

    torch.set_num_threads(1)
    try:  # a missing, empty or damaged checkpoint is reported before any measurement
        imagination = load_imagination(args.checkpoint, args.tau)
    except (CheckpointError, ValueError, RuntimeError, OSError) as error:
        fail(PROG, f"--checkpoint: {error_text(error)}")
    trained = imagination.world  # the env the model was trained on (image, crop and step size)
    world = {"image_size": trained.image_size, "crop_size": trained.crop_size, "step_size": trained.step_size}
    tau = imagination.tau
    rng = np.random.default_rng(args.seed)
    actions = random_walk_actions(rng, 1, tau + args.steps)[0].tolist()

    # The model alone.
    env = gym.make("ImageNav-v0", max_episode_steps=None, **world)
    obs, _ = env.reset(seed=args.seed)
    observations = [obs]
    observe_seconds = time.perf_counter()
    imagination.observe(obs)
    observe_seconds = time.perf_counter() - observe_seconds
    for action in actions[1:tau]:
        obs, *_ = env.step(action)
        observations.append(obs)
        started = time.perf_counter()
        imagination.observe(obs, action)
        observe_seconds += time.perf_counter() - started
    observe_ms = observe_seconds / tau * 1000
    started = time.perf_counter()
    for action in actions[tau:]:
        imagination.imagine(action)
    imagine_ms = (time.perf_counter() - started) / args.steps * 1000

    # The non-incremental alternative: predict the whole sequence again.
    obs_tensor = torch.as_tensor(np.stack(observations))[None]
    action_tensor = torch.as_tensor(actions)[None]
    imagination.model.predict(obs_tensor, action_tensor, tau)  # warm-up
    started = time.perf_counter()
    for _ in range(args.predict_repeats):
        imagination.model.predict(obs_tensor, action_tensor, tau)
    predict_ms = (time.perf_counter() - started) / args.predict_repeats * 1000

    # The whole play frame: env step + imagine + draw, no frame cap.
    session = PlaySession(gym.make("ImageNav-v0", render_mode="rgb_array", max_episode_steps=None, **world),
                          seed=args.seed, imagination=imagination)
    for action in actions[1:tau]:
        session.act(action)
    session.draw()
    started = time.perf_counter()
    for action in actions[tau:]:
        session.act(action)
        session.draw()
    frame_ms = (time.perf_counter() - started) / args.steps * 1000
    session.close()

    print(f"# imagination latency, {date.today()}, {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} on 1 thread, "
          f"checkpoint {args.checkpoint}, tau {tau}, {args.steps} moves")
    print(f"observe (memorising step):   {observe_ms:7.3f} ms/step (mean over {tau} steps)")
    print(f"imagine (model step):        {imagine_ms:7.3f} ms/step")
    print(f"predict, whole sequence T={tau + args.steps}: {predict_ms:7.3f} ms/call "
          f"({predict_ms / imagine_ms:.0f}x one incremental step)")
    print(f"play frame (step+imagine+draw): {frame_ms:7.3f} ms/frame = {1000 / frame_ms:.0f} frames/s uncapped")


if __name__ == "__main__":
    run_script(PROG, main)

"""Training GTM-SM from scratch, walls on, without being told the grid.

The schedule (every piece holds for any 2-D grid world; none uses the grid size, the boundary
or the start position):

1. **VAE warm-up** on random crops (``vae_warmup_iters``): the memory prior compares codes, so
   the codes must mean something before the state map can be learnt from them.
2. **Main phase** on whole sequences with the full objective (``GTMSM.loss``):
   * a *length curriculum*: sequences grow from ``curriculum_start`` steps to ``seq_len`` over
     ``curriculum_iters`` iterations. On short walks the map only has to be right locally, and
     the memory loss on memorisation steps gives every step a signal. Without it the gate learns
     to close everywhere (not moving is the cheapest way to stay self-consistent while the map
     is wrong) and the k-NN hit rate stays at chance.
   * the gate is held open for the first ``gate_open_iters`` iterations (M first learns which
     way each action points), and its output bias starts open (sigmoid(3) ≈ 0.95);
   * KL warm-up: the KL terms' weight ramps from ``kl_start`` to 1 over ``kl_warmup_iters``;
   * a larger learning rate for M and the gate (``lr_state``) than for the VAE (``lr_vae``),
     and gradient clipping.

Structural priors live in the model (see ``StateTransition``): stay does not move and opposite
actions cancel, each move has unit length.

Run ``gtmsm train --help`` for every option; ``--preset debug|quick|paper`` picks a consistent set.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_cli.files import write_text
from gtmsm_model.augment import augment_pixels, random_crops
from gtmsm_model.checkpoint import TrainState, check_resumable, resume_from, save_state
from gtmsm_model.config import RESUMABLE_CHANGES, ConfigError, Schedule, TrainConfig, make_config
from gtmsm_model.data import RolloutSampler, heldout_rollouts
from gtmsm_model.distributed import DistributedContext, LossModule, Shards, shard_seed, wrap
from gtmsm_model.evaluate import evaluate_gtmsm
from gtmsm_model.model import GTMSM
from gtmsm_model.preflight import (
    check_image_source,
    check_memory,
    eval_memory_need,
    make_sampler,
    memory_needs,
    preflight,
    resolve_device,
    run_shards,
)
from gtmsm_model.presets import PRESETS
from gtmsm_model.progress import PhaseBars
from gtmsm_model.run_folder import RunFolder
from gtmsm_model.stopping import StopRequests, TrainingInterrupted
from gtmsm_model.training_log import TENSORBOARD_DIR, TrainingLog

__all__ = [
    "PRESETS", "RESUMABLE_CHANGES", "ConfigError", "TrainConfig", "TrainResult", "TrainState",
    "TrainingInterrupted", "augment_pixels", "check_image_source", "check_memory", "check_resumable",
    "eval_memory_need", "kl_weight", "make_config", "make_optimizer", "make_sampler", "memory_needs",
    "preflight", "random_crops", "resolve_device", "sequence_length", "train", "train_step",
]


def sequence_length(config: TrainConfig | Schedule, iteration: int) -> int:
    """The curriculum's sequence length at main-phase ``iteration`` (see ``Schedule``)."""
    return (config.schedule if isinstance(config, TrainConfig) else config).sequence_length(iteration)


def kl_weight(config: TrainConfig | Schedule, iteration: int) -> float:
    """The KL weight at main-phase ``iteration`` (see ``Schedule``)."""
    return (config.schedule if isinstance(config, TrainConfig) else config).kl_weight(iteration)


@dataclass
class TrainResult:
    model: GTMSM
    config: TrainConfig
    iterations: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- legacy global RNG, for any library code that still uses it
    torch.manual_seed(seed)


def make_optimizer(model: GTMSM, config: TrainConfig) -> torch.optim.Optimizer:
    groups = [
        {"params": model.vae.parameters(), "lr": config.schedule.lr_vae},
        {"params": model.transition.parameters(), "lr": config.schedule.lr_state},
    ]
    wall_parameters = list(model.wall_model.parameters())  # a learned localiser's network (none for the others)
    if wall_parameters:  # a network over crops, like the VAE: the VAE's step size
        groups.append({"params": wall_parameters, "lr": config.schedule.lr_vae})
    return torch.optim.Adam(groups)


def train_step(state: TrainState, sampler: RolloutSampler, config: TrainConfig, device: torch.device,
               loss_module: torch.nn.Module | None = None, shards: Shards | None = None,
               context: DistributedContext | None = None) -> tuple[str, dict[str, float]]:
    """One optimisation step of the schedule (VAE warm-up, then the main phase); its loss parts.

    The batch is the union of the shards' sub-batches; each local shard's loss is back-propagated
    in turn (averaged), and under DDP the gradients are averaged over processes.
    """
    model, step, schedule = state.model, state.step, config.schedule
    loss_module = loss_module if loss_module is not None else LossModule(model)
    shards = shards or Shards([0], 1)
    context = context or DistributedContext()
    state.optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    phase = "vae" if step < schedule.vae_warmup_iters else "main"
    walks, walk_actions = [], []  # the main phase's walks, for the wall model's world-span and wall priors
    for shard in shards.local:
        if shards.total > 1:
            torch.manual_seed(shard_seed(config.run.seed, step, shard))
        if phase == "vae":
            crops = random_crops(sampler, schedule.vae_batch_size // shards.total, key=step,
                                 shard=shard if shards.total > 1 else None).to(device)
            pixels = model.to_pixels(crops)
            if schedule.augment_crops:
                pixels = augment_pixels(pixels, geometric=True)
            parts = loss_module("vae", pixels, kl_weight=min(1.0, (step + 1) / 200))
        else:
            iteration = step - schedule.vae_warmup_iters
            length = schedule.sequence_length(iteration)
            batch = sampler.sample(schedule.batch_size // shards.total, length, key=step, shard=shard).to(device)
            observations = batch.observations
            if schedule.augment_sequences:
                observations = augment_pixels(model.to_pixels(observations), geometric=False)
            model.set_iteration(iteration)
            parts, states = loss_module("main", observations, batch.actions, tau=min(schedule.tau, length),
                                        kl_weight=schedule.kl_weight(iteration))
            walks.append(states.detach())
            walk_actions.append(batch.actions)
        (parts["loss"] / len(shards.local)).backward()
        for name, value in parts.items():
            totals[name] = totals.get(name, 0) + value.detach() / len(shards.local)
    if walks:  # every rank counts the walks of all shards, as one process would
        model.count_spans(torch.cat(walks), reduce=context.sum, actions=torch.cat(walk_actions))
    torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
    state.optimizer.step()
    state.step += 1
    names = list(totals)
    averaged = context.mean(torch.stack([totals[name].float() for name in names]))
    values = dict(zip(names, averaged.tolist(), strict=True))
    if not math.isfinite(values["loss"]):
        raise FloatingPointError(f"loss became {values['loss']} at step {state.step}")
    return phase, values


def evaluation_record(state: TrainState, eval_set: Any, config: TrainConfig, device: torch.device) -> dict[str, Any]:
    # Evaluation must not consume the training RNG, or a resumed run would diverge.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        evaluation = evaluate_gtmsm(state.model, eval_set, config.schedule.eval_tau, device=device)
    state.model.train()
    scores, diagnostics = evaluation.scores, evaluation.diagnostics
    return {"step": state.step, "seconds": round(state.seconds, 1),
            "mse_revisited": scores.mse_revisited, "mse_novel": scores.mse_novel,
            "vae_mse_revisited": diagnostics.vae_mse_revisited, "knn_hit_rate": diagnostics.knn_hit_rate,
            "smap_rms": diagnostics.smap_rms, "gate_ratio": diagnostics.gate_ratio,
            "sequences": int(eval_set.actions.shape[0])}


def evaluation_message(record: dict[str, Any]) -> str:
    """An evaluation record as the ``[eval]`` line words it: ``step=350 seconds=97.2 sequences=32 ...``
    (the number of held-out sequences right after the step and time, so it is never missed)."""
    first = {name: record[name] for name in ("step", "seconds", "sequences") if name in record}
    ordered = {**first, **record}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ordered.items())


def train(config: TrainConfig, *, progress: bool | None = None,
          on_step: Callable[[TrainState], None] | None = None,
          checked: tuple[torch.device, RolloutSampler] | None = None) -> TrainResult:
    """Train GTM-SM as ``config`` says, in the run folder ``config.run.out_dir`` (see run_folder.py).

    SIGINT/SIGTERM write a checkpoint at the current step and raise ``TrainingInterrupted``;
    ``config.run.resume`` continues it exactly. ``on_step`` is called after every step (tests, hooks).
    Under ``torchrun`` each process trains on its own shard of every batch (see distributed.py).
    ``checked``: what ``preflight(config)`` already returned, so it is not done twice.
    """
    context = DistributedContext.from_environment()
    device, sampler = checked if checked is not None else preflight(config, claim=context.is_main)
    device = context.start(device)
    try:
        return _train(config, context, device, sampler, progress, on_step)
    finally:
        context.stop()


def _train(config: TrainConfig, context: DistributedContext, device: torch.device, sampler: RolloutSampler,
           progress: bool | None, on_step: Callable[[TrainState], None] | None) -> TrainResult:
    main, run, schedule = context.is_main, config.run, config.schedule
    shards = run_shards(config, context)
    show_progress = main and (run.progress if progress is None else progress)
    if run.threads:
        torch.set_num_threads(run.threads)
    folder = RunFolder(run.out_dir)
    seed_everything(run.seed)
    model = GTMSM(config.model).to(device)
    state = TrainState(model, make_optimizer(model, config))
    context.barrier()  # rank 0 has claimed (or cleared) the folder
    if run.resume and folder.checkpoint.exists():
        resume_from(folder.checkpoint, state, config, device, context.world_size)
    loss_module = wrap(model, context, device)
    if main:
        folder.write_config(config.to_dict(), {"resumed_at_step": state.step,
                                             "world_size": context.world_size})
        folder.truncate_log(state.step)
    total_steps = schedule.total_steps
    eval_set = heldout_rollouts(schedule.eval_sequences, schedule.eval_tau + schedule.eval_horizon,
                                run.seed, image_source=sampler.image_source, world=config.world) if main else None
    model.train()
    seconds_before, start = state.seconds, time.perf_counter()
    tensorboard = folder.path / TENSORBOARD_DIR if run.tensorboard else None
    with (StopRequests() as stop, PhaseBars(schedule, state.step, enabled=show_progress) as bars,
          (TrainingLog(folder.log, tensorboard, state.step) if main else contextlib.nullcontext()) as log):
        while state.step < total_steps:
            phase, parts = train_step(state, sampler, config, device, loss_module, shards, context)
            state.seconds = seconds_before + time.perf_counter() - start
            if on_step is not None:
                on_step(state)
            stopping = context.any(stop.requested is not None, device)
            if main:
                log.step(state.step, phase, state.seconds, parts)
                bars.update(state.step, parts)
                main_iter = state.step - schedule.vae_warmup_iters
                if main_iter > 0 and (state.step == total_steps or (schedule.eval_every and main_iter % schedule.eval_every == 0)):
                    record = evaluation_record(state, eval_set, config, device)
                    state.history.append(record)
                    log.evaluation(record)
                    bars.write(f"[eval] {evaluation_message(record)}")
                if stopping or state.step % run.checkpoint_every == 0 or state.step == total_steps:
                    log.flush()
                    save_state(folder.checkpoint, state, config, device, context.world_size)
            if stopping:
                bars.close()
                context.barrier()  # the checkpoint is on disk before anyone reports it
                raise TrainingInterrupted(stop.requested or "SIGINT", state.step, folder.checkpoint)
    if main:
        write_text(folder.history, json.dumps(state.history, indent=1))
        # matplotlib is imported only once there is something to draw
        from gtmsm_model.plots import plot_training_log

        plot_training_log(folder.read_log(), folder.loss_plot, schedule=config.schedule,
                          gate_open_iters=(config.model.gate_open_iters  # only the learned gates are held open
                                           if config.model.wall_model in ("absolute", "learned") else None),
                          history=state.history)
    context.barrier()
    model.eval()
    return TrainResult(model, config, state.step, state.seconds, state.history, folder.path)

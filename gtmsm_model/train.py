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
import dataclasses
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_env.env import GridGeometry, single_position_problem, validate_walls
from gtmsm_env.flags import (
    SEED_MAX,
    bounded,
    check_fields,
    error_text,
    memory_problem,
    threads_problem,
)
from gtmsm_env.images import make_image_source
from gtmsm_model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gtmsm_model.data import RolloutSampler, heldout_rollouts
from gtmsm_model.distributed import DistributedContext, LossModule, wrap
from gtmsm_model.evaluate import evaluate_gtmsm
from gtmsm_model.memory import ALL_KEY_CHUNK
from gtmsm_model.model import (
    BEFORE_SPAN_AND_REFINEMENT,
    GTMSM,
    NOVEL_VIEWS,
    UNTRIED_EDGES,
    WALL_MODELS,
    GTMSMConfig,
)
from gtmsm_model.run_folder import RunFolder


@dataclass
class TrainConfig:
    """Everything a training run needs; presets override the defaults."""

    preset: str = "quick"
    """Named preset the other fields were taken from (debug, quick, paper)."""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """Seeds torch, numpy and the training data stream."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:1, ..."""
    threads: int = bounded(1, ge=0)
    """Torch CPU threads (0: torch's default, one per core). 1 by default: this small model gains little from a second thread on a quiet machine and loses badly when another job shares the cores (benchmarks/results/scaling.md)."""
    out_dir: str = "runs/gtmsm"
    """Folder for checkpoint.pt, history.json and evaluation outputs."""
    dataset: str | None = None
    """An .npz written by gtmsm-rollouts to train on; unset: fresh rollouts generated on the fly."""
    image_source: str | None = None
    """Image source for on-the-fly rollouts: a folder or .npz/.npy path; unset: procedural default."""
    image_size: int = bounded(32, ge=2)
    """Side of the (square) images of on-the-fly rollouts, in pixels; their height when image_width is set."""
    image_width: int | None = bounded(None, ge=2)
    """Width of the images of on-the-fly rollouts, in pixels (unset: square, image_size)."""
    crop_size: int = bounded(8, ge=1)
    """Side of the observed window (the crop), in pixels."""
    step_size: int = bounded(3, ge=1)
    """Pixels the window moves per step."""
    start: str = "center"
    """Start cell of on-the-fly rollouts: center or random."""
    walls: str = "border"
    """Walls of on-the-fly rollouts: border (the image edge only) or maze (interior walls too)."""
    wall_density: float | None = bounded(None, ge=0, le=1)
    """Fraction of interior edges walled when walls=maze (unset: the env's default)."""
    resume: bool = False
    """Continue from out_dir/checkpoint.pt if it exists."""
    overwrite: bool = False
    """Start afresh in an out_dir that already holds a run (its checkpoint, logs, metrics and plots are removed)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    # model
    # (defaults: GTMSMConfig's, which are the quick preset's)
    z_dim: int = bounded(GTMSMConfig.z_dim, ge=1)
    """Size of the VAE latent."""
    vae_hidden: int = bounded(GTMSMConfig.vae_hidden, ge=1)
    """Width of the VAE's MLP layers."""
    wall_model: str = GTMSMConfig.wall_model
    """edges (blocked moves read off the observations + an edge memory; any start, walls anywhere) or
    absolute (the seed's learned gate of the absolute state; needs a fixed start)."""
    gate_hidden: int = bounded(GTMSMConfig.gate_hidden, ge=1)
    """Width of the absolute wall gate's hidden layers."""
    ambiguity_margin: float = bounded(GTMSMConfig.ambiguity_margin, ge=0)
    """Moves whose stayed/slid explanations fit to within this MSE are decided by loop closure (edges)."""
    loop_closure_threshold: float = bounded(GTMSMConfig.loop_closure_threshold, ge=0)
    """MSE above which two crops count as different views for loop closure (edges)."""
    edge_radius: float = bounded(GTMSMConfig.edge_radius, gt=0)
    """A remembered edge within this state distance of a move's midpoint decides the move (edges)."""
    untried_edges: str = GTMSMConfig.untried_edges
    """span (the extent rule, corrected by the world span learned from the training walks) or extent
    (blocked iff beyond everything visited): how an edge never tried is decided (edges)."""
    refine_steps: int = bounded(GTMSMConfig.refine_steps, ge=0, le=10_000)
    """Adam steps refining each memorised code towards the posterior's mode (0: the encoder's mean)."""
    refine_lr: float = bounded(GTMSMConfig.refine_lr, gt=0)
    """Step size of that refinement."""
    novel_view: str = GTMSMConfig.novel_view
    """canvas (decoded memories pasted at their pixel offsets) or knn (the k-NN blend alone)."""
    canvas_radius: float = bounded(GTMSMConfig.canvas_radius, ge=0)
    """Queries farther than this from their nearest key read the canvas (0: every query it covers)."""
    knn_k: int = bounded(GTMSMConfig.knn_k, ge=1)
    """Neighbours K of the memory prior when predicting."""
    pixel_sigma: float = bounded(GTMSMConfig.pixel_sigma, gt=0)
    """Std of the Gaussian pixel likelihood (smaller: sharper codes, less KL pressure)."""
    state_noise: float = bounded(GTMSMConfig.state_noise, ge=0)
    """Std of the transition noise eps_t while training."""

    # schedule
    vae_warmup_iters: int = bounded(2000, ge=0)
    """VAE-only iterations on random crops before the main phase."""
    vae_batch_size: int = bounded(256, ge=1)
    """Crops per VAE warm-up iteration."""
    iterations: int = bounded(700, ge=0)
    """Main-phase iterations (whole model, whole sequences)."""
    batch_size: int = bounded(16, ge=1)
    """Sequences per main-phase iteration."""
    seq_len: int = bounded(288, ge=2)
    """Full training sequence length T (memorisation tau + prediction steps)."""
    tau: int = bounded(256, ge=1)
    """Memorisation steps tau of a training sequence."""
    curriculum_start: int = bounded(24, ge=2)
    """Sequence length at the first main-phase iteration."""
    curriculum_iters: int = bounded(500, ge=0)
    """Iterations over which the sequence length grows to seq_len."""
    gate_open_iters: int = bounded(100, ge=0)
    """Main-phase iterations with the wall gate bypassed (every move succeeds)."""
    kl_start: float = bounded(0.1, ge=0, le=1)
    """KL weight at the start of the main phase."""
    kl_warmup_iters: int = bounded(300, ge=0)
    """Iterations over which the KL weight ramps to 1."""
    lr_vae: float = bounded(2e-3, gt=0, le=1)
    """Adam learning rate of the VAE."""
    lr_state: float = bounded(1e-2, gt=0, le=1)
    """Adam learning rate of M and the wall gate."""
    grad_clip: float = bounded(10.0, gt=0)
    """Global gradient-norm clip."""
    augment_crops: bool = True
    """Give each VAE warm-up crop a random symmetry of the square (flips, 90° turns), channel order,
    negation and brightness/contrast jitter (``augment_pixels``). Costs no measurable time and makes
    the codec generalise beyond the procedural training images (natural photos' reconstruction MSE
    ~0.00105 → ~0.0009)."""
    augment_sequences: bool = True
    """Give each main-phase sequence one random colour transform for all its steps (channel order,
    negation, brightness/contrast): the same pixelwise map at every step, so moves, walls and
    revisits read exactly as before, while the codec keeps seeing more colours than the procedural
    images have."""

    # evaluation and checkpoints
    eval_every: int = bounded(350, ge=0)
    """Main-phase iterations between held-out evaluations (0: only at the end)."""
    eval_sequences: int = bounded(32, ge=1)
    """Held-out sequences per periodic evaluation."""
    eval_tau: int = bounded(256, ge=1)
    """Memorisation steps of evaluation rollouts."""
    eval_horizon: int = bounded(256, ge=1)
    """Predicted steps of evaluation rollouts."""
    checkpoint_every: int = bounded(100, ge=1)
    """Iterations (either phase) between checkpoints."""
    data_shards: int = bounded(0, ge=0)
    """Independent rollout streams each batch is split over (0: one per process, i.e. 1 without torchrun). A single process with N reproduces the steps of N DDP processes."""

    def model_config(self) -> GTMSMConfig:
        return GTMSMConfig(
            crop_size=self.crop_size,
            z_dim=self.z_dim,
            vae_hidden=self.vae_hidden,
            wall_model=self.wall_model,
            gate_hidden=self.gate_hidden,
            gate_open_iters=self.gate_open_iters,
            ambiguity_margin=self.ambiguity_margin,
            loop_closure_threshold=self.loop_closure_threshold,
            edge_radius=self.edge_radius,
            untried_edges=self.untried_edges,
            refine_steps=self.refine_steps,
            refine_lr=self.refine_lr,
            novel_view=self.novel_view,
            canvas_radius=self.canvas_radius,
            knn_k=self.knn_k,
            pixel_sigma=self.pixel_sigma,
            state_noise=self.state_noise,
        )

    def check_world(self) -> None:
        """The on-the-fly world: the window can move, and the walls' settings fit its grid."""
        image_size = world_kwargs(self)["image_size"]
        problem = single_position_problem(image_size, self.crop_size, self.step_size)
        if problem is not None:
            raise ValueError(problem)
        if self.walls == "border" and self.wall_density is not None:
            raise ValueError("--wall-density applies only to --walls maze")
        grid = GridGeometry.validated(image_size, self.crop_size, self.step_size).grid_shape
        try:
            validate_walls(self.walls, self.wall_density, grid)
        except (TypeError, ValueError) as error:
            raise ValueError(f"--wall-density: {error_text(error)}") from None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the flag (``--lr-vae must be > 0, got -1``) for a bad value."""
        check_fields(self)
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.tau > self.seq_len:
            raise ValueError(f"--tau ({self.tau}) must not exceed --seq-len ({self.seq_len})")
        if self.curriculum_start > self.seq_len:
            raise ValueError(f"--curriculum-start ({self.curriculum_start}) must not exceed --seq-len ({self.seq_len})")
        if self.crop_size > self.image_size:
            raise ValueError(f"--crop-size ({self.crop_size}) must not exceed --image-size ({self.image_size})")
        if self.image_width is not None and self.crop_size > self.image_width:
            raise ValueError(f"--crop-size ({self.crop_size}) must not exceed --image-width ({self.image_width})")
        if self.start not in ("center", "random"):
            raise ValueError(f"--start must be center or random, got {self.start!r}")
        if self.walls not in ("border", "maze"):
            raise ValueError(f"--walls must be border or maze, got {self.walls!r}")
        for name, allowed in (("wall_model", WALL_MODELS), ("novel_view", NOVEL_VIEWS),
                              ("untried_edges", UNTRIED_EDGES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.wall_model == "absolute" and self.start != "center":
            raise ValueError("--wall-model absolute needs --start center: its gate is a function of the absolute "
                             "state, which means a different cell every episode with random starts "
                             "(use --wall-model edges)")
        if not str(self.out_dir).strip():
            raise ValueError("--out-dir must name a folder, got ''")
        problem = threads_problem(self.threads)
        if problem is not None:
            raise ValueError(problem)
        self.check_world()
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other: pick one")
        try:
            self.model_config()
        except ValueError as error:
            raise ValueError(f"model settings: {error}") from None


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: a smoke test of every code path, not a trained model.
    "debug": dict(
        z_dim=8, vae_hidden=32, gate_hidden=8, knn_k=3, vae_warmup_iters=10, vae_batch_size=32,
        iterations=12, batch_size=4, seq_len=40, tau=32, curriculum_start=12, curriculum_iters=6,
        gate_open_iters=3, kl_warmup_iters=5, eval_every=6, eval_sequences=4, eval_tau=32,
        eval_horizon=16, checkpoint_every=5,
    ),
    # The default (GTMSMConfig's defaults too): edge wall model, canvas read-out, a sharp MLP VAE
    # (z 128, width 512, pixel sigma 0.007) with a long cheap warm-up on random crops (2000), then 700
    # iterations on whole sequences; warm-up crops and main-phase sequences are augmented (random
    # symmetries / colour maps, augment_crops / augment_sequences) so the codec generalises to photos.
    "quick": {},
    # The seed report's sizes (z 16, K 5, tau 256, T 288, batch 16), trained longer.
    "paper": dict(z_dim=16, vae_hidden=256, pixel_sigma=0.05, knn_k=5, vae_warmup_iters=1000, iterations=3000,
                  curriculum_iters=1000, augment_crops=False, augment_sequences=False, refine_steps=0),
    # A bigger world: 64x64 images, the window moving 4 px (a 15x15 grid of 225 cells), 768 memorised
    # steps (83 % of predicted steps revisit a memorised cell) and 256 predicted; batch 8.
    "large": dict(image_size=64, step_size=4, tau=768, seq_len=832, eval_tau=768, eval_horizon=256,
                  batch_size=8, eval_sequences=16, eval_every=0),
    # The seed's wall model (a learned gate of the absolute state) with the pre-generality recipe:
    # exact with centre starts, wrong with random ones. Kept to compare against.
    "seed-gate": dict(wall_model="absolute", novel_view="knn", z_dim=32, vae_hidden=256, pixel_sigma=0.035,
                      vae_warmup_iters=800, iterations=1100, curriculum_iters=800, augment_crops=False,
                      augment_sequences=False, refine_steps=0),
}


def make_config(preset: str = "quick", **overrides: Any) -> TrainConfig:
    """A TrainConfig from a preset name plus field overrides (unknown names are an error)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {unknown}")
    config = TrainConfig(**{**PRESETS[preset], **overrides, "preset": preset})
    config.validate()
    return config


# --------------------------------------------------------------------------- schedule


def sequence_length(config: TrainConfig, iteration: int) -> int:
    """The curriculum: linear growth from curriculum_start to seq_len."""
    if config.curriculum_iters == 0:
        return config.seq_len
    fraction = min(1.0, iteration / config.curriculum_iters)
    return int(round(config.curriculum_start + (config.seq_len - config.curriculum_start) * fraction))


def kl_weight(config: TrainConfig, iteration: int) -> float:
    if config.kl_warmup_iters == 0:
        return 1.0
    return min(1.0, config.kl_start + (1.0 - config.kl_start) * iteration / config.kl_warmup_iters)


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    model: GTMSM
    config: TrainConfig
    iterations: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device; a clear error for a malformed name or CUDA that is not there."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {name!r} is not a torch device (try cpu, cuda, cuda:1): {error}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: GTM-SM trains on cpu, cuda or mps devices, not {device.type}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"--device {name} asked for, but this PyTorch build or machine has no MPS")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"--device {name} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- legacy global RNG, for any library code that still uses it
    torch.manual_seed(seed)


def world_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The env settings of the config's on-the-fly rollouts (training and held-out alike)."""
    image_size = config.image_size if config.image_width is None else (config.image_size, config.image_width)
    kwargs = dict(image_size=image_size, crop_size=config.crop_size, step_size=config.step_size,
                  start=config.start, walls=config.walls)
    if config.wall_density is not None:
        kwargs["wall_density"] = config.wall_density
    return kwargs


def make_sampler(config: TrainConfig) -> RolloutSampler:
    return RolloutSampler(config.seed, dataset=config.dataset, image_source=config.image_source,
                          **world_kwargs(config))


def random_crops(sampler: RolloutSampler, count: int, key: int, shard: int | None = None) -> torch.Tensor:
    """``count`` crops from short fresh rollouts (one key → one reproducible draw).

    ``shard=None`` is the single-stream draw (its permutation uses torch's RNG); a shard number
    draws from that shard's stream with a permutation keyed on (key, shard) alone.
    """
    sequences = max(1, math.ceil(count / 16))
    observations = sampler.sample(sequences, 16, key=key, shard=shard or 0).observations.flatten(0, 1)
    if shard is None:
        order = torch.randperm(observations.shape[0])
    else:
        order = torch.from_numpy(np.random.default_rng([sampler.seed, key, shard, 2]).permutation(observations.shape[0]))
    return observations[order[:count]]


def augment_pixels(pixels: torch.Tensor, geometric: bool) -> torch.Tensor:
    """A random appearance change per leading index of pixels (N, ..., H, W, C) in [0, 1].

    Each of the N items gets one random channel order, negation (x → 1 − x) with probability 1/2,
    and a contrast factor in [0.6, 1.4] about its own mean plus a brightness shift in [−0.15, 0.15]
    (clipped to [0, 1]); ``geometric`` adds one of the square's 8 symmetries (flips, 90° turns),
    for single crops only (turning a sequence's crops would break the moves). Every step of an item
    gets the same map. Random numbers come from torch's global CPU generator, so a seeded or resumed
    run draws the same ones on any device.
    """
    count, device = pixels.shape[0], pixels.device
    view = (count,) + (1,) * (pixels.dim() - 1)
    if geometric:
        turned = pixels.transpose(-3, -2)
        symmetry = torch.randint(0, 8, (count,)).to(device).view(view)
        pixels = torch.where(symmetry >= 4, turned, pixels)
        pixels = torch.where(symmetry % 2 == 1, pixels.flip(-3), pixels)
        pixels = torch.where((symmetry // 2) % 2 == 1, pixels.flip(-2), pixels)
    order = torch.argsort(torch.rand(count, pixels.shape[-1]), dim=1).to(device)
    pixels = torch.gather(pixels, -1, order.view(view[:-1] + (pixels.shape[-1],)).expand_as(pixels))
    negate = (torch.rand(count) < 0.5).to(device).view(view)
    pixels = torch.where(negate, 1.0 - pixels, pixels)
    contrast = torch.empty(count).uniform_(0.6, 1.4).to(device).view(view)
    brightness = torch.empty(count).uniform_(-0.15, 0.15).to(device).view(view)
    mean = pixels.flatten(1).mean(1).view(view)
    return ((pixels - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


def make_optimizer(model: GTMSM, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([
        {"params": model.vae.parameters(), "lr": config.lr_vae},
        {"params": model.transition.parameters(), "lr": config.lr_state},
    ])


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after a checkpoint at ``step`` was written."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path) -> None:
        super().__init__(f"{signal_name} at step {step}; checkpoint written to {checkpoint}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


class StopRequests:
    """While active, SIGINT/SIGTERM only set ``requested``; the loop then checkpoints and stops.

    A second Ctrl-C while the checkpoint is being written stops at once (KeyboardInterrupt).
    Outside the main thread signals cannot be caught, so nothing is installed there.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


@dataclass
class TrainState:
    """What a checkpoint holds: the model, its optimiser, how far training got."""

    model: GTMSM
    optimizer: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def check_image_source(flag: str, source: str | None, image_size: int | tuple[int, int] = 32) -> None:
    """Build an image source now (cheap) so a bad path fails before training, naming ``flag``."""
    if source is None:
        return
    try:
        make_image_source(source, image_size)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"{flag}: {error_text(error)}") from None


# Bytes per unit, measured with ru_maxrss on the quick preset's model (torch 2.13 CPU): a held-out
# step costs ~22 KB to evaluate at z 128 (16 KB at z 16); a training step's prior KL ~120-190 bytes
# per (query, key) pair. The figures below stay a little under those: they refuse what cannot fit.
STEP_BYTES_PER_PIXEL, STEP_BYTES_PER_LATENT, PAIR_BYTES = 60, 100, 100


def memory_needs(config: TrainConfig) -> dict[str, tuple[str, float]]:
    """What training holds at once, by the flags that set it: {flags: (what, bytes)} (estimates
    from measurements, kept on the low side)."""
    height, width = GridGeometry.validated(world_kwargs(config)["image_size"], config.crop_size, 1).image_shape
    pixels, image, z, hidden = config.crop_size**2 * 3, height * width * 3, config.z_dim, config.vae_hidden
    eval_steps = config.eval_sequences * (config.eval_tau + config.eval_horizon)
    train_steps = config.batch_size * config.seq_len + config.vae_batch_size
    pairs = config.batch_size * min(ALL_KEY_CHUNK, config.seq_len - 1) * config.tau
    parameters = 2 * (pixels * hidden + hidden * hidden) + hidden * 3 * z
    return {
        "--z-dim": ("the codes of every step held", STEP_BYTES_PER_LATENT * z * (train_steps + eval_steps)),
        "--z-dim/--vae-hidden": ("the model, its gradients and Adam's state", 16.0 * parameters),
        "--image-size": ("the images behind a batch and the held-out rollouts",
                         image * (config.batch_size + config.vae_batch_size + config.eval_sequences)),
        "--batch-size/--seq-len/--tau": ("a training batch",
                                         STEP_BYTES_PER_PIXEL * pixels * config.batch_size * config.seq_len
                                         + PAIR_BYTES * pairs),
        "--vae-batch-size": ("a warm-up batch", STEP_BYTES_PER_PIXEL * pixels * config.vae_batch_size),
        "--eval-sequences/--eval-tau/--eval-horizon": ("the held-out evaluation",
                                                       STEP_BYTES_PER_PIXEL * pixels * eval_steps),
    }


def eval_memory_need(sequences: int, steps: int, image_size: int | tuple[int, int], crop_size: int,
                     z_dim: int) -> float:
    """Bytes evaluating ``sequences`` held-out rollouts of ``steps`` steps takes (see above)."""
    height, width = GridGeometry.validated(image_size, crop_size, 1).image_shape
    pixels = crop_size**2 * 3
    return sequences * (steps * (STEP_BYTES_PER_PIXEL * pixels + STEP_BYTES_PER_LATENT * z_dim) + height * width * 3)


def check_memory(needs: dict[str, tuple[str, float]], available: float | None = None) -> None:
    """Refuse a run that cannot fit in this machine's memory, naming the flags that ask for most."""
    problem = memory_problem(needs, available)
    if problem is not None:
        raise ValueError(problem)


def adopt_dataset_world(config: TrainConfig, metadata: dict[str, Any]) -> None:
    """Set ``config``'s world fields to the ones ``--dataset``'s rollouts were collected in, so
    evaluation and provenance describe the dataset's world. A field set away from its default
    (a flag or a preset) that disagrees with the dataset is an error, not silently dropped."""
    if config.image_source is not None:
        raise ValueError(f"--image-source and --dataset {config.dataset} both given: the dataset's "
                         "rollouts already fix the images (drop one)")
    size = metadata.get("image_size")
    own: dict[str, Any] = {}
    if isinstance(size, int):
        own.update(image_size=size, image_width=None)
    elif isinstance(size, list) and len(size) == 2:
        own.update(image_size=int(size[0]), image_width=None if size[0] == size[1] else int(size[1]))
    for name in ("step_size", "start", "walls"):
        if name in metadata:
            own[name] = metadata[name]
    if "walls" in metadata:
        own["wall_density"] = metadata.get("wall_density") if metadata["walls"] == "maze" else None
    defaults = TrainConfig()
    for name, value in own.items():
        asked = getattr(config, name)
        if asked != getattr(defaults, name) and asked != value:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {asked} contradicts --dataset {config.dataset}, whose rollouts have "
                             f"{name} {value} (with --dataset, leave the world flags out)")
        setattr(config, name, value)


# What may differ between a run and its --resume: where and how it runs, not what it computes —
# and the main phase's length, which only says where to stop (a longer run continues the same steps).
RESUMABLE_CHANGES = frozenset({"out_dir", "resume", "overwrite", "progress", "device", "threads",
                               "checkpoint_every", "iterations"})


def check_resumable(payload: dict[str, Any], config: TrainConfig, path: Path, world_size: int = 1) -> None:
    """``path``'s run is this one: the same settings (all but ``RESUMABLE_CHANGES``, each named by
    its flag) and the same data shards, so the resumed steps are the ones it would have taken."""
    saved = payload.get("train_config", {})
    if saved.get("seed") != config.seed or saved.get("preset") != config.preset:
        raise CheckpointError(
            f"--resume: {path} was written by a run with preset={saved.get('preset')!r}, "
            f"seed={saved.get('seed')}; this run has preset={config.preset!r}, seed={config.seed}. "
            "Use another --out-dir or the same settings."
        )
    # A run from before a setting existed was trained with its old behaviour (not today's default).
    legacy = dict(BEFORE_SPAN_AND_REFINEMENT) if saved else {}
    for what, before, now in (("", {**legacy, **saved}, asdict(config)),
                              (" model", {**legacy, **payload.get("model_config", {})}, asdict(config.model_config()))):
        differ = [name for name in now if name in before and name not in RESUMABLE_CHANGES
                  and json.dumps(before[name]) != json.dumps(now[name])]
        if differ:
            flags = ", ".join(f"--{n.replace('_', '-')} {before[n]} (this run: {now[n]})" for n in differ)
            raise CheckpointError(f"--resume: {path} was trained with {flags}; resume with the same{what} "
                                  "settings, or train afresh with --overwrite or another --out-dir")
    saved_shards = saved.get("data_shards") or int(payload.get("world_size", 1))
    shards = config.data_shards or world_size
    if saved_shards != shards:
        raise CheckpointError(
            f"--resume: {path} was trained on {saved_shards} data shard(s) ({payload.get('world_size', 1)} "
            f"process(es)); this run has {shards}: resume with the same torchrun --nproc_per_node or "
            "--data-shards, or the resumed steps would differ")
    step = payload.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"--resume: {path} records step {step!r}, not a step count")
    if step > config.vae_warmup_iters + config.iterations:
        raise CheckpointError(f"--resume: {path} is at step {step}, past the end of this run "
                              f"(--vae-warmup-iters {config.vae_warmup_iters} + --iterations {config.iterations}); "
                              "give at least as many --iterations to continue it")


def check_dataset_content(path: str | None, rollouts: Any, model_config: GTMSMConfig) -> None:
    """A --dataset the model can train on: some sequences, actions the model knows."""
    if rollouts.actions.shape[0] == 0:
        raise ValueError(f"--dataset {path} holds no sequences")
    low, high = int(rollouts.actions.min()), int(rollouts.actions.max())
    if low < 0 or high >= model_config.num_actions:
        raise ValueError(f"--dataset {path}: actions must lie in [0, {model_config.num_actions}), "
                         f"found {low}..{high}")


def preflight(config: TrainConfig, claim: bool = True) -> tuple[torch.device, RolloutSampler]:
    """Every check that can fail, before any expensive work and before the out-dir is touched.

    ``claim``: also take the out-dir (refuse a used one, or clear it with --overwrite); under DDP
    only rank 0 does.
    """
    config.validate()
    device = resolve_device(config.device)
    context = DistributedContext.from_environment()
    Shards.for_run(config, context)  # batch sizes divide among the shards
    check_memory(memory_needs(config))
    try:  # builds the image source (a folder is decoded here, once) or loads the dataset
        sampler = make_sampler(config)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"{'--dataset' if config.dataset else '--image-source'}: {error_text(error)}") from None
    if sampler.max_length is not None and sampler.max_length < config.seq_len:
        raise ValueError(f"--dataset {config.dataset}: sequences have {sampler.max_length} steps, "
                         f"fewer than --seq-len {config.seq_len}")
    if sampler.rollouts is not None:
        check_dataset_content(config.dataset, sampler.rollouts, config.model_config())
        adopt_dataset_world(config, sampler.rollouts.metadata)
        crop = (config.model_config().crop_size,) * 2 + (config.model_config().channels,)
        if tuple(sampler.rollouts.observations.shape[2:]) != crop:
            raise ValueError(
                f"--dataset {config.dataset} has crops of shape {tuple(sampler.rollouts.observations.shape[2:])}; "
                f"this model reads {crop} crops (write the rollouts with --crop-size {crop[0]})"
            )
    folder = RunFolder(config.out_dir)
    if config.resume and folder.checkpoint.exists():  # a damaged or foreign checkpoint fails now
        check_resumable(load_checkpoint(folder.checkpoint), config, folder.checkpoint, context.world_size)
    if claim:
        folder.claim(resume=config.resume, overwrite=config.overwrite)
    return device, sampler


def save_state(path: Path, state: TrainState, config: TrainConfig, device: torch.device,
               world_size: int = 1) -> None:
    save_checkpoint(path, {
        "model_config": asdict(state.model.config),
        "train_config": asdict(config),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "seconds": state.seconds,
        "world_size": world_size,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0),
        "history": json.dumps(state.history),
    })


def resume_from(path: Path, state: TrainState, config: TrainConfig, device: torch.device,
                world_size: int = 1) -> None:
    """Load ``path`` into ``state`` (model, optimiser, step, RNG) after checking it is this run's."""
    payload = load_checkpoint(path, map_location=device)
    check_resumable(payload, config, path, world_size)
    try:
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not match this run's model settings: {error_text(error)}") from None
    torch.set_rng_state(payload["torch_rng"].cpu())
    if device.type == "cuda" and payload.get("cuda_rng") is not None and payload["cuda_rng"].numel():
        torch.cuda.set_rng_state(payload["cuda_rng"].cpu(), device)
    state.step, state.seconds = int(payload["step"]), float(payload.get("seconds", 0.0))
    state.history = json.loads(payload.get("history", "[]"))


@dataclass
class Shards:
    """Which rollout streams this process draws each step, out of how many in all."""

    local: list[int]
    total: int

    @classmethod
    def for_run(cls, config: TrainConfig, context: DistributedContext) -> Shards:
        total = config.data_shards or context.world_size
        if context.enabled and total != context.world_size:
            raise ValueError(f"--data-shards {config.data_shards} must equal the number of processes "
                             f"({context.world_size}) under torchrun (or be 0)")
        for flag, size in (("--batch-size", config.batch_size), ("--vae-batch-size", config.vae_batch_size)):
            if size % total:
                raise ValueError(f"{flag} {size} must be divisible by the {total} data shards/processes")
        return cls([context.rank] if context.enabled else list(range(total)), total)


def shard_seed(seed: int, step: int, shard: int) -> int:
    """The torch seed of one shard's sampling noise at one step (same in every process layout)."""
    return int(np.random.default_rng([seed, step, shard, 3]).integers(2**62))


def train_step(state: TrainState, sampler: RolloutSampler, config: TrainConfig, device: torch.device,
               loss_module: torch.nn.Module | None = None, shards: Shards | None = None,
               context: DistributedContext | None = None) -> tuple[str, dict[str, float]]:
    """One optimisation step of the schedule (VAE warm-up, then the main phase); its loss parts.

    The batch is the union of the shards' sub-batches; each local shard's loss is back-propagated
    in turn (averaged), and under DDP the gradients are averaged over processes.
    """
    model, step = state.model, state.step
    loss_module = loss_module if loss_module is not None else LossModule(model)
    shards = shards or Shards([0], 1)
    context = context or DistributedContext()
    state.optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    phase = "vae" if step < config.vae_warmup_iters else "main"
    walks = []  # the main phase's walks, for the wall model's world-span prior
    for shard in shards.local:
        if shards.total > 1:
            torch.manual_seed(shard_seed(config.seed, step, shard))
        if phase == "vae":
            crops = random_crops(sampler, config.vae_batch_size // shards.total, key=step,
                                 shard=shard if shards.total > 1 else None).to(device)
            pixels = model.to_pixels(crops)
            if config.augment_crops:
                pixels = augment_pixels(pixels, geometric=True)
            parts = loss_module("vae", pixels, kl_weight=min(1.0, (step + 1) / 200))
        else:
            iteration = step - config.vae_warmup_iters
            length = sequence_length(config, iteration)
            batch = sampler.sample(config.batch_size // shards.total, length, key=step, shard=shard).to(device)
            observations = batch.observations
            if config.augment_sequences:
                observations = augment_pixels(model.to_pixels(observations), geometric=False)
            model.set_iteration(iteration)
            parts, states = loss_module("main", observations, batch.actions, tau=min(config.tau, length),
                                        kl_weight=kl_weight(config, iteration))
            walks.append(states.detach())
        (parts["loss"] / len(shards.local)).backward()
        for name, value in parts.items():
            totals[name] = totals.get(name, 0) + value.detach() / len(shards.local)
    if walks:  # every rank counts the walks of all shards, as one process would
        model.count_spans(torch.cat(walks), reduce=context.sum)
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
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
        metrics = evaluate_gtmsm(state.model, eval_set, config.eval_tau, device=device)
    state.model.train()
    return {"step": state.step, "seconds": round(state.seconds, 1),
            **{k: metrics[k] for k in ("mse_revisited", "mse_novel", "vae_mse_revisited",
                                       "knn_hit_rate", "smap_rms", "gate_ratio")}}


def train(config: TrainConfig, *, progress: bool | None = None,
          on_step: Callable[[TrainState], None] | None = None,
          checked: tuple[torch.device, RolloutSampler] | None = None) -> TrainResult:
    """Train GTM-SM as ``config`` says, in the run folder ``config.out_dir`` (see run_folder.py).

    SIGINT/SIGTERM write a checkpoint at the current step and raise ``TrainingInterrupted``;
    ``config.resume`` continues it exactly. ``on_step`` is called after every step (tests, hooks).
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
    main = context.is_main
    shards = Shards.for_run(config, context)
    show_progress = main and (config.progress if progress is None else progress)
    if config.threads:
        torch.set_num_threads(config.threads)
    folder = RunFolder(config.out_dir)
    seed_everything(config.seed)
    model = GTMSM(config.model_config()).to(device)
    state = TrainState(model, make_optimizer(model, config))
    context.barrier()  # rank 0 has claimed (or cleared) the folder
    if config.resume and folder.checkpoint.exists():
        resume_from(folder.checkpoint, state, config, device, context.world_size)
    loss_module = wrap(model, context, device)
    if main:
        folder.write_config(asdict(config), {"model_config": asdict(model.config), "resumed_at_step": state.step,
                                             "world_size": context.world_size})
        folder.truncate_log(state.step)
    total_steps = config.vae_warmup_iters + config.iterations
    eval_set = heldout_rollouts(config.eval_sequences, config.eval_tau + config.eval_horizon,
                                config.seed, image_source=sampler.image_source, **world_kwargs(config)) if main else None
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=state.step, desc="gtmsm", dynamic_ncols=True, mininterval=1.0)
    model.train()
    seconds_before, start = state.seconds, time.perf_counter()
    with StopRequests() as stop, (folder.log.open("a") if main else contextlib.nullcontext()) as log:
        while state.step < total_steps:
            phase, parts = train_step(state, sampler, config, device, loss_module, shards, context)
            state.seconds = seconds_before + time.perf_counter() - start
            if on_step is not None:
                on_step(state)
            stopping = context.any(stop.requested is not None, device)
            if main:
                log.write(json.dumps({"step": state.step, "phase": phase, "seconds": round(state.seconds, 3),
                                      **{k: round(v, 6) for k, v in parts.items()}}) + "\n")
                if bar is not None:
                    bar.update(1)
                    if state.step % 50 == 0:
                        bar.set_postfix(refresh=False, ordered_dict={"phase": phase, **{k: f"{v:.3g}" for k, v in parts.items()}})
                main_iter = state.step - config.vae_warmup_iters
                if main_iter > 0 and (state.step == total_steps or (config.eval_every and main_iter % config.eval_every == 0)):
                    record = evaluation_record(state, eval_set, config, device)
                    state.history.append(record)
                    message = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
                    (bar.write if bar is not None else print)(f"[eval] {message}")
                if stopping or state.step % config.checkpoint_every == 0 or state.step == total_steps:
                    log.flush()
                    save_state(folder.checkpoint, state, config, device, context.world_size)
            if stopping:
                if bar is not None:
                    bar.close()
                context.barrier()  # the checkpoint is on disk before anyone reports it
                raise TrainingInterrupted(stop.requested or "SIGINT", state.step, folder.checkpoint)
    if bar is not None:
        bar.close()
    if main:
        folder.history.write_text(json.dumps(state.history, indent=1))
        # matplotlib is imported only once there is something to draw
        from gtmsm_model.plots import plot_training_log

        plot_training_log(folder.read_log(), folder.loss_plot)
    context.barrier()
    model.eval()
    return TrainResult(model, config, state.step, state.seconds, state.history, folder.path)

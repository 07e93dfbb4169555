"""One training configuration: the world, the model, the schedule and the run, nested.

``TrainConfig`` holds four parts, each a dataclass that validates its own fields:

- ``world``: a :class:`gtmsm_env.world.World` (image size, crop, step, start, walls), validated by
  ``World.validated()``;
- ``model``: a :class:`gtmsm_model.model.GTMSMConfig` (its ``crop_size`` is the world's), which
  checks its own choices;
- ``schedule``: :class:`Schedule`, what the optimisation does step by step;
- ``run``: :class:`RunConfig`, where and how it runs (folder, device, threads, checkpoints, data).

Presets (``gtmsm_model.presets``) are nested overrides over these defaults. ``config.json`` and
the checkpoint store :meth:`TrainConfig.to_dict`, the same nesting.

Errors name fields, never flags: a :class:`ConfigError` writes each field it names between
backticks (```tau` (400) must not exceed `seq_len` (288)``), the convention of
:mod:`gtmsm_cli.flags`, whose ``flag_text`` turns them into command-line flags at an entry point.
The flat constructor :func:`make_config` (one keyword per setting, its field name) raises them too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gtmsm_cli.checks import threads_problem
from gtmsm_cli.flags import (
    SEED_MAX,
    Bounds,
    bounded,
    check_fields,
    error_text,
    field_bounds,
    mark_fields,
    value_problem,
)
from gtmsm_env.geometry import single_position_problem
from gtmsm_env.world import World
from gtmsm_env.world_flags import WORLD_FLAGS, world_flag_bounds
from gtmsm_model.model import GTMSMConfig

# --------------------------------------------------------------------------- errors


class ConfigError(ValueError):
    """A setting that cannot be used; every field it names is written `like_this`."""


def marked(name: str) -> str:
    """How a message names field ``name``: ```name```."""
    return f"`{name}`"


def _bounds_problem(name: str, value: Any, bounds: Bounds) -> None:
    problem = value_problem(value, bounds)
    if problem is not None:
        raise ConfigError(f"{marked(name)} {problem}")


def _check_bounded(obj: Any, only: Any = None) -> None:
    """``flags.check_fields`` for one part (or its fields ``only``), its error naming the field."""
    try:
        check_fields(obj, name=marked, only=only)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None

# --------------------------------------------------------------------------- the parts


@dataclass
class Schedule:
    """What training does step by step: warm-up, curriculum, learning rates, evaluations."""

    vae_warmup_iters: int = bounded(1200, ge=0)
    """VAE-only iterations on random crops before the main phase."""
    vae_batch_size: int = bounded(256, ge=1)
    """Crops per VAE warm-up iteration."""
    iterations: int = bounded(400, ge=0)
    """Main-phase iterations (whole model, whole sequences)."""
    batch_size: int = bounded(16, ge=1)
    """Sequences per main-phase iteration."""
    seq_len: int = bounded(288, ge=2)
    """Full training sequence length T (memorisation tau + prediction steps)."""
    tau: int = bounded(256, ge=1)
    """Memorisation steps tau of a training sequence."""
    curriculum_start: int = bounded(24, ge=2)
    """Sequence length at the first main-phase iteration."""
    curriculum_iters: int = bounded(300, ge=0)
    """Iterations over which the sequence length grows to seq_len."""
    kl_start: float = bounded(0.1, ge=0, le=1)
    """KL weight at the start of the main phase."""
    kl_warmup_iters: int = bounded(180, ge=0)
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
    eval_every: int = bounded(200, ge=0)
    """Main-phase iterations between held-out evaluations (0: only at the end)."""
    eval_sequences: int = bounded(32, ge=1)
    """Held-out sequences per periodic evaluation."""
    eval_tau: int = bounded(256, ge=1)
    """Memorisation steps of evaluation rollouts."""
    eval_horizon: int = bounded(256, ge=1)
    """Predicted steps of evaluation rollouts."""

    @property
    def total_steps(self) -> int:
        """Optimisation steps of the whole run: the warm-up's and the main phase's."""
        return self.vae_warmup_iters + self.iterations

    def sequence_length(self, iteration: int) -> int:
        """The curriculum: linear growth from curriculum_start to seq_len."""
        if self.curriculum_iters == 0:
            return self.seq_len
        fraction = min(1.0, iteration / self.curriculum_iters)
        return int(round(self.curriculum_start + (self.seq_len - self.curriculum_start) * fraction))

    def kl_weight(self, iteration: int) -> float:
        """The KL terms' weight at main-phase ``iteration``: kl_start ramping to 1."""
        if self.kl_warmup_iters == 0:
            return 1.0
        return min(1.0, self.kl_start + (1.0 - self.kl_start) * iteration / self.kl_warmup_iters)

    def validate(self) -> None:
        _check_bounded(self)
        if self.tau > self.seq_len:
            raise ConfigError(f"`tau` ({self.tau}) must not exceed `seq_len` ({self.seq_len})")
        if self.curriculum_start > self.seq_len:
            raise ConfigError(f"`curriculum_start` ({self.curriculum_start}) must not exceed "
                              f"`seq_len` ({self.seq_len})")


@dataclass
class RunConfig:
    """Where and how a run happens: its folder, device, threads, checkpoints, seed and data."""

    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """Seeds torch, numpy and the training data stream."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:1, ..."""
    threads: int = bounded(1, ge=0)
    """Torch CPU threads (0: torch's default, one per core). 1 by default: this small model gains little from a second thread on a quiet machine and loses badly when another job shares the cores (benchmarks/results/scaling.md)."""
    out_dir: str = "runs/gtmsm"
    """Folder for checkpoint.pt, history.json and evaluation outputs."""
    dataset: str | None = None
    """An .npz written by gtmsm-rollouts, or minari:DATASET_ID (a local Minari dataset), to train on;
    unset: fresh rollouts generated on the fly."""
    image_source: str | None = None
    """Image source for on-the-fly rollouts: a folder or .npz/.npy path; unset: procedural default."""
    resume: bool = False
    """Continue from out_dir/checkpoint.pt if it exists."""
    overwrite: bool = False
    """Start afresh in an out_dir that already holds a run (its checkpoint, logs, metrics and plots are removed)."""
    progress: bool = True
    """Show a tqdm progress bar per training phase (VAE warm-up, main) on stderr."""
    tensorboard: bool = False
    """Also log every step's loss parts and each held-out evaluation to out_dir/tensorboard/ for TensorBoard (needs the tensorboard package); train_log.jsonl is written either way."""
    checkpoint_every: int = bounded(100, ge=1)
    """Iterations (either phase) between checkpoints."""
    data_shards: int = bounded(0, ge=0)
    """Independent rollout streams each batch is split over (0: one per process, i.e. 1 without torchrun). A single process with N reproduces the steps of N DDP processes."""

    def validate(self) -> None:
        _check_bounded(self)
        if not str(self.out_dir).strip():
            raise ConfigError("`out_dir` must name a folder, got ''")
        problem = threads_problem(self.threads, marked("threads"))
        if problem is not None:
            raise ConfigError(problem)
        if self.resume and self.overwrite:
            raise ConfigError("`resume` and `overwrite` contradict each other: pick one")
        if self.tensorboard:
            from gtmsm_model.training_log import tensorboard_problem

            problem = tensorboard_problem()
            if problem is not None:
                raise ConfigError(problem)


# The model settings a run chooses, in the order --help lists them (the other GTMSMConfig fields
# are fixed by the model's design, and crop_size is the world's). Their ranges are GTMSMConfig's.
MODEL_FIELDS: tuple[str, ...] = (
    "z_dim", "vae_hidden", "wall_model", "gate_hidden", "ambiguity_margin", "blocked_prior", "tracker_beam",
    "tracker_retry", "learned_unsure", "loop_closure_threshold",
    "edge_radius", "untried_edges", "refine_steps", "refine_lr", "novel_view", "canvas_radius", "knn_k",
    "pixel_sigma", "state_noise", "gate_open_iters",
)
# The world settings a run chooses: World's fields, and image_width, the setting that makes images
# non-square (the width of World's (height, width) image_size).
WORLD_FIELDS: tuple[str, ...] = WORLD_FLAGS


def setting_bounds(section: str, name: str) -> Bounds | None:
    """The range of flat setting ``name`` of ``section`` ("world" or "model"), declared on its field
    (``image_width``: the range of ``image_size``)."""
    if section == "world":
        return world_flag_bounds(name)
    return field_bounds(next(f for f in dataclasses.fields(GTMSMConfig) if f.name == name))


@dataclass
class TrainConfig:
    """Everything a training run needs: the world, the model, the schedule, the run."""

    world: World = field(default_factory=World)
    model: GTMSMConfig = field(default_factory=GTMSMConfig)
    schedule: Schedule = field(default_factory=Schedule)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str = "quick"
    """Named preset the other fields were taken from."""

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the field for a setting that cannot be trained."""
        from gtmsm_model.presets import PRESETS

        if self.preset not in PRESETS:
            raise ConfigError(f"`preset` must be one of {sorted(PRESETS)}, got {self.preset!r}")
        self.schedule.validate()
        self.run.validate()
        self.check_world()
        if self.model.crop_size != self.world.crop_size:
            raise ConfigError(f"the model reads {self.model.crop_size}-pixel crops but `crop_size` is "
                              f"{self.world.crop_size}")
        _check_bounded(self.model, only=MODEL_FIELDS)
        if self.model.wall_model == "absolute" and self.world.start != "center":
            raise ConfigError("`wall_model` absolute needs `start` center: its gate is a function of the "
                              "absolute state, which means a different cell every episode with random "
                              "starts (use `wall_model` edges)")

    def check_world(self) -> None:
        """The world: the window fits and can move, and the walls' settings fit its grid."""
        world = self.world
        height, width = world.image_shape
        for name, value in (("image_size", height), ("image_width", width), ("crop_size", world.crop_size),
                            ("step_size", world.step_size)):
            _bounds_problem(name, value, setting_bounds("world", name))
        if world.crop_size > height:
            raise ConfigError(f"`crop_size` ({world.crop_size}) must not exceed `image_size` ({height})")
        if world.crop_size > width:
            raise ConfigError(f"`crop_size` ({world.crop_size}) must not exceed `image_width` ({width})")
        if world.start not in ("center", "random"):
            raise ConfigError(f"`start` must be center or random, got {world.start!r}")
        if world.walls not in ("border", "maze"):
            raise ConfigError(f"`walls` must be border or maze, got {world.walls!r}")
        problem = single_position_problem(world.image_size, world.crop_size, world.step_size)
        if problem is not None:
            raise ConfigError(mark_fields(problem, ("crop_size", "step_size")))
        if world.walls == "border" and world.wall_density is not None:
            raise ConfigError("`wall_density` applies only to `walls` maze")
        try:
            self.world = world.validated()
        except (TypeError, ValueError) as error:
            raise ConfigError(f"`wall_density`: {error_text(error)}") from None

    # ----------------------------------------------------------------------- plain data

    def to_dict(self) -> dict[str, Any]:
        """The nested plain-JSON form ``config.json`` and checkpoints store."""
        return {"preset": self.preset, "world": self.world.to_dict(), "model": dataclasses.asdict(self.model),
                "schedule": dataclasses.asdict(self.schedule), "run": dataclasses.asdict(self.run)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (not validated); missing fields take their defaults."""
        return cls(world=World.from_dict(data.get("world", {})), model=GTMSMConfig.from_dict(data.get("model", {})),
                   schedule=Schedule(**data.get("schedule", {})), run=RunConfig(**data.get("run", {})),
                   preset=data.get("preset", "quick"))

    def flat(self) -> dict[str, Any]:
        """Every settable field by its flat (flag) name, plain JSON values (for comparing runs)."""
        return flatten(self.to_dict())


SECTIONS: dict[str, str] = {
    **{name: "world" for name in WORLD_FIELDS},
    **{name: "model" for name in MODEL_FIELDS},
    **{f.name: "schedule" for f in dataclasses.fields(Schedule)},
    **{f.name: "run" for f in dataclasses.fields(RunConfig)},
}
"""Which part each flat (flag) name belongs to."""


# What may differ between a run and its --resume: where and how it runs, not what it computes —
# and the main phase's length, which only says where to stop (a longer run continues the same steps).
RESUMABLE_CHANGES = frozenset({"out_dir", "resume", "overwrite", "progress", "tensorboard", "device",
                               "threads", "checkpoint_every", "iterations"})


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat (flag-named) settings grouped by part (``image_width`` stays a world key: see
    :func:`merge`). Unknown names raise ``ConfigError``."""
    unknown = sorted(set(flat) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown TrainConfig fields: {unknown}")
    parts: dict[str, dict[str, Any]] = {"world": {}, "model": {}, "schedule": {}, "run": {}}
    for name, value in flat.items():
        parts[SECTIONS[name]][name] = value
    return parts


def merge(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with nested ``overrides`` ({"world": {...}, "model": {...}, "schedule": {...},
    "run": {...}, "preset": ...}) applied (not validated).

    In the world part, an int ``image_size`` sets the height and, unless ``image_width`` is given or
    ``base`` is non-square, the width too; ``image_width`` sets the width (``None``: square).
    ``crop_size`` sets the world's and the model's alike."""
    world = dict(overrides.get("world", {}))
    if "image_size" in world or "image_width" in world:
        height, width = base.world.image_shape
        size = world.pop("image_size", height)
        if isinstance(size, (tuple, list)):
            height, width = (int(side) for side in size)
        else:
            width = width if height != width and "image_width" not in world else size
            height = size
        if "image_width" in world:
            width = world.pop("image_width")
            width = height if width is None else width
        world["image_size"] = height if width == height else (height, width)
    new_world = dataclasses.replace(base.world, **world)
    model = {**overrides.get("model", {}), "crop_size": new_world.crop_size}
    return TrainConfig(world=new_world, model=dataclasses.replace(base.model, **model),
                       schedule=dataclasses.replace(base.schedule, **overrides.get("schedule", {})),
                       run=dataclasses.replace(base.run, **overrides.get("run", {})),
                       preset=overrides.get("preset", base.preset))


def make_config(preset: str = "quick", **overrides: Any) -> TrainConfig:
    """A validated TrainConfig: ``preset`` over the defaults, then flat ``overrides`` by field name
    (``z_dim=8``, ``out_dir=...``; unknown names are an error). A ``ConfigError`` names the fields
    (```z_dim```)."""
    from gtmsm_model.presets import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    config = merge(merge(TrainConfig(), {**PRESETS[preset], "preset": preset}), nest(overrides))
    config.validate()
    return config


def flatten(nested: dict[str, Any]) -> dict[str, Any]:
    """A nested config record (:meth:`TrainConfig.to_dict`, or part of one) by flat (flag) names:
    the settable fields it holds, the world's ``image_size`` as ``image_size``/``image_width``."""
    values: dict[str, Any] = {"preset": nested["preset"]} if "preset" in nested else {}
    for part in ("world", "model", "schedule", "run"):
        for name, value in (nested.get(part) or {}).items():
            if SECTIONS.get(name) == part:
                values[name] = value
    if "image_size" in values:
        size = values["image_size"]
        height, width = (size, size) if not isinstance(size, (list, tuple)) else size
        values.update(image_size=height, image_width=None if height == width else width)
    return values

"""Every check a training run can fail, made before any expensive work and before its folder is
touched: the settings, the device, the data shards, the memory it needs, the image source or
dataset (and the world a dataset fixes), and that a resumed checkpoint is this run's.

Its errors name the settings as fields, ```dataset```; an entry point words them with its flags
(:func:`gtmsm_cli.flags.flag_text`).
"""

from __future__ import annotations

from typing import Any

import torch

from gtmsm_cli.checks import memory_problem
from gtmsm_cli.flags import error_text
from gtmsm_env.images import make_image_source
from gtmsm_env.minari_io import load_minari, minari_dataset_id
from gtmsm_env.world import World
from gtmsm_model.checkpoint import check_resumable, load_checkpoint
from gtmsm_model.config import TrainConfig, flatten
from gtmsm_model.data import RolloutSampler
from gtmsm_model.distributed import DistributedContext, Shards
from gtmsm_model.memory import ALL_KEY_CHUNK
from gtmsm_model.model import GTMSMConfig
from gtmsm_model.run_folder import RunFolder


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device; a clear error for a malformed name or CUDA that is not there."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"`device` {name!r} is not a torch device (try cpu, cuda, cuda:1): {error}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"`device` {name}: GTM-SM trains on cpu, cuda or mps devices, not {device.type}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"`device` {name} asked for, but this PyTorch build or machine has no MPS")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"`device` {name} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"`device` {name} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def check_image_source(flag: str, source: str | None, image_size: int | tuple[int, int] = World.image_size) -> None:
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
    """What training holds at once, by the fields that set it: {fields: (what, bytes)} (estimates
    from measurements, kept on the low side)."""
    schedule, crop = config.schedule, config.world.crop_size
    height, width = config.world.image_shape
    pixels, image, z, hidden = crop**2 * 3, height * width * 3, config.model.z_dim, config.model.vae_hidden
    eval_steps = schedule.eval_sequences * (schedule.eval_tau + schedule.eval_horizon)
    train_steps = schedule.batch_size * schedule.seq_len + schedule.vae_batch_size
    pairs = schedule.batch_size * min(ALL_KEY_CHUNK, schedule.seq_len - 1) * schedule.tau
    parameters = 2 * (pixels * hidden + hidden * hidden) + hidden * 3 * z
    return {
        "`z_dim`": ("the codes of every step held", STEP_BYTES_PER_LATENT * z * (train_steps + eval_steps)),
        "`z_dim`/`vae_hidden`": ("the model, its gradients and Adam's state", 16.0 * parameters),
        "`image_size`": ("the images behind a batch and the held-out rollouts",
                         image * (schedule.batch_size + schedule.vae_batch_size + schedule.eval_sequences)),
        "`batch_size`/`seq_len`/`tau`": ("a training batch",
                                         STEP_BYTES_PER_PIXEL * pixels * schedule.batch_size * schedule.seq_len
                                         + PAIR_BYTES * pairs),
        "`vae_batch_size`": ("a warm-up batch", STEP_BYTES_PER_PIXEL * pixels * schedule.vae_batch_size),
        "`eval_sequences`/`eval_tau`/`eval_horizon`": ("the held-out evaluation",
                                                       STEP_BYTES_PER_PIXEL * pixels * eval_steps),
    }


def eval_memory_need(sequences: int, steps: int, world: World, z_dim: int) -> float:
    """Bytes evaluating ``sequences`` held-out rollouts of ``steps`` steps in ``world`` takes (see above)."""
    height, width = world.image_shape
    pixels = world.crop_size**2 * 3
    return sequences * (steps * (STEP_BYTES_PER_PIXEL * pixels + STEP_BYTES_PER_LATENT * z_dim) + height * width * 3)


def check_memory(needs: dict[str, tuple[str, float]], available: float | None = None) -> None:
    """Refuse a run that cannot fit in this machine's memory, naming the keys of ``needs`` (the
    settings) that ask for most."""
    problem = memory_problem(needs, available)
    if problem is not None:
        raise ValueError(problem)


def check_dataset_content(path: str | None, rollouts: Any, model_config: GTMSMConfig) -> None:
    """A ``dataset`` the model can train on: some sequences, actions the model knows."""
    if rollouts.actions.shape[0] == 0:
        raise ValueError(f"`dataset` {path} holds no sequences")
    low, high = int(rollouts.actions.min()), int(rollouts.actions.max())
    if low < 0 or high >= model_config.num_actions:
        raise ValueError(f"`dataset` {path}: actions must lie in [0, {model_config.num_actions}), "
                         f"found {low}..{high}")


def adopt_dataset_world(config: TrainConfig, metadata: dict[str, Any]) -> None:
    """Set ``config.world`` to the world the ``dataset``'s rollouts were collected in, so evaluation
    and provenance describe the dataset's world. A world setting away from its default (a flag or
    a preset) that disagrees with the dataset is an error, not silently dropped."""
    dataset = config.run.dataset
    if config.run.image_source is not None:
        raise ValueError(f"`image_source` and `dataset` {dataset} both given: the dataset's "
                         "rollouts already fix the images (drop one)")
    recorded: dict[str, Any] = {}
    size = metadata.get("image_size")
    if isinstance(size, int) or (isinstance(size, list) and len(size) == 2):
        recorded["image_size"] = size
    for name in ("step_size", "start", "walls"):
        if name in metadata:
            recorded[name] = metadata[name]
    if "walls" in metadata:
        recorded["wall_density"] = metadata.get("wall_density") if metadata["walls"] == "maze" else None
    own = flatten({"world": recorded})
    asked, defaults = flatten({"world": config.world.to_dict()}), flatten({"world": World().to_dict()})
    for name, value in own.items():
        if asked[name] != defaults[name] and asked[name] != value:
            raise ValueError(f"`{name}` {asked[name]} contradicts `dataset` {dataset}, whose rollouts have "
                             f"{name} {value} (with `dataset`, leave the world settings out)")
    if "image_size" in recorded and isinstance(recorded["image_size"], list):
        recorded["image_size"] = tuple(recorded["image_size"])
    config.world = config.world.replace(**recorded)


def make_sampler(config: TrainConfig) -> RolloutSampler:
    """The training data: the run's ``dataset`` (an ``.npz`` file, or ``minari:DATASET_ID`` a
    local Minari dataset), or live rollouts in its world."""
    dataset_id = minari_dataset_id(config.run.dataset)
    if dataset_id is None:
        return RolloutSampler(config.run.seed, dataset=config.run.dataset, image_source=config.run.image_source,
                              world=config.world)
    if not dataset_id:
        raise ValueError("minari: names no dataset; give minari:DATASET_ID, e.g. minari:gtmsm/random-walk-v0")
    try:
        rollouts = load_minari(dataset_id)
    except ImportError as error:  # the optional dependency: the message names the extra
        raise ValueError(str(error)) from None
    return RolloutSampler(config.run.seed, dataset=rollouts, world=config.world)


def run_shards(config: TrainConfig, context: DistributedContext) -> Shards:
    """The data shards of this run in this process layout (batch sizes divide among them)."""
    return Shards.for_run(config.run.data_shards, {"batch_size": config.schedule.batch_size,
                                                   "vae_batch_size": config.schedule.vae_batch_size}, context)


def preflight(config: TrainConfig, claim: bool = True) -> tuple[torch.device, RolloutSampler]:
    """Every check that can fail, before any expensive work and before the out-dir is touched.

    ``claim``: also take the out-dir (refuse a used one, or clear it with ``overwrite``); under DDP
    only rank 0 does.
    """
    config.validate()
    device = resolve_device(config.run.device)
    context = DistributedContext.from_environment()
    run_shards(config, context)
    check_memory(memory_needs(config))
    run, schedule = config.run, config.schedule
    try:  # builds the image source (a folder is decoded here, once) or loads the dataset
        sampler = make_sampler(config)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"{'`dataset`' if run.dataset else '`image_source`'}: {error_text(error)}") from None
    if sampler.max_length is not None and sampler.max_length < schedule.seq_len:
        raise ValueError(f"`dataset` {run.dataset}: sequences have {sampler.max_length} steps, "
                         f"fewer than `seq_len` {schedule.seq_len}")
    if sampler.rollouts is not None:
        check_dataset_content(run.dataset, sampler.rollouts, config.model)
        adopt_dataset_world(config, sampler.rollouts.metadata)
        crop = (config.model.crop_size,) * 2 + (config.model.channels,)
        if tuple(sampler.rollouts.observations.shape[2:]) != crop:
            raise ValueError(
                f"`dataset` {run.dataset} has crops of shape {tuple(sampler.rollouts.observations.shape[2:])}; "
                f"this model reads {crop} crops (write the rollouts with `crop_size` {crop[0]})"
            )
    folder = RunFolder(run.out_dir)
    if run.resume and folder.checkpoint.exists():  # a damaged or foreign checkpoint fails now
        check_resumable(load_checkpoint(folder.checkpoint), config, folder.checkpoint, context.world_size)
    if claim:
        folder.claim(resume=run.resume, overwrite=run.overwrite)
    return device, sampler

"""Checkpoints: atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written with
``torch.save`` to a temporary file in the same folder and then renamed over the target, so an
interrupted write never leaves a half-written checkpoint behind. Loading always uses
``torch.load(weights_only=True)``: no arbitrary object is ever unpickled, and a file that is not
one of ours (corrupt, truncated, foreign) raises ``CheckpointError`` saying what is wrong.

Format version 2 stores the nested training config (``TrainConfig.to_dict()``) as ``train_config``
and the model's full config as ``model_config``. A version-1 checkpoint (a flat ``train_config``,
settings added since then missing) is converted once, on load, by :func:`upgrade_v1`, and every
checkpoint's model state dict is renamed to this code's names by :func:`upgrade_model_state`, so
the model itself loads only current names (strictly).

The training state (model, optimiser, step, RNG, history) is written by :func:`save_state` and
read back by :func:`resume_from`, after :func:`check_resumable` says the checkpoint is this run's.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gtmsm_cli.files import write_bytes
from gtmsm_cli.flags import error_text
from gtmsm_cli.inputs import input_file_problem
from gtmsm_model.config import RESUMABLE_CHANGES, SECTIONS, TrainConfig, flatten
from gtmsm_model.model import GTMSM, GTMSMConfig
from gtmsm_model.wall_models import make_wall_model

CHECKPOINT_FORMAT = "gtmsm-checkpoint"
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("format", "version", "model_config", "model", "step")

# What a version-1 checkpoint that predates a model setting was trained and measured with.
BEFORE_WALL_MODELS = {"wall_model": "absolute", "novel_view": "knn"}  # told by a missing wall_model
BEFORE_SPAN_AND_REFINEMENT = {"untried_edges": "extent", "refine_steps": 0}


class CheckpointError(RuntimeError):
    """The file is missing, unreadable, or not a GTM-SM checkpoint of a version we understand."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format tags) to ``path`` atomically. It is serialised in memory first,
    so a full disk or a refused write is an ``OSError`` naming ``path`` and the reason (torch's own
    writer reports only a byte position)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getbuffer(), what="checkpoint")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; never unpickles arbitrary objects."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the checkpoint file (e.g. {path / 'checkpoint.pt'})")
    problem = input_file_problem(path, "checkpoint")
    if problem is not None:
        raise CheckpointError(problem)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about the objects it refuses; our error says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message goes on to advise weights_only=False: advice we never follow or pass on.
        if "Unsupported global" not in str(error):
            raise CheckpointError(f"{path} is not a readable GTM-SM checkpoint (corrupt, truncated or "
                                  "another format)") from None
        raise CheckpointError(
            f"{path} holds objects other than plain tensors and containers; such files are never "
            "unpickled (it was not written by gtmsm train, or it was tampered with)"
        ) from None
    except Exception as error:  # torch raises several types for truncated/corrupt/foreign files
        raise CheckpointError(
            f"{path} is not a readable GTM-SM checkpoint (corrupt, truncated or another format: "
            f"{type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a GTM-SM checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    if payload.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}; this code reads {CHECKPOINT_VERSION} "
            "(and converts 1)"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is missing {missing}")
    return upgrade(payload)


def upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """A loaded payload of any readable version in this code's form: a version-1 one converted by
    :func:`upgrade_v1`, and the model's state dict under this code's names (:func:`upgrade_model_state`)."""
    payload = upgrade_v1(payload) if payload.get("version") == 1 else dict(payload)
    if isinstance(payload.get("model"), dict):
        payload["model"] = upgrade_model_state(payload["model"], payload.get("model_config") or {})
    return payload


def upgrade_model_state(state: dict[str, torch.Tensor], model_config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``state`` (a checkpoint's model state dict, for the up-to-date ``model_config``) under this
    code's names, the one place older names are mapped: the world-span counts were the model's own
    buffer ``span_counts`` (in version 1 and early version 2) and are now the wall model's
    ``wall_model.span_counts``; a checkpoint from before the world-span prior has none (the span is
    unknown: zero counts), and one from before the wall counts has none of those (zero counts: the
    tracker charges nothing for a wall with the world behind it); the absolute gate keeps no counts.
    A ``model_config`` this code cannot
    build is left for :func:`model_from_checkpoint` to report."""
    try:
        template = make_wall_model(GTMSMConfig.from_dict(model_config)).state_dict()
    except (TypeError, ValueError):
        return state
    state = dict(state)
    legacy = state.pop("span_counts", None)
    if "span_counts" in template:
        state.setdefault("wall_model.span_counts", legacy if legacy is not None else template["span_counts"])
    if "wall_counts" in template:
        state.setdefault("wall_model.wall_counts", template["wall_counts"])
    return state


def upgrade_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """A version-1 payload as version 2: its flat ``train_config`` nested (the settings it records,
    no others), and the settings added since then that it lacks set to what it was trained with
    (the absolute gate and k-NN read-out before the wall models; the extent rule and the encoder's
    mean before the span prior and refined codes)."""
    payload = dict(payload)
    flat = payload.get("train_config")
    if isinstance(flat, dict) and flat:
        flat = {**BEFORE_SPAN_AND_REFINEMENT, **flat}
        nested: dict[str, Any] = {"preset": flat.get("preset")} if "preset" in flat else {}
        for name, value in flat.items():
            if name in SECTIONS and name != "image_width":
                nested.setdefault(SECTIONS[name], {})[name] = value
        world = nested.get("world", {})
        if "image_size" in world and flat.get("image_width") not in (None, world["image_size"]):
            world["image_size"] = [world["image_size"], flat["image_width"]]
        payload["train_config"] = nested
    model = dict(payload.get("model_config") or {})
    if "wall_model" not in model:
        model.update(BEFORE_WALL_MODELS)
    model.pop("blocked_threshold", None)  # an interim name of ambiguity_margin
    if isinstance(flat, dict) and "gate_open_iters" in flat:  # a schedule setting in version 1
        model.setdefault("gate_open_iters", flat["gate_open_iters"])
    payload["model_config"] = {**BEFORE_SPAN_AND_REFINEMENT, **model}
    payload["version"] = CHECKPOINT_VERSION
    return payload


def model_from_checkpoint(payload: dict[str, Any], path: str | Path | None = None) -> GTMSM:
    """Rebuild the model stored in a loaded checkpoint (in eval mode); ``path`` names it in errors."""
    where = f"{path}: " if path is not None else ""
    try:
        model = GTMSM(GTMSMConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["model"])
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{where}checkpoint's model does not match this code: {error}") from None
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise CheckpointError(f"{where}checkpoint's weights are not finite (NaN or inf in {', '.join(broken[:3])}"
                              f"{', ...' if len(broken) > 3 else ''}): the run diverged or the file was altered")
    return model.eval()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> GTMSM:
    """Load a trained GTM-SM from a checkpoint file."""
    return model_from_checkpoint(load_checkpoint(path, map_location), path)


# --------------------------------------------------------------------------- the training state


@dataclass
class TrainState:
    """What a checkpoint holds: the model, its optimiser, how far training got."""

    model: GTMSM
    optimizer: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def save_state(path: Path, state: TrainState, config: TrainConfig, device: torch.device,
               world_size: int = 1) -> None:
    """Write ``state`` and the run's ``config`` to ``path`` (format version 2)."""
    save_checkpoint(path, {
        "model_config": asdict(state.model.config),
        "train_config": config.to_dict(),
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


def _differing(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [name for name in now if name in before and name not in RESUMABLE_CHANGES
            and json.dumps(before[name]) != json.dumps(now[name])]


def check_resumable(payload: dict[str, Any], config: TrainConfig, path: Path, world_size: int = 1) -> None:
    """``path``'s run (a loaded, version-2 payload) is this one: the same settings (all but
    ``RESUMABLE_CHANGES``, each named as a field, ```z_dim```) and the same data shards, so the
    resumed steps are the ones it would have taken. A setting the checkpoint does not record is not
    compared."""
    nested = payload.get("train_config") or {}
    saved = flatten(nested)
    if saved.get("seed") != config.run.seed or saved.get("preset") != config.preset:
        raise CheckpointError(
            f"`resume`: {path} was written by a run with preset={saved.get('preset')!r}, "
            f"seed={saved.get('seed')}; this run has preset={config.preset!r}, seed={config.run.seed}. "
            "Use another `out_dir` or the same settings."
        )
    for what, before, now in (("", saved, config.flat()),
                              (" model", payload.get("model_config", {}), asdict(config.model))):
        differ = _differing(before, now)
        if differ:
            settings = ", ".join(f"`{n}` {before[n]} (this run: {now[n]})" for n in differ)
            raise CheckpointError(f"`resume`: {path} was trained with {settings}; resume with the same{what} "
                                  "settings, or train afresh with `overwrite` or another `out_dir`")
    saved_shards = saved.get("data_shards") or int(payload.get("world_size", 1))
    shards = config.run.data_shards or world_size
    if saved_shards != shards:
        raise CheckpointError(
            f"`resume`: {path} was trained on {saved_shards} data shard(s) ({payload.get('world_size', 1)} "
            f"process(es)); this run has {shards}: resume with the same torchrun --nproc_per_node or "
            "`data_shards`, or the resumed steps would differ")
    step = payload.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"`resume`: {path} records step {step!r}, not a step count")
    if step > config.schedule.total_steps:
        raise CheckpointError(f"`resume`: {path} is at step {step}, past the end of this run "
                              f"(`vae_warmup_iters` {config.schedule.vae_warmup_iters} + `iterations` "
                              f"{config.schedule.iterations}); give at least as many `iterations` to continue it")

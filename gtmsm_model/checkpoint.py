"""Checkpoints: atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written with
``torch.save`` to a temporary file in the same folder and then renamed over the target, so an
interrupted write never leaves a half-written checkpoint behind. Loading always uses
``torch.load(weights_only=True)``: no arbitrary object is ever unpickled, and a file that is not
one of ours (corrupt, truncated, foreign) raises ``CheckpointError`` saying what is wrong.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from gtmsm_model.model import GTMSM, GTMSMConfig
from gtmsm_model.run_folder import umask_mode

CHECKPOINT_FORMAT = "gtmsm-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "model_config", "model", "step")


class CheckpointError(RuntimeError):
    """The file is missing, unreadable, or not a GTM-SM checkpoint of a version we understand."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format tags) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, umask_mode())  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; never unpickles arbitrary objects."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the checkpoint file (e.g. {path / 'checkpoint.pt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
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
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}; this code reads {CHECKPOINT_VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is missing {missing}")
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

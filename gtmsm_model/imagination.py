"""GTM-SM one step at a time: observe a walk, then imagine each further crop from its action.

``GTMSM.predict`` takes a whole sequence. Interactive use (``gtmsm-play --model``) needs the same
prediction one step per key press, without re-running the sequence::

    imagination = Imagination(model, tau=256)
    imagination.observe(first_crop)                 # step 0: s_0 = 0, the reset's action is ignored
    imagination.observe(crop, action)               # ... until tau crops are memorised
    imagined = imagination.imagine(action)          # then: the predicted crop (uint8) and its read-out

``stop_memorising()`` ends memorisation early: the model predicts from the crops memorised so far (any
memory of 1..tau steps is one the model reads; training's curriculum grows tau from a few steps, so
memories shorter than the trained tau are ones it has seen).

Each call is one step of the model's own verbs, ``GTMSM.observe`` (one encode and one state step)
or ``GTMSM.imagine`` (one state step with the wall model, one top-K memory read-out, one decode and,
for a novel view, one canvas read). The result equals ``GTMSM.predict(..., mode="mean")`` on the same
sequence; ``tests/test_imagination.py`` checks that, so a change to the model's internals that this
file does not follow shows up there.

The only model pieces used: ``GTMSM.observe`` and ``GTMSM.imagine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_cli.flags import error_text
from gtmsm_env.world import World
from gtmsm_model.model import GTMSM, WorldMemory

NEAR_KEY_DISTANCE = 0.5
"""A state closer than this to a memory key counts as remembered (moves have unit length, so
this is half a grid cell)."""


@dataclass
class Imagined:
    """One imagined step."""

    crop: np.ndarray
    """The predicted crop, (H, W, C) uint8."""
    nearest_distance: float
    """Distance from the state to its nearest memory key, in units of one move."""
    neighbours: tuple[int, ...]
    """Memorisation steps whose codes were mixed, nearest first."""
    weights: tuple[float, ...]
    """Their mixture weights."""
    from_canvas: bool = False
    """Whether (part of) the crop was read from the model's canvas of decoded memories (a novel view)."""

    @property
    def near_memory(self) -> bool:
        """Whether the model believes it has been here (nearest key within half a move)."""
        return self.nearest_distance < NEAR_KEY_DISTANCE


class Imagination:
    """Incremental GTM-SM: ``observe`` for ``tau`` steps, then ``imagine`` one step per action.

    A thin wrapper over the model's own verbs ``GTMSM.observe`` / ``GTMSM.imagine`` (one step per
    call), so it follows every wall model and novel-view read-out the model has.
    """

    def __init__(self, model: GTMSM, tau: int, k: int | None = None, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tau = tau
        self.k = k or model.config.knn_k
        self.world = World(crop_size=model.config.crop_size)
        """The world the model was trained on (``load_imagination`` reads it from the checkpoint;
        only the crop size is known otherwise)."""
        self.trained_tau: int | None = None
        """The tau the model was trained with (``load_imagination`` reads it; None otherwise)."""
        self.reset()

    @property
    def tau(self) -> int:
        """Memorisation steps of each walk (``stop_memorising`` may end one sooner)."""
        return self._tau

    @tau.setter
    def tau(self, tau: int) -> None:
        if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
            raise ValueError(f"tau must be an int >= 1, got {tau!r}")
        self._tau = tau

    def reset(self) -> None:
        """Forget everything: the next ``observe`` is step 0 of a new walk (memorising ``tau`` steps)."""
        self.steps = 0
        self._memory: WorldMemory | None = None
        self._stopped = False

    def stop_memorising(self) -> None:
        """End this walk's memorisation now: the next step is imagined from the crops memorised so
        far (``memorised`` of them, fewer than ``tau``). No effect once memorisation has ended."""
        if self._memory is None:
            raise RuntimeError("nothing memorised yet: observe the first crop before stopping")
        self._stopped = True

    @property
    def memorised(self) -> int:
        """How many crops are in memory (at most ``tau``)."""
        return 0 if self._memory is None else self._memory.observed

    @property
    def memorising(self) -> bool:
        """Whether the next step is observed (else imagined): fewer than ``tau`` crops memorised and
        memorisation not stopped."""
        return not self._stopped and self.memorised < self.tau

    @property
    def first_predicted_step(self) -> int:
        """The step (0: the reset) whose crop is the first imagined one: ``tau``, or, once
        memorisation has ended, the number of crops memorised."""
        return self.tau if self.memorising else self.memorised

    @property
    def state(self) -> np.ndarray | None:
        """The current spatial state s_t (None before the first observation)."""
        return None if self._memory is None else self._memory.state[0].cpu().numpy().copy()

    @torch.no_grad()
    def observe(self, crop: np.ndarray, action: int | None = None) -> None:
        """Write step t's (state, q(z | crop)) into memory; ``action`` produced this crop."""
        if not self.memorising:
            raise RuntimeError(f"memorisation has ended ({self.memorised} of tau={self.tau} steps memorised); "
                               "call imagine(action) now")
        if self._memory is not None:
            self._check_action(action)
        crop_tensor = torch.as_tensor(np.asarray(crop))[None, None].to(self.device)
        action_tensor = torch.tensor([[0 if action is None else int(action)]], device=self.device)
        self._memory = self.model.observe(crop_tensor, action_tensor, self._memory)
        self.steps += 1

    @torch.no_grad()
    def imagine(self, action: int) -> Imagined:
        """Take ``action`` and predict the crop from the memory alone (the mixture mean)."""
        if self._memory is None or self.memorising:
            raise RuntimeError(f"still memorising ({self.memorised}/{self.tau}); call observe first")
        self._check_action(action)
        prediction, self._memory = self.model.imagine(torch.tensor([[int(action)]], device=self.device),
                                                      self._memory, k=self.k)
        self.steps += 1
        pixels = prediction.pixels[0, 0]
        crop = (pixels * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return Imagined(
            crop=crop,
            nearest_distance=float(prediction.distances[0, 0, 0]),
            neighbours=tuple(int(i) for i in prediction.neighbours[0, 0]),
            weights=tuple(float(w) for w in prediction.log_weights[0, 0].exp()),
            from_canvas=prediction.from_canvas is not None and bool(prediction.from_canvas[0, 0]),
        )

    def _check_action(self, action: int | None) -> None:
        if action is None:
            raise ValueError("every step after the first needs its action")
        if not 0 <= int(action) < self.model.config.num_actions:
            raise ValueError(f"action must lie in [0, {self.model.config.num_actions}), got {action}")


def checkpoint_world(payload: dict[str, Any]) -> World:
    """The world a checkpoint's model was trained on: the ``world`` of its nested ``train_config``
    (``World()``'s settings where it records none; the model's crop if it records no crop size).
    Not validated.

    ``gym.make("ImageNav-v0", **checkpoint_world(payload).env_kwargs())`` shows the model the
    crops, image size and moves it knows. Raises ``CheckpointError`` when the checkpoint
    contradicts itself (its ``train_config`` and model read different crops) or records a size
    that is not a positive integer.
    """
    from gtmsm_model.checkpoint import CheckpointError

    train_config = payload.get("train_config") or {}
    model_config = payload.get("model_config") or {}
    if not isinstance(train_config, dict) or not isinstance(model_config, dict):
        raise CheckpointError("the checkpoint's train_config/model_config are not mappings")
    recorded = train_config.get("world") or {}
    try:
        world = World.from_dict(recorded)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's train_config has an unreadable world: {error_text(error)}") from None

    def size(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"the checkpoint's train_config has {name}={value!r}, not a positive integer")
        return int(value)

    model_crop = size("model crop_size", model_config.get("crop_size", World().crop_size))
    crop = size("crop_size", world.crop_size if "crop_size" in recorded else model_crop)
    if crop != model_crop:
        raise CheckpointError(f"the checkpoint's train_config says {crop}x{crop} crops but its model reads "
                              f"{model_crop}x{model_crop}")
    if isinstance(world.image_size, tuple) and len(world.image_size) == 2:
        height, width = (size(name, side) for name, side in zip(("image_size", "image_width"), world.image_size, strict=True))
    else:
        height = width = size("image_size", world.image_size)
    return world.replace(image_size=height if width == height else (height, width), crop_size=crop,
                         step_size=size("step_size", world.step_size))


def world_text(world: World) -> str:
    """``40x40 images, 12x12 crops, step 4``."""
    height, width = world.image_shape
    return f"{height}x{width} images, {world.crop_size}x{world.crop_size} crops, step {world.step_size}"


def load_imagination(checkpoint: str | Path, tau: int | None = None, device: str = "cpu") -> Imagination:
    """An ``Imagination`` from a training checkpoint; ``tau`` defaults to the run's own tau.

    Its ``world`` is the :class:`~gtmsm_env.world.World` the model was trained on
    (:func:`checkpoint_world`): play and measure it in ``gym.make("ImageNav-v0",
    **imagination.world.env_kwargs())``.
    Raises ``gtmsm_model.checkpoint.CheckpointError`` for a file that is not a usable checkpoint
    and ``ValueError``/``RuntimeError`` for a device that is not there (``train.resolve_device``).
    """
    from gtmsm_model.checkpoint import load_checkpoint, model_from_checkpoint
    from gtmsm_model.train import resolve_device

    target = resolve_device(device)
    payload = load_checkpoint(checkpoint, map_location=target)
    model = model_from_checkpoint(payload)
    world = checkpoint_world(payload)
    trained_tau = checkpoint_tau(payload)
    imagination = Imagination(model, trained_tau if tau is None else tau, device=target)
    imagination.world = world
    imagination.trained_tau = trained_tau
    return imagination


def checkpoint_tau(payload: dict[str, Any]) -> int:
    """The tau a checkpoint's model was trained with (``Schedule``'s default where it records none)."""
    from gtmsm_model.checkpoint import CheckpointError
    from gtmsm_model.config import Schedule, flatten

    tau = flatten(payload.get("train_config") or {}).get("tau", Schedule.tau)
    if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
        raise CheckpointError(f"the checkpoint's train_config has tau={tau!r}, not a positive integer")
    return tau

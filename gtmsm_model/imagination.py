"""GTM-SM one step at a time: observe a walk, then imagine each further crop from its action.

``GTMSM.predict`` takes a whole sequence. Interactive use (``gtmsm-play --model``) needs the same
prediction one step per key press, without re-running the sequence::

    imagination = Imagination(model, tau=256)
    imagination.observe(first_crop)                 # step 0: s_0 = 0, the reset's action is ignored
    imagination.observe(crop, action)               # ... until tau crops are memorised
    imagined = imagination.imagine(action)          # then: the predicted crop (uint8) and its read-out

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

import numpy as np
import torch

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
        if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
            raise ValueError(f"tau must be an int >= 1, got {tau!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tau = tau
        self.k = k or model.config.knn_k
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``observe`` is step 0 of a new walk."""
        self.steps = 0
        self._memory: WorldMemory | None = None

    @property
    def memorised(self) -> int:
        """How many crops are in memory (at most ``tau``)."""
        return 0 if self._memory is None else self._memory.observed

    @property
    def memorising(self) -> bool:
        return self.memorised < self.tau

    @property
    def state(self) -> np.ndarray | None:
        """The current spatial state s_t (None before the first observation)."""
        return None if self._memory is None else self._memory.state[0].cpu().numpy().copy()

    @torch.no_grad()
    def observe(self, crop: np.ndarray, action: int | None = None) -> None:
        """Write step t's (state, q(z | crop)) into memory; ``action`` produced this crop."""
        if not self.memorising:
            raise RuntimeError(f"memory is full ({self.tau} steps); call imagine(action) now")
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


def load_imagination(checkpoint: str | Path, tau: int | None = None, device: str = "cpu") -> Imagination:
    """An ``Imagination`` from a training checkpoint; ``tau`` defaults to the run's own tau.

    Raises ``gtmsm_model.checkpoint.CheckpointError`` for a file that is not a usable checkpoint.
    """
    from gtmsm_model.checkpoint import load_checkpoint, model_from_checkpoint
    from gtmsm_model.train import resolve_device

    target = resolve_device(device)
    payload = load_checkpoint(checkpoint, map_location=target)
    model = model_from_checkpoint(payload)
    if tau is None:
        tau = int(payload.get("train_config", {}).get("tau", 256))
    return Imagination(model, tau, device=target)

"""GTM-SM one step at a time: observe a walk, then imagine each further crop from its action.

``GTMSM.predict`` takes a whole sequence. Interactive use (``gtmsm-play --model``) needs the same
prediction one step per key press, without re-running the sequence::

    imagination = Imagination(model, tau=256)
    imagination.observe(first_crop)                 # step 0: s_0 = 0, the reset's action is ignored
    imagination.observe(crop, action)               # ... until tau crops are memorised
    imagined = imagination.imagine(action)          # then: the predicted crop (uint8) and its read-out

Each call costs one transition step plus one encode (``observe``) or one top-K memory read-out and
one decode (``imagine``). The result equals ``GTMSM.predict(..., mode="mean")`` on the same
sequence; ``tests/test_imagination.py`` checks that, so a change to the model's internals that this
file does not follow shows up there.

The only model pieces used: ``vae.encode``/``vae.decode``, ``transition.action_matrix``/``gate``,
and the memory read-out helpers ``nearest_keys``/``memory_log_weights``/``gather_memory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gtmsm_model.model import GTMSM, Gaussian, gather_memory, memory_log_weights, nearest_keys

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

    @property
    def near_memory(self) -> bool:
        """Whether the model believes it has been here (nearest key within half a move)."""
        return self.nearest_distance < NEAR_KEY_DISTANCE


class Imagination:
    """Incremental GTM-SM: ``observe`` for ``tau`` steps, then ``imagine`` one step per action."""

    def __init__(self, model: GTMSM, tau: int, k: int | None = None) -> None:
        if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
            raise ValueError(f"tau must be an int >= 1, got {tau!r}")
        self.model = model.eval()
        self.tau = tau
        self.k = k or model.config.knn_k
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``observe`` is step 0 of a new walk."""
        self.steps = 0
        self._state: Tensor | None = None
        self._keys: list[Tensor] = []
        self._means: list[Tensor] = []
        self._log_stds: list[Tensor] = []
        self._memory: tuple[Tensor, Gaussian] | None = None
        with torch.no_grad():
            self._moves = self.model.transition.action_matrix()  # (num_actions, s_dim)

    @property
    def memorised(self) -> int:
        """How many crops are in memory (at most ``tau``)."""
        return len(self._keys)

    @property
    def memorising(self) -> bool:
        return self.memorised < self.tau

    @property
    def state(self) -> np.ndarray | None:
        """The current spatial state s_t (None before the first observation)."""
        return None if self._state is None else self._state[0].numpy().copy()

    @torch.no_grad()
    def observe(self, crop: np.ndarray, action: int | None = None) -> None:
        """Write step t's (state, q(z | crop)) into memory; ``action`` produced this crop."""
        if not self.memorising:
            raise RuntimeError(f"memory is full ({self.tau} steps); call imagine(action) now")
        self._advance(action)
        pixels = self.model.to_pixels(torch.as_tensor(np.asarray(crop))[None])
        posterior = self.model.vae.encode(pixels)
        assert self._state is not None
        self._keys.append(self._state)
        self._means.append(posterior.mean)
        self._log_stds.append(posterior.log_std)
        if not self.memorising:
            self._memory = (
                torch.stack(self._keys, 1),  # (1, tau, S)
                Gaussian(torch.stack(self._means, 1), torch.stack(self._log_stds, 1)),
            )

    @torch.no_grad()
    def imagine(self, action: int) -> Imagined:
        """Take ``action`` and predict the crop from the memory alone (the mixture mean)."""
        if self._memory is None:
            raise RuntimeError(f"still memorising ({self.memorised}/{self.tau}); call observe first")
        self._advance(action)
        keys, values = self._memory
        query = self._state[:, None]  # (1, 1, S)
        distances, indices = nearest_keys(query, keys, self.k)  # (1, 1, K)
        log_weights = memory_log_weights(distances.square(), self.model.config.delta)
        chosen = gather_memory(values, indices)  # (1, 1, K, Z)
        z = (log_weights.exp().unsqueeze(-1) * chosen.mean).sum(-2)
        pixels = self.model.vae.decode(z)[0, 0]
        crop = (pixels * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
        return Imagined(
            crop=crop,
            nearest_distance=float(distances[0, 0, 0]),
            neighbours=tuple(int(i) for i in indices[0, 0]),
            weights=tuple(float(w) for w in log_weights[0, 0].exp()),
        )

    def _advance(self, action: int | None) -> None:
        # The transition of StateTransition.forward for one step, eval mode (no noise).
        if self._state is None:
            self._state = self._moves.new_zeros(1, self._moves.shape[1])  # s_0 = 0
        else:
            if action is None:
                raise ValueError("every step after the first needs its action")
            if not 0 <= int(action) < self._moves.shape[0]:
                raise ValueError(f"action must lie in [0, {self._moves.shape[0]}), got {action}")
            move = self._moves[int(action)][None]
            gate = self.model.transition.gate(self._state + move)
            self._state = self._state + move * gate.unsqueeze(-1)
        self.steps += 1


def load_imagination(checkpoint: str | Path, tau: int | None = None) -> Imagination:
    """An ``Imagination`` from a training checkpoint; ``tau`` defaults to the run's own tau.

    Raises ``gtmsm_model.checkpoint.CheckpointError`` for a file that is not a usable checkpoint.
    """
    from gtmsm_model.checkpoint import load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(checkpoint)
    model = model_from_checkpoint(payload)
    if tau is None:
        tau = int(payload.get("train_config", {}).get("tau", 256))
    return Imagination(model, tau)

"""What GTM-SM's verbs hand back: ``WorldMemory`` (the state ``observe`` / ``imagine`` carry from call
to call) and ``Prediction`` (what ``imagine`` / ``predict`` say about the predicted steps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from gtmsm_model.canvas import Canvas
from gtmsm_model.memory import EdgeMemory, Gaussian


@dataclass
class Prediction:
    """What GTM-SM predicts for the steps t >= tau of a batch of sequences."""

    pixels: Tensor  # (B, T - tau, H, W, C) in [0, 1]
    states: Tensor  # (B, T, s_dim), all steps
    gates: Tensor  # (B, T): 1 where the move went through (inferred before tau, decided after)
    neighbours: Tensor  # (B, T - tau, K) indices of the memory keys used, nearest first
    log_weights: Tensor  # (B, T - tau, K)
    distances: Tensor | None = None  # (B, T - tau, K) to those keys
    from_canvas: Tensor | None = None  # (B, T - tau) bool: the crop was (partly) read from the canvas
    values: Gaussian | None = None  # (B, M, Z) the memorised codes ``neighbours`` index


@dataclass
class WorldMemory:
    """Everything GTM-SM knows about one batch of walks so far (the state of observe / imagine).

    keys / values: the key memory (states and posteriors of the observed steps); edges: the edge
    memory; visited: every state so far, observed and imagined (the extent prior reads it);
    state: the current s_t. ``observed_pixels`` / ``observed_actions`` / ``moved`` keep what
    the canvas needs to estimate the pixel map (and ``best_shifts`` what the wall model already
    measured of it while observing). Caches are rebuilt when new steps are observed.
    """

    keys: Tensor  # (B, M, S)
    values: Gaussian  # (B, M, Z)
    edges: EdgeMemory
    visited: Tensor  # (B, N, S)
    state: Tensor  # (B, S)
    observed_pixels: Tensor  # (B, M, H, W, C)
    observed_actions: Tensor  # (B, M)
    moved: Tensor  # (B, M) bool: a move that went through (not stay, not blocked)
    gates: Tensor  # (B, N): 1 where the move went through, all steps so far
    steps: int = 0
    best_shifts: Tensor | None = None  # (B, M-1): each observed step's best-aligning pixel shift, if measured
    _canvas_cache: tuple[int, Tensor, Tensor, Canvas | None] | None = field(default=None, repr=False)

    @property
    def observed(self) -> int:
        return self.keys.shape[1]

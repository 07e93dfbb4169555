"""GTM-SM's settings: the architecture, the wall model, the memory read-out and the loss.

``GTMSMConfig`` is plain data (checkpoints store ``dataclasses.asdict`` of it, ``from_dict`` reads it
back); the model itself is :class:`gtmsm_model.model.GTMSM`. The actions are the environment's
(:class:`gtmsm_env.world.Action`), stored as plain ints so a checkpoint holds no enum.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gtmsm_cli.flags import bounded
from gtmsm_env.world import NUM_ACTIONS, Action
from gtmsm_model.wall_models import WALL_MODELS

NOVEL_VIEWS = ("canvas", "knn")
UNTRIED_EDGES = ("span", "extent")


@dataclass
class GTMSMConfig:
    """Architecture and loss hyperparameters of GTM-SM. The defaults are the ``quick`` preset's.

    A field a run may choose states its range once, with ``bounded`` (the ``gtmsm`` flags and
    ``TrainConfig.validate`` read it there)."""

    crop_size: int = 8
    """Side of the square observation crop, in pixels."""
    channels: int = 3
    """Colour channels of the crop."""
    z_dim: int = bounded(128, ge=1)
    """Size of the VAE latent z_t."""
    vae_hidden: int = bounded(512, ge=1)
    """Width of the VAE's hidden layers."""
    s_dim: int = 2
    """Size of the spatial state s_t."""
    wall_model: str = "edges"
    """How walls stop moves: "edges" (blocked moves read off the observations by a pixel-shift rule,
    an edge memory when imagining; any start, walls anywhere), "learned" (an inference network
    q(moved | x_{t-1}, x_t, a_t) trained by the GTM-SM objective; any start) or "absolute" (the
    original formulation's learned gate of the absolute state; needs a fixed start)."""
    gate_hidden: int = bounded(32, ge=1)
    """Width of the absolute wall gate's hidden layers (wall_model "absolute")."""
    gate_init_bias: float = 3.0
    """Initial bias of the gate's output logit: sigmoid(3) ≈ 0.95, so every move starts open."""
    gate_open_iters: int = bounded(100, ge=0)
    """Main-phase training iterations with the absolute gate held open (every move succeeds), so M
    first learns which way each action points (wall_model "absolute")."""
    ambiguity_margin: float = bounded(1e-5, ge=0)
    """A move whose two explanations ("the view stayed", "the view slid by the action's shift") fit
    the crop to within this mean squared error (pixels in [0, 1]) is ambiguous: left undecided for the
    multi-hypothesis tracker (wall_model "edges")."""
    blocked_prior: float = bounded(0.25, gt=0, lt=1)
    """The prior probability that a move is blocked (most moves are free): the lean of a move the
    views cannot decide, which the multi-hypothesis tracker pays -log p for (wall_model "edges")."""
    tracker_beam: int = bounded(64, ge=1, le=1024)
    """Hypotheses the multi-hypothesis tracker keeps while it branches on the undecided moves of a walk
    (``localisation.track_moves``; wall_models "edges" and "learned")."""
    tracker_retry: int = bounded(8, ge=1, le=16)
    """The most searches the multi-hypothesis tracker makes on a walk, each restart with its leans jittered,
    and the cheapest map kept; it stops early once that map has no conflict (two views that cannot both
    be right) and a second search found it again (1: one search, never a restart)."""
    learned_unsure: float = bounded(0.02, gt=0, lt=0.5)
    """wall_model "learned": the localiser's probability, as the tracker's lean on each move, is kept at
    least this far from 0 and 1, so that what the views say (a conflict costs 50 nats) overrules it."""
    loop_closure_threshold: float = bounded(1e-6, ge=0)
    """Two crops differ by more than this mean squared error (plus twice the noise variance
    measured on stay steps) count as different views when the multi-hypothesis tracker scores a hypothesis (the same
    cell gives the same crop exactly, up to noise; smooth photos put neighbouring cells ~1e-5 apart)."""
    edge_radius: float = bounded(0.25, gt=0)
    """A remembered edge within this distance of a move's midpoint decides that move (state units;
    a move has length 1, so neighbouring edges' midpoints are ≥ 0.7 apart)."""
    untried_edges: str = "span"
    """How an edge never tried is decided while imagining (wall_model "edges"): "extent" (blocked iff
    the target lies beyond everything visited along the move's direction) or "span" (the same, except
    that a walk which saw less than the world's span along that axis — learned from the training
    walks — and bumped into the wall on the far side is let through; assumes the worlds predicted in
    are as wide as those trained in)."""
    refine_steps: int = bounded(10, ge=0, le=10_000)
    """Gradient steps that refine each memorised code: the encoder's mean is the starting point, then
    Adam on -log p(x | z) - log p(z) (the posterior's mode) — semi-amortised inference. The decoder
    reproduces a crop much better from the refined code (reconstruction MSE 0.3–0.4× the encoder's), which
    sharpens every memory read-out and the canvas. 0: the encoder's mean, as in the paper."""
    refine_lr: float = bounded(0.1, gt=0)
    """Adam step size of that refinement (latent units)."""
    novel_view: str = "canvas"
    """How a state far from every key is predicted: "canvas" (decoded memories pasted at their
    pixel offsets, k-NN blend where the canvas has no pixel) or "knn" (the k-NN blend alone)."""
    canvas_radius: float = bounded(0.0, ge=0)
    """With novel_view "canvas", a query farther than this from its nearest key reads the canvas
    (where the canvas has pixels). 0: every query does — averaging the overlapping decoded crops
    is sharper than one decoded crop, so this also lowers the error on revisited steps."""
    num_actions: int = NUM_ACTIONS
    """Number of discrete actions (the env's)."""
    stay_action: int = int(Action.STAY)
    """The no-op action; its vector is fixed at zero."""
    opposite_actions: tuple[tuple[int, int], ...] = ((int(Action.UP), int(Action.DOWN)),
                                                     (int(Action.LEFT), int(Action.RIGHT)))
    """Pairs (a, b) of actions that undo each other; a's vector is tied to minus b's."""
    state_noise: float = bounded(0.0, ge=0)
    """Std of the transition noise eps_t added while training (0: deterministic states)."""
    knn_k: int = bounded(5, ge=1)
    """Neighbours K of the memory prior at prediction time."""
    delta: float = 1e-4
    """Stabiliser of the mixture weights 1 / (d^2 + delta)."""
    pixel_sigma: float = bounded(0.007, gt=0)
    """Std of the Gaussian pixel likelihood p(x_t | z_t), pixels in [0, 1] (0.007: sharper codes than
    0.01, reconstruction MSE ~15 % lower on photos; 0.005 is worse again within the quick budget)."""

    def __post_init__(self) -> None:
        self.opposite_actions = tuple(tuple(int(a) for a in pair) for pair in self.opposite_actions)
        moving = [a for pair in self.opposite_actions for a in pair]
        if any(len(pair) != 2 for pair in self.opposite_actions):
            raise ValueError(f"opposite_actions must be pairs, got {self.opposite_actions}")
        if sorted(moving + [self.stay_action]) != list(range(self.num_actions)):
            raise ValueError(
                f"every action must be either the stay action or in exactly one opposite pair; "
                f"got stay_action={self.stay_action}, opposite_actions={self.opposite_actions} "
                f"for num_actions={self.num_actions}"
            )
        for name in ("crop_size", "channels", "z_dim", "vae_hidden", "s_dim", "gate_hidden", "knn_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.delta <= 0 or self.pixel_sigma <= 0 or self.state_noise < 0:
            raise ValueError("delta and pixel_sigma must be > 0 and state_noise >= 0")
        if self.wall_model not in WALL_MODELS:
            raise ValueError(f"wall_model must be one of {tuple(WALL_MODELS)}, got {self.wall_model!r}")
        if self.gate_open_iters < 0:
            raise ValueError(f"gate_open_iters must be >= 0, got {self.gate_open_iters}")
        if self.untried_edges not in UNTRIED_EDGES:
            raise ValueError(f"untried_edges must be one of {UNTRIED_EDGES}, got {self.untried_edges!r}")
        if self.refine_steps < 0 or self.refine_lr <= 0:
            raise ValueError("refine_steps must be >= 0 and refine_lr > 0")
        if self.novel_view not in NOVEL_VIEWS:
            raise ValueError(f"novel_view must be one of {NOVEL_VIEWS}, got {self.novel_view!r}")
        if min(self.ambiguity_margin, self.loop_closure_threshold, self.canvas_radius) < 0 or self.edge_radius <= 0:
            raise ValueError("ambiguity_margin, loop_closure_threshold and canvas_radius must be >= 0, edge_radius > 0")

    @property
    def pixels(self) -> int:
        return self.crop_size * self.crop_size * self.channels

    @classmethod
    def from_dict(cls, saved: dict) -> GTMSMConfig:
        """The inverse of ``dataclasses.asdict`` (a checkpoint's ``model_config``, JSON lists for
        tuples). Missing fields take their defaults; an unknown one raises ``ValueError`` naming it.
        Older checkpoints are brought up to date before this, by ``checkpoint.upgrade_v1``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - names)
        if unknown:
            raise ValueError(f"unknown GTMSMConfig fields {unknown}")
        return cls(**saved)

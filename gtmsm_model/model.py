"""GTM-SM: a generative temporal model with a spatial memory (Fraccaro et al., ICML 2018).

Two sets of latents disentangle *what* is seen from *where* the agent is:

* a VAE over crops: q(z_t | x_t) and p(x_t | z_t); the codes written into memory start at the
  encoder's mean and take a few gradient steps towards the posterior's mode (``refine_steps``,
  semi-amortised inference: the decoder reproduces a crop from the refined code with 0.3–0.4×
  the error; ``reconstruct`` uses the same codes, so the VAE floor is that of the codes memory holds);
* a 2-D (configurable) state s_t, s_0 = 0, moved by the actions: ``s_t = s_{t-1} + M a_t`` unless
  the move was blocked by a wall. Whether it was is the *wall model*'s (``wall_models.py``,
  ``GTMSMConfig.wall_model``): "edges" (default; blocked moves read off the observations, an
  edge memory and an extent/span prior while imagining; any start, walls anywhere) or
  "absolute" (the original formulation's learned sigmoid gate of the absolute state; needs a fixed start);
* a key memory (a differentiable neural dictionary) of (s_t, q(z_t | x_t)) pairs written during
  the memorisation steps t < tau, read through a nearest-neighbour mixture prior
  ``p(z_t | s_t, m) = sum_k w_k N(z_t | mu_k, sigma_k^2)`` with ``w_k ∝ 1 / (d_k^2 + delta)``;
* for a state far from every key (a novel view), optionally a *canvas*: the decoded memorised
  crops pasted at their pixel offsets A·s_k, read at A·s_t (``novel_view="canvas"``).

The memories and their math live in ``memory.py`` and ``canvas.py``, the crop VAE in ``vae.py``,
the move vectors and the wall models in ``wall_models.py``. This file holds the config and the
model's verbs: ``loss`` (training), ``observe`` / ``imagine`` (incremental, dreamerv3-style:
write observed steps into memory, then predict step by step from actions alone), ``predict``
(both at once), ``reconstruct``, and the trainer's hooks ``set_iteration`` (the wall model's
warm-up) and ``count_spans`` (what the wall model learns from the training walks). Training
schedules live in ``train.py``, metrics in ``evaluate.py``; nothing here does I/O.

Tensor conventions: observations are ``(B, T, H, W, C)`` uint8 exactly as the environment emits
them; ``actions[:, t]`` is the action whose step produced ``observations[:, t]`` (``actions[:, 0]``
is the reset and is ignored, since s_0 = 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from gtmsm_cli.flags import bounded
from gtmsm_model.canvas import (
    Canvas,
    compose_canvas,
    estimate_pixel_map,
    read_canvas,
    to_pixel_offsets,
)
from gtmsm_model.memory import (
    EdgeMemory,
    Gaussian,
    all_key_memory_kl,
    cat_gaussians,
    gather_memory,
    gaussian_kl,
    memory_log_weights,
    mixture_kl_bound,
    nearest_keys,
    pairwise_gaussian_kl,
    read_key_memory,
)
from gtmsm_model.vae import CropVAE
from gtmsm_model.wall_models import (
    SPAN_BINS,
    WALL_MODELS,
    StateTransition,
    WallModel,
    make_wall_model,
)
from gtmsm_model.world_memory import Prediction, WorldMemory

__all__ = [
    "GTMSM", "GTMSMConfig", "CropVAE", "StateTransition", "WallModel", "WALL_MODELS", "SPAN_BINS", "Prediction",
    "WorldMemory", "Gaussian",
    "gaussian_kl", "pairwise_gaussian_kl", "mixture_kl_bound", "memory_log_weights", "nearest_keys",
    "gather_memory",
]

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
    """How walls stop moves: "edges" (blocked moves inferred from the observations, an edge memory
    when imagining; any start, walls anywhere) or "absolute" (the original formulation's
    learned gate of the absolute state; needs a fixed start)."""
    gate_hidden: int = bounded(32, ge=1)
    """Width of the absolute wall gate's hidden layers (wall_model "absolute")."""
    gate_init_bias: float = 3.0
    """Initial bias of the gate's output logit: sigmoid(3) ≈ 0.95, so every move starts open."""
    gate_open_iters: int = bounded(100, ge=0)
    """Main-phase training iterations with the absolute gate held open (every move succeeds), so M
    first learns which way each action points (wall_model "absolute")."""
    ambiguity_margin: float = bounded(1e-5, ge=0)
    """A move whose two explanations ("the view stayed", "the view slid by the action's shift") fit
    the crop to within this mean squared error (pixels in [0, 1]) is ambiguous: decided by loop
    closure instead (wall_model "edges")."""
    loop_closure_threshold: float = bounded(1e-6, ge=0)
    """Two crops differ by more than this mean squared error (plus twice the noise variance
    measured on stay steps) count as different views when loop closure decides a move (the same
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
    num_actions: int = 5
    """Number of discrete actions."""
    stay_action: int = 0
    """The no-op action; its vector is fixed at zero."""
    opposite_actions: tuple[tuple[int, int], ...] = ((1, 2), (3, 4))
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


# --------------------------------------------------------------------------- modules


class GTMSM(nn.Module):
    """The full model: VAE + state transition + memories, with its loss and its verbs."""

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = CropVAE(config)
        self.transition = StateTransition(config)
        self.wall_model: WallModel = make_wall_model(config)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The one place where an older checkpoint's names are mapped: the world-span counts were the
        # model's own buffer ``span_counts`` and are now the edge wall model's; checkpoints from before
        # the world-span prior have none (the span is unknown); the absolute gate keeps no counts.
        legacy = state_dict.pop(prefix + "span_counts", None)
        counts = getattr(self.wall_model, "span_counts", None)
        if counts is not None:
            state_dict.setdefault(prefix + "wall_model.span_counts",
                                  legacy if legacy is not None else torch.zeros_like(counts))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def world_span(self) -> Tensor | None:
        """(P,) the world's span along each lattice axis in moves, as the wall model learned it from
        the training walks (None when it learns none, or before any walk was counted)."""
        return self.wall_model.world_span()

    # ------------------------------------------------------------------ the trainer's hooks

    def set_iteration(self, iteration: int) -> None:
        """The main-phase training iteration about to run (0, 1, ...): the wall model's warm-up schedule."""
        self.wall_model.set_iteration(iteration)

    def count_spans(self, states: Tensor, reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """Let the wall model learn from training walks: ``states`` (B, T, S) as ``loss_and_states``
        returns them. ``reduce`` sums over processes under DDP (``DistributedContext.sum``)."""
        self.wall_model.count_spans(self.transition, states, reduce)

    @staticmethod
    def to_pixels(observations: Tensor) -> Tensor:
        """uint8 observations → float pixels in [0, 1] (float input is checked and passed on)."""
        if observations.dtype == torch.uint8:
            return observations.float() / 255.0
        if not observations.is_floating_point():
            raise TypeError(f"observations must be uint8 or float in [0, 1], got {observations.dtype}")
        return observations

    def check_inputs(self, observations: Tensor, actions: Tensor) -> None:
        c = self.config
        expected = (c.crop_size, c.crop_size, c.channels)
        if observations.dim() != 5 or tuple(observations.shape[2:]) != expected:
            raise ValueError(
                f"observations must have shape (batch, time, {c.crop_size}, {c.crop_size}, "
                f"{c.channels}), got {tuple(observations.shape)}"
            )
        if actions.dim() != 2 or actions.shape[0] != observations.shape[0]:
            raise ValueError(
                f"actions must have shape (batch, time) = ({observations.shape[0]}, T), "
                f"got {tuple(actions.shape)}"
            )
        self.check_actions(actions)

    def check_actions(self, actions: Tensor) -> None:
        c = self.config
        if actions.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"actions must be an integer tensor, got {actions.dtype}")
        if actions.numel() and (actions.min() < 0 or actions.max() >= c.num_actions):
            raise ValueError(f"actions must lie in [0, {c.num_actions}), got {actions.min()}..{actions.max()}")

    # ------------------------------------------------------------------ states

    def infer_states(self, pixels: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """States (B, T, S) and gates (B, T) of an *observed* walk, pixels (B, T, H, W, C) in [0, 1],
        as the wall model infers them (``WallModel.infer``). Step 0 is the reset: s_0 = 0, gate 1."""
        walk = self.wall_model.infer(self.transition, pixels, actions.long())
        return walk.states, walk.gates

    # ------------------------------------------------------------------ training

    def vae_loss(self, pixels: Tensor, kl_weight: float = 1.0) -> dict[str, Tensor]:
        """Plain VAE objective (prior N(0, I)) on a batch of crops (..., H, W, C) in [0, 1]."""
        c = self.config
        if pixels.dim() < 3 or tuple(pixels.shape[-3:]) != (c.crop_size, c.crop_size, c.channels):
            raise ValueError(
                f"crops must have shape (..., {c.crop_size}, {c.crop_size}, {c.channels}), "
                f"got {tuple(pixels.shape)}"
            )
        posterior = self.vae.encode(pixels)
        decoded = self.vae.decode(posterior.rsample())
        nll = -self.vae.log_likelihood(pixels, decoded).mean()
        kl = posterior.kl_to_standard_normal().mean()
        return {"loss": nll + kl_weight * kl, "nll": nll, "kl_prior": kl,
                "mse": (decoded - pixels).square().mean()}

    def loss(self, observations: Tensor, actions: Tensor, tau: int, *, kl_weight: float = 1.0,
             memory_kl_weight: float = 1.0) -> dict[str, Tensor]:
        """The training objective, averaged per step, and its parts (see ``loss_and_states``)."""
        return self.loss_and_states(observations, actions, tau, kl_weight=kl_weight,
                                    memory_kl_weight=memory_kl_weight)[0]

    def loss_and_states(self, observations: Tensor, actions: Tensor, tau: int, *, kl_weight: float = 1.0,
                        memory_kl_weight: float = 1.0) -> tuple[dict[str, Tensor], Tensor]:
        """The training objective, averaged per step, with its parts; and the walks' states (B, T, S)
        as the wall model inferred them (before transition noise), for ``count_spans``.

        Every step t pays the reconstruction term -E_q[log p(x_t | z_t)]. Step t then pays the
        KL from q(z_t | x_t) to the memory prior built from the keys written *before* it:
        j < t during memorisation (t < tau) and all j < tau afterwards (eq. 2 of the GTM-SM paper, Fraccaro et al., ICML 2018;
        docs/model.md).
        Memorisation steps also pay KL(q ‖ N(0, I)) so the codes stay a well-behaved VAE.

        Two choices make this train from scratch (see train.py for the schedule):
        * the memory loss on the memorisation phase gives the state map a signal from the very
          first steps of a sequence (only prediction steps was too sparse a signal);
        * in training the prior mixes over *all* usable keys (w ∝ 1 / (d^2 + delta)), not the
          top K: early on the true match is usually outside the K nearest and a top-K gradient
          pulls towards look-alikes. Prediction uses the top K, as in the paper.
        The mixture KL uses the bound of ``mixture_kl_bound``. Training sees every observation,
        so with wall_model "edges" the states of all steps come from the inferred blocked moves.
        Nothing here changes the model: the trainer passes the states on to ``count_spans``.
        """
        self.check_inputs(observations, actions)
        if not 1 <= tau <= observations.shape[1]:
            raise ValueError(f"tau must lie in [1, T={observations.shape[1]}], got {tau}")
        pixels = self.to_pixels(observations)
        steps = pixels.shape[1]
        posterior = self.vae.encode(pixels)  # (B, T, Z)
        decoded = self.vae.decode(posterior.rsample())
        nll = -self.vae.log_likelihood(pixels, decoded)  # (B, T)

        walk = self.wall_model.infer(self.transition, pixels, actions.long(), for_training=True)
        states, gates = walk.loss_states, walk.gates
        # Queries are steps 1..T-1 (step 0 has no memory yet); keys and values are steps < tau.
        keys = states[:, :tau]
        values = posterior[:, :tau]
        queries = posterior[:, 1:]
        t_index = torch.arange(1, steps, device=pixels.device)
        usable = torch.arange(tau, device=pixels.device) < t_index.clamp(max=tau).unsqueeze(1)
        memory_kl = all_key_memory_kl(states[:, 1:], keys, queries, values, usable, self.config.delta)  # (B, T-1)
        prior_kl = posterior.kl_to_standard_normal()[:, :tau]

        memorise, predict = memory_kl[:, : tau - 1], memory_kl[:, tau - 1 :]
        total = (
            nll.sum(1)
            + kl_weight * prior_kl.sum(1)
            + kl_weight * memory_kl_weight * memorise.sum(1)
            + kl_weight * predict.sum(1)
        ).mean() / steps
        moving = actions[:, 1:] != self.config.stay_action
        parts = {
            "loss": total,
            "nll": nll.mean(),
            "kl_prior": prior_kl.mean(),
            "kl_memory": memorise.mean() if memorise.numel() else nll.new_zeros(()),
            "kl_predict": predict.mean() if predict.numel() else nll.new_zeros(()),
            "mse": (decoded - pixels).square().mean(),
            "gate_moving": (gates[:, 1:][moving].mean() if moving.any() else nll.new_ones(())).detach(),
        }
        return parts, walk.states

    # ------------------------------------------------------------------ observe / imagine

    @torch.no_grad()
    def observe(self, observations: Tensor, actions: Tensor, memory: WorldMemory | None = None) -> WorldMemory:
        """Write observed steps into memory: observations (B, n, H, W, C), the actions that produced them (B, n).

        The first call starts a walk (its first action is the reset, ignored); later calls go on
        from ``memory`` (not changed; a new memory is returned). The states of the whole observed
        walk are re-inferred on every call, so a move decided by loop closure may be revised by
        later observations, and observing in chunks or all at once gives the same memory.
        """
        self.check_inputs(observations, actions)
        c = self.config
        pixels = self.to_pixels(observations)
        actions = actions.long()
        values = self.vae.infer(pixels)
        if memory is not None:
            if memory.observed < memory.steps:
                raise RuntimeError("observe after imagine is not supported: the key memory holds observed steps only")
            pixels = torch.cat([memory.observed_pixels, pixels], 1)
            actions = torch.cat([memory.observed_actions, actions], 1)
            values = cat_gaussians([memory.values, values], 1)
        walk = self.wall_model.infer(self.transition, pixels, actions)
        states, gates = walk.states, walk.gates
        moving = actions != c.stay_action
        moving[:, 0] = False  # the reset is not a move
        previous_states = torch.cat([states[:, :1], states[:, :-1]], 1)
        midpoints = previous_states + 0.5 * self.transition.action_matrix()[actions]
        return WorldMemory(
            keys=states, values=values, edges=EdgeMemory(midpoints, gates < 0.5, moving), visited=states,
            state=states[:, -1], observed_pixels=pixels, observed_actions=actions,
            moved=moving & (gates > 0.5), gates=gates, steps=states.shape[1], best_shifts=walk.best_shifts)

    @torch.no_grad()
    def imagine(self, actions: Tensor, memory: WorldMemory, *, mode: str = "mean",
                k: int | None = None) -> tuple[Prediction, WorldMemory]:
        """Predict the crops of the next steps from actions (B, n) alone, one step at a time.

        Each step moves the state as the wall model decides (``WallModel.imagine``; with "edges", a
        move is blocked iff the edge memory or, for an edge never tried, the extent prior says so,
        and the decision is written back), then reads the key memory (and the canvas for novel
        views). Returns the prediction of these n steps (``states`` and ``gates`` of these steps
        only) and the updated memory.
        """
        self.check_actions(actions)
        if memory.observed == 0:
            raise ValueError("imagine needs at least one observed step in memory")
        c = self.config
        states_t, gates_t, edges, visited = self.wall_model.imagine(self.transition, actions.long(), memory.state,
                                                                    memory.edges, memory.visited)
        memory = replace(memory, edges=edges, visited=visited, state=states_t[:, -1],
                         gates=torch.cat([memory.gates, gates_t], 1), steps=memory.steps + actions.shape[1])
        readout = read_key_memory(memory.keys, memory.values, states_t, k or c.knn_k, c.delta, mode)
        pixels = self.vae.decode(readout.z)
        from_canvas = torch.zeros(pixels.shape[:2], dtype=torch.bool, device=pixels.device)
        if c.novel_view == "canvas":
            pixels, from_canvas = self._fill_from_canvas(pixels, states_t, readout.distances[..., 0], memory)
        prediction = Prediction(pixels, states_t, gates_t, readout.indices, readout.log_weights,
                                readout.distances, from_canvas, memory.values)
        return prediction, memory

    def pixel_map(self, memory: WorldMemory) -> tuple[Tensor, Tensor]:
        """A (B, 2, S): state units → pixel offsets of the view, estimated from the observed moves
        (``canvas.estimate_pixel_map``), and (B,) whether it could be estimated."""
        c = self.config
        return estimate_pixel_map(memory.observed_pixels, memory.observed_actions, memory.keys, memory.moved,
                                  c.num_actions, max_shift=c.crop_size - 2, best_shifts=memory.best_shifts)

    def canvas(self, memory: WorldMemory) -> tuple[Tensor, Tensor, Canvas | None]:
        """The pixel map, where it holds, and the canvas of decoded memories (cached per memory size)."""
        cache = memory._canvas_cache
        if cache is None or cache[0] != memory.observed:
            pixel_map, ok = self.pixel_map(memory)
            decoded = self.vae.decode(memory.values.mean)
            offsets = to_pixel_offsets(pixel_map, memory.keys)
            valid = ok.unsqueeze(1).expand(-1, memory.observed)
            canvas = compose_canvas(decoded, offsets, valid)
            cache = (memory.observed, pixel_map, ok, canvas)
            memory._canvas_cache = cache
        return cache[1], cache[2], cache[3]

    def _fill_from_canvas(self, pixels: Tensor, states: Tensor, nearest: Tensor,
                          memory: WorldMemory) -> tuple[Tensor, Tensor]:
        """Replace, for queries farther than canvas_radius from every key, the pixels the canvas has."""
        radius = self.config.canvas_radius
        # Radius 0 means every query, also one whose state equals a key bit for bit.
        far = nearest > radius if radius > 0 else torch.ones_like(nearest, dtype=torch.bool)
        if not far.any():
            return pixels, far
        pixel_map, ok, canvas = self.canvas(memory)
        if canvas is None:
            return pixels, torch.zeros_like(far)
        crop = (self.config.crop_size, self.config.crop_size)
        painted, covered = read_canvas(canvas, to_pixel_offsets(pixel_map, states), crop)
        use = covered & (far & ok.unsqueeze(1))[..., None, None]
        return torch.where(use.unsqueeze(-1), painted, pixels), use.flatten(2).any(-1)

    # ------------------------------------------------------------------ whole sequences

    @torch.no_grad()
    def predict(
        self,
        observations: Tensor,
        actions: Tensor,
        tau: int,
        *,
        mode: str = "mean",
        k: int | None = None,
    ) -> Prediction:
        """Predict the crops of steps tau..T-1 from the first tau observations and all actions.

        observations: (B, >=tau, H, W, C); only the first tau are read. actions: (B, T).
        mode "mean" decodes the mixture mean sum_k w_k mu_k; "sample" draws a component by its
        weight, then z from it, and decodes. Equal to ``observe`` on steps < tau, then
        ``imagine`` on the rest (in one call or step by step).
        """
        if mode not in ("mean", "sample"):
            raise ValueError(f"mode must be 'mean' or 'sample', got {mode!r}")
        if tau < 1:
            raise ValueError(f"tau must be >= 1 (at least one memorised step), got {tau}")
        if observations.shape[1] < tau:
            raise ValueError(f"need at least tau={tau} observations, got {observations.shape[1]}")
        self.check_inputs(observations[:, :tau], actions)
        if actions.shape[1] <= tau:
            raise ValueError(f"actions must extend past tau={tau}, got T={actions.shape[1]}")
        memory = self.observe(observations[:, :tau], actions[:, :tau])
        imagined, memory = self.imagine(actions[:, tau:], memory, mode=mode, k=k)
        imagined.states = torch.cat([memory.keys, imagined.states], 1)
        imagined.gates = memory.gates
        return imagined

    @torch.no_grad()
    def reconstruct(self, observations: Tensor) -> Tensor:
        """The VAE's own reconstruction (the code memory would hold, decoded): the floor for any prediction."""
        return self.vae.decode(self.vae.infer(self.to_pixels(observations)).mean)

    @torch.no_grad()
    def nll_bound(self, observations: Tensor, tau: int, prediction: Prediction, samples: int = 4) -> Tensor:
        """Negative ELBO of steps >= tau under the top-K memory prior that ``prediction`` used, nats per step (B, T - tau).

        -log p(x_t | s_t, m) <= E_q[-log p(x_t | z)] + KL(q(z | x_t) ‖ p(z | s_t, m)); the KL is the
        mixture bound of ``mixture_kl_bound``, the expectation a mean over ``samples`` draws. It
        scores the latent prior, not the canvas read-out. The pixel model is a Gaussian density,
        so values can be negative.
        """
        pixels = self.to_pixels(observations)
        future = self.vae.encode(pixels[:, tau:])
        memorised = prediction.values if prediction.values is not None else self.vae.infer(pixels[:, :tau])
        chosen = gather_memory(memorised, prediction.neighbours)  # the codes memory held
        batch, steps, k, z_dim = chosen.mean.shape
        component_kl = pairwise_gaussian_kl(
            Gaussian(future.mean.reshape(batch * steps, 1, z_dim), future.log_std.reshape(batch * steps, 1, z_dim)),
            Gaussian(chosen.mean.reshape(batch * steps, k, z_dim), chosen.log_std.reshape(batch * steps, k, z_dim)),
        ).reshape(batch, steps, k)
        kl = mixture_kl_bound(component_kl, prediction.log_weights)
        nll = torch.stack([-self.vae.log_likelihood(pixels[:, tau:], self.vae.decode(future.rsample()))
                           for _ in range(samples)]).mean(0)
        return nll + kl

    @torch.no_grad()
    def read_memory(self, keys: Tensor, observations: Tensor, queries: Tensor, *, k: int | None = None,
                    delta: float | None = None) -> Tensor:
        """Decode the top-K memory read-out with given keys: keys (B, M, S), their observations
        (B, M, H, W, C), queries (B, N, S) → pixels (B, N, H, W, C). (The oracle-position baseline
        calls this with the true positions as keys.)"""
        posterior = self.vae.infer(self.to_pixels(observations))
        readout = read_key_memory(keys, posterior, queries, k or self.config.knn_k,
                                  self.config.delta if delta is None else delta)
        return self.vae.decode(readout.z)

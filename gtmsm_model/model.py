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
the move vectors and the wall models in ``wall_models.py``, the settings (``GTMSMConfig``) in
``model_config.py``. This file holds the model's verbs: ``loss`` (training), ``observe`` /
``imagine`` (incremental, dreamerv3-style: write observed steps into memory, then predict step
by step from actions alone), ``predict`` (both at once), ``reconstruct``, and the trainer's hooks ``set_iteration`` (the wall model's
warm-up) and ``count_spans`` (what the wall model learns from the training walks). Training
schedules live in ``train.py``, metrics in ``evaluate.py``; nothing here does I/O.

Tensor conventions: observations are ``(B, T, H, W, C)`` uint8 exactly as the environment emits
them; ``actions[:, t]`` is the action whose step produced ``observations[:, t]`` (``actions[:, 0]``
is the reset and is ignored, since s_0 = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor, nn

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
from gtmsm_model.model_config import NOVEL_VIEWS, UNTRIED_EDGES, GTMSMConfig
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
    "GTMSM", "GTMSMConfig", "NOVEL_VIEWS", "UNTRIED_EDGES", "CropVAE", "StateTransition", "WallModel",
    "WALL_MODELS", "SPAN_BINS", "Prediction", "WorldMemory", "Gaussian",
    "gaussian_kl", "pairwise_gaussian_kl", "mixture_kl_bound", "memory_log_weights", "nearest_keys",
    "gather_memory",
]

# --------------------------------------------------------------------------- modules


class GTMSM(nn.Module):
    """The full model: VAE + state transition + memories, with its loss and its verbs."""

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = CropVAE(config)
        self.transition = StateTransition(config)
        self.wall_model: WallModel = make_wall_model(config)

    def world_span(self) -> Tensor | None:
        """(P,) the world's span along each lattice axis in moves, as the wall model learned it from
        the training walks (None when it learns none, or before any walk was counted)."""
        return self.wall_model.world_span()

    # ------------------------------------------------------------------ the trainer's hooks

    def set_iteration(self, iteration: int) -> None:
        """The main-phase training iteration about to run (0, 1, ...): the wall model's warm-up schedule."""
        self.wall_model.set_iteration(iteration)

    def count_spans(self, states: Tensor, reduce: Callable[[Tensor], Tensor] | None = None,
                    actions: Tensor | None = None) -> None:
        """Let the wall model learn from training walks: ``states`` (B, T, S) as ``loss_and_states``
        returns them, with the walks' ``actions`` (B, T). ``reduce`` sums over processes under DDP
        (``DistributedContext.sum``)."""
        self.wall_model.count_spans(self.transition, states, reduce, actions)

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

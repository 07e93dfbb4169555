"""GTM-SM: a generative temporal model with a spatial memory (Fraccaro et al., ICML 2018).

Two sets of latents disentangle *what* is seen from *where* the agent is:

* a VAE over crops: q(z_t | x_t) and p(x_t | z_t);
* a 2-D (configurable) state s_t driven by the actions alone,
  ``s_t = s_{t-1} + M a_t * gate(s_{t-1} + M a_t)``, s_0 = 0, where ``gate`` is a small learned
  sigmoid network that closes where a move would cross a wall;
* a memory (a differentiable neural dictionary) of (s_t, q(z_t | x_t)) pairs written during the
  memorisation steps t < tau, read through a nearest-neighbour mixture prior
  ``p(z_t | s_t, m) = sum_k w_k N(z_t | mu_k, sigma_k^2)`` with ``w_k ∝ 1 / (d_k^2 + delta)``.

Predicting x_t for t >= tau needs only the actions: s_t -> memory prior -> decoder.

This file holds the config and the modules. Training schedules live in ``train.py``, metrics in
``evaluate.py``; nothing here does I/O.

Tensor conventions: observations are ``(B, T, H, W, C)`` uint8 exactly as the environment emits
them; ``actions[:, t]`` is the action whose step produced ``observations[:, t]`` (``actions[:, 0]``
is the reset and is ignored, since s_0 = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class GTMSMConfig:
    """Architecture and loss hyperparameters of GTM-SM."""

    crop_size: int = 8
    """Side of the square observation crop, in pixels."""
    channels: int = 3
    """Colour channels of the crop."""
    z_dim: int = 32
    """Size of the VAE latent z_t."""
    vae_hidden: int = 512
    """Width of the VAE's hidden layers."""
    s_dim: int = 2
    """Size of the spatial state s_t."""
    gate_hidden: int = 32
    """Width of the wall gate's hidden layers."""
    gate_init_bias: float = 3.0
    """Initial bias of the gate's output logit: sigmoid(3) ≈ 0.95, so every move starts open."""
    num_actions: int = 5
    """Number of discrete actions."""
    stay_action: int = 0
    """The no-op action; its vector is fixed at zero."""
    opposite_actions: tuple[tuple[int, int], ...] = ((1, 2), (3, 4))
    """Pairs (a, b) of actions that undo each other; a's vector is tied to minus b's."""
    state_noise: float = 0.0
    """Std of the transition noise eps_t added while training (0: deterministic states)."""
    knn_k: int = 5
    """Neighbours K of the memory prior at prediction time."""
    delta: float = 1e-4
    """Stabiliser of the mixture weights 1 / (d^2 + delta)."""
    pixel_sigma: float = 0.05
    """Std of the Gaussian pixel likelihood p(x_t | z_t), pixels in [0, 1]."""

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

    @property
    def pixels(self) -> int:
        return self.crop_size * self.crop_size * self.channels


# --------------------------------------------------------------------------- Gaussian helpers


@dataclass
class Gaussian:
    """A diagonal Gaussian, parametrised by mean and log standard deviation."""

    mean: Tensor
    log_std: Tensor

    def rsample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def kl_to_standard_normal(self) -> Tensor:
        """KL(self ‖ N(0, I)), summed over the last dimension."""
        var = (2 * self.log_std).exp()
        return 0.5 * (var + self.mean.square() - 1.0 - 2 * self.log_std).sum(-1)


def gaussian_kl(q: Gaussian, p: Gaussian) -> Tensor:
    """Closed-form KL(q ‖ p) of diagonal Gaussians, summed over the last dimension."""
    var_ratio = (2 * (q.log_std - p.log_std)).exp()
    mean_term = (q.mean - p.mean).square() / (2 * p.log_std).exp()
    return 0.5 * (var_ratio + mean_term - 1.0 - 2 * (q.log_std - p.log_std)).sum(-1)


def pairwise_gaussian_kl(q: Gaussian, p: Gaussian) -> Tensor:
    """KL(q_i ‖ p_j) for every pair: q is (B, N, D), p is (B, M, D) → (B, N, M).

    Expanded into matrix products so memory stays O(N·M), not O(N·M·D).
    """
    q_var = (2 * q.log_std).exp()
    p_inv_var = (-2 * p.log_std).exp()
    # sum_d [ (q_var + q_mu^2 - 2 q_mu p_mu + p_mu^2) / p_var ] / 2
    quad = (q_var + q.mean.square()) @ p_inv_var.transpose(1, 2)
    quad = quad - 2 * q.mean @ (p.mean * p_inv_var).transpose(1, 2)
    quad = quad + (p.mean.square() * p_inv_var).sum(-1).unsqueeze(1)
    log_det = p.log_std.sum(-1).unsqueeze(1) - q.log_std.sum(-1).unsqueeze(2)
    return 0.5 * quad + log_det - 0.5 * q.mean.shape[-1]


def mixture_kl_bound(component_kl: Tensor, log_weights: Tensor) -> Tensor:
    """Upper bound on KL(q ‖ sum_k w_k p_k) from the component KLs, ``-log sum_k w_k e^{-KL_k}``.

    The KL from a Gaussian to a Gaussian mixture has no closed form. Jensen's inequality on the
    convex log-sum-exp gives E_q[log sum_k w_k p_k(z)] >= log sum_k w_k exp(E_q[log p_k(z)]),
    hence KL(q ‖ sum_k w_k p_k) <= -log sum_k w_k exp(-KL(q ‖ p_k)) (Hershey & Olsen, 2007).
    It is deterministic (no sampling noise), differentiable in the weights, tighter than the
    convexity bound sum_k w_k KL_k, and exact for K = 1. Entries with weight -inf are ignored.
    """
    return -torch.logsumexp(log_weights - component_kl, dim=-1)


def memory_log_weights(squared_distances: Tensor, delta: float, mask: Tensor | None = None) -> Tensor:
    """log w_k for w_k ∝ 1 / (d_k^2 + delta), normalised over the last dimension.

    ``mask`` (broadcastable, bool) marks usable keys; masked keys get weight 0 (log -inf).
    Every row must keep at least one usable key.
    """
    logits = -torch.log(squared_distances + delta)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def nearest_keys(queries: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k nearest keys of each query, batched over sequences.

    queries (B, N, S), keys (B, M, S) → distances (B, N, k) (differentiable) and indices
    (B, N, k) into the M keys, nearest first.
    """
    k = min(k, keys.shape[1])
    # The matrix-product shortcut loses precision exactly where it matters (d ≈ 0).
    distances = torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist")
    nearest, indices = distances.topk(k, dim=-1, largest=False)
    return nearest, indices


def gather_memory(values: Gaussian, indices: Tensor) -> Gaussian:
    """Select memory values (B, M, D) at indices (B, N, k) → Gaussian of shape (B, N, k, D)."""
    batch, n, k = indices.shape
    flat = indices.reshape(batch, n * k, 1).expand(-1, -1, values.mean.shape[-1])
    pick = lambda t: t.gather(1, flat).reshape(batch, n, k, -1)  # noqa: E731
    return Gaussian(pick(values.mean), pick(values.log_std))


# --------------------------------------------------------------------------- modules


class CropVAE(nn.Module):
    """Encoder q(z | x) and decoder p(x | z) over single crops.

    MLPs rather than convolutions: an 8×8 crop is only 192 numbers, and at this size a
    two-layer MLP is both sharper and faster on a CPU than the seed's 2-conv VAE.
    """

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        width = config.vae_hidden
        self.encoder = nn.Sequential(
            nn.Linear(config.pixels, width),
            nn.ELU(),
            nn.Linear(width, width),
            nn.ELU(),
            nn.Linear(width, 2 * config.z_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.z_dim, width),
            nn.ELU(),
            nn.Linear(width, width),
            nn.ELU(),
            nn.Linear(width, config.pixels),
        )

    def encode(self, pixels: Tensor) -> Gaussian:
        """pixels (..., H, W, C) in [0, 1] → q(z | x) with tensors (..., z_dim)."""
        flat = pixels.flatten(-3) * 2.0 - 1.0
        mean, log_std = self.encoder(flat).chunk(2, dim=-1)
        return Gaussian(mean, log_std.clamp(-7.0, 2.0))

    def decode(self, z: Tensor) -> Tensor:
        """z (..., z_dim) → mean pixels (..., H, W, C) in [0, 1]."""
        c = self.config
        return torch.sigmoid(self.decoder(z)).unflatten(-1, (c.crop_size, c.crop_size, c.channels))

    def log_likelihood(self, pixels: Tensor, decoded: Tensor) -> Tensor:
        """log p(x | z) under the Gaussian pixel model, summed over the crop → (...)."""
        sigma = self.config.pixel_sigma
        sq = (pixels - decoded).square().flatten(-3).sum(-1)
        return -0.5 * sq / sigma**2 - self.config.pixels * math.log(sigma * math.sqrt(2 * math.pi))


class StateTransition(nn.Module):
    """s_t = s_{t-1} + M a_t · gate(s_{t-1} + M a_t) (+ eps_t while training).

    M's columns are tied by two priors that hold in any grid world: the stay action does not
    move (its column is 0), and each opposite pair cancels (left = −right). Each move vector is
    normalised to unit length; this fixes the gauge (one grid cell = one unit of s) so the scale
    of the state cannot collapse or drift, and leaves the gate as the only way to stand still.
    """

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        pairs = config.opposite_actions
        # Random initial directions; the model learns which way each pair points.
        self.directions = nn.Parameter(torch.randn(len(pairs), config.s_dim))
        sign = torch.zeros(config.num_actions, len(pairs))
        for i, (negative, positive) in enumerate(pairs):
            sign[negative, i], sign[positive, i] = -1.0, 1.0
        self.register_buffer("action_signs", sign, persistent=False)
        width = config.gate_hidden
        self.gate_net = nn.Sequential(
            nn.Linear(config.s_dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 1),
        )
        nn.init.constant_(self.gate_net[-1].bias, config.gate_init_bias)

    def action_matrix(self) -> Tensor:
        """M as a (num_actions, s_dim) table: row a is the move vector of action a."""
        unit = F.normalize(self.directions, dim=-1)
        return self.action_signs @ unit

    def gate(self, proposed: Tensor) -> Tensor:
        """The wall gate σ_d: probability that a move ending at ``proposed`` is allowed."""
        return torch.sigmoid(self.gate_net(proposed)).squeeze(-1)

    def forward(self, actions: Tensor, gate_open: bool = False) -> tuple[Tensor, Tensor]:
        """actions (B, T) long → states (B, T, s_dim) with s_0 = 0, and gate values (B, T).

        ``gate_open`` bypasses the gate (every move succeeds): used early in training.
        gates[:, 0] is 1 (no move happens at the reset).
        """
        batch, steps = actions.shape
        moves = self.action_matrix()[actions]  # (B, T, S)
        state = moves.new_zeros(batch, self.config.s_dim)
        states, gates = [state], [moves.new_ones(batch)]
        noise = self.config.state_noise if self.training else 0.0
        for t in range(1, steps):
            proposed = state + moves[:, t]
            gate = moves.new_ones(batch) if gate_open else self.gate(proposed)
            state = state + moves[:, t] * gate.unsqueeze(-1)
            if noise > 0:
                state = state + noise * torch.randn_like(state)
            states.append(state)
            gates.append(gate)
        return torch.stack(states, 1), torch.stack(gates, 1)


@dataclass
class Prediction:
    """What GTM-SM predicts for the steps t >= tau of a batch of sequences."""

    pixels: Tensor  # (B, T - tau, H, W, C) in [0, 1]
    states: Tensor  # (B, T, s_dim), all steps
    gates: Tensor  # (B, T)
    neighbours: Tensor  # (B, T - tau, K) indices of the memory keys used, nearest first
    log_weights: Tensor  # (B, T - tau, K)


class GTMSM(nn.Module):
    """The full model: VAE + state transition + memory prior, with its loss and predictor."""

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = CropVAE(config)
        self.transition = StateTransition(config)

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
        if actions.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"actions must be an integer tensor, got {actions.dtype}")
        if actions.numel() and (actions.min() < 0 or actions.max() >= c.num_actions):
            raise ValueError(f"actions must lie in [0, {c.num_actions}), got {actions.min()}..{actions.max()}")

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

    def loss(
        self,
        observations: Tensor,
        actions: Tensor,
        tau: int,
        *,
        gate_open: bool = False,
        kl_weight: float = 1.0,
        memory_kl_weight: float = 1.0,
    ) -> dict[str, Tensor]:
        """The training objective, averaged per step.

        Every step t pays the reconstruction term -E_q[log p(x_t | z_t)]. Step t then pays the
        KL from q(z_t | x_t) to the memory prior built from the keys written *before* it:
        j < t during memorisation (t < tau) and all j < tau afterwards (the seed's eq. 2).
        Memorisation steps also pay KL(q ‖ N(0, I)) so the codes stay a well-behaved VAE.

        Two choices make this train from scratch (see train.py for the schedule):
        * the memory loss on the memorisation phase gives the state map a signal from the very
          first steps of a sequence (only prediction steps was too sparse a signal);
        * in training the prior mixes over *all* usable keys (w ∝ 1 / (d^2 + delta)), not the
          top K: early on the true match is usually outside the K nearest and a top-K gradient
          pulls towards look-alikes. Prediction uses the top K, as in the paper.
        The mixture KL uses the bound of ``mixture_kl_bound``.
        """
        self.check_inputs(observations, actions)
        if not 1 <= tau <= observations.shape[1]:
            raise ValueError(f"tau must lie in [1, T={observations.shape[1]}], got {tau}")
        pixels = self.to_pixels(observations)
        steps = pixels.shape[1]
        posterior = self.vae.encode(pixels)  # (B, T, Z)
        decoded = self.vae.decode(posterior.rsample())
        nll = -self.vae.log_likelihood(pixels, decoded)  # (B, T)

        states, gates = self.transition(actions.long(), gate_open=gate_open)
        # Queries are steps 1..T-1 (step 0 has no memory yet); keys and values are steps < tau.
        keys = states[:, :tau]
        values = Gaussian(posterior.mean[:, :tau], posterior.log_std[:, :tau])
        queries = Gaussian(posterior.mean[:, 1:], posterior.log_std[:, 1:])
        t_index = torch.arange(1, steps, device=pixels.device)
        usable = torch.arange(tau, device=pixels.device) < t_index.clamp(max=tau).unsqueeze(1)
        # Squared differences, not cdist: exact gradients at d = 0 (repeated positions).
        squared = (states[:, 1:, None, :] - keys[:, None, :, :]).square().sum(-1)  # (B, T-1, tau)
        log_weights = memory_log_weights(squared, self.config.delta, usable)
        component_kl = pairwise_gaussian_kl(queries, values)  # (B, T-1, tau)
        memory_kl = mixture_kl_bound(component_kl, log_weights)
        prior_kl = posterior.kl_to_standard_normal()[:, :tau]

        memorise, predict = memory_kl[:, : tau - 1], memory_kl[:, tau - 1 :]
        total = (
            nll.sum(1)
            + kl_weight * prior_kl.sum(1)
            + kl_weight * memory_kl_weight * memorise.sum(1)
            + kl_weight * predict.sum(1)
        ).mean() / steps
        moving = actions[:, 1:] != self.config.stay_action
        return {
            "loss": total,
            "nll": nll.mean(),
            "kl_prior": prior_kl.mean(),
            "kl_memory": memorise.mean() if memorise.numel() else nll.new_zeros(()),
            "kl_predict": predict.mean() if predict.numel() else nll.new_zeros(()),
            "mse": (decoded - pixels).square().mean(),
            "gate_moving": (gates[:, 1:][moving].mean() if moving.any() else nll.new_ones(())).detach(),
        }

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
        weight, then z from it, and decodes.
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
        posterior = self.vae.encode(self.to_pixels(observations[:, :tau]))
        states, gates = self.transition(actions.long())
        distances, indices = nearest_keys(states[:, tau:], states[:, :tau], k or self.config.knn_k)
        log_weights = memory_log_weights(distances.square(), self.config.delta)
        chosen = gather_memory(posterior, indices)  # (B, N, K, Z)
        if mode == "mean":
            z = (log_weights.exp().unsqueeze(-1) * chosen.mean).sum(-2)
        else:
            component = torch.distributions.Categorical(logits=log_weights).sample()
            pick = component[..., None, None].expand(-1, -1, 1, chosen.mean.shape[-1])
            z = Gaussian(chosen.mean.gather(2, pick).squeeze(2),
                         chosen.log_std.gather(2, pick).squeeze(2)).rsample()
        return Prediction(self.vae.decode(z), states, gates, indices, log_weights)

    @torch.no_grad()
    def reconstruct(self, observations: Tensor) -> Tensor:
        """The VAE's own reconstruction (posterior mean decoded): the floor for any prediction."""
        return self.vae.decode(self.vae.encode(self.to_pixels(observations)).mean)

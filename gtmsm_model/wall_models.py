"""How walls stop moves: the move vectors M, and the wall models that decide which moves go through.

The state moves by ``s_t = s_{t-1} + M a_t · g_t``: M (``StateTransition``) says where an action
points, the gate g_t (1: the move went through, 0: a wall stopped it) is the *wall model*'s. A
wall model (``WallModel``) owns everything about walls:

* its state inference on an observed walk (``infer``: states and gates, plus what it measured on the way);
* its decisions while imagining (``imagine``: a move from actions alone);
* its training-time state (``count_spans``: statistics of the training walks it keeps) and its
  warm-up schedule (``set_iteration``: the trainer says which main-phase iteration is next).

Three are registered by name (``GTMSMConfig.wall_model``):

* ``"edges"`` (``EdgeWalls``, the default; any start, walls anywhere): blocked moves are read off
  the observations by a pixel-shift rule written for a sliding window; a move the views cannot
  decide (a flat view) is left undecided and settled by the multi-hypothesis tracker
  (``localisation.track_moves``); an edge memory remembers each tried move, an extent/span prior
  decides the edges never tried while imagining. Nothing depends on the absolute state.
  Assumes: a move slides the view by a fixed pixel shift.
* ``"learned"`` (``LearnedLocaliser``; any start, walls anywhere): an inference network
  q(moved | x_{t-1}, x_t, a_t) trained end to end by the GTM-SM objective (no labels, no
  pixel-shift rule); every move goes to the same tracker with the network's probability as its
  lean, so the views overrule a wrong network; imagining as ``"edges"``. Assumes: the same cell
  shows the same view.
* ``"absolute"`` (``AbsoluteGate``, the seed's): a learned sigmoid gate of the absolute state,
  actions trusted, the gate held open for the first ``gate_open_iters`` training iterations.
  Assumes: every episode starts on the same cell.

``"edges"`` stays the default because it localises best where localising is hard: on flat scenes
it sat at 2.9× its VAE floor against the learned localiser's 3.6× (both at commit 0125c3c), while on the reference the two
are level against their own floors (benchmarks/results/train_gtmsm*.md). The learned localiser's
lower error elsewhere in the comparison comes from its longer schedule's sharper codec.

A new wall model is one subclass decorated with ``@register_wall_model("name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gtmsm_model.localisation import CONFLICT_COST, MoveBeliefs, distinctive_views, track_moves
from gtmsm_model.memory import (
    EdgeMemory,
    crop_change,
    extent_prior,
    infer_blocked,
    span_from_counts,
    wall_behind_counts,
    world_span_counts,
)

if TYPE_CHECKING:
    from gtmsm_model.model import GTMSMConfig

SPAN_BINS = 256  # the world-span histogram's bins: spans of up to 255 moves

# One move decision while imagining: (state (B, S), move (B, S), moving (B,) bool, edges, visited (B, N, S))
# → (gate (B,), the edge memory after the decision).
MoveRule = Callable[[Tensor, Tensor, Tensor, EdgeMemory, Tensor], tuple[Tensor, EdgeMemory]]


class StateTransition(nn.Module):
    """The move vectors M, and the parameters of the absolute wall gate.

    M's columns are tied by two priors that hold in any grid world: the stay action does not
    move (its column is 0), and each opposite pair cancels (left = −right). Each move vector is
    normalised to unit length; this fixes the gauge (one grid cell = one unit of s) so the scale
    of the state cannot collapse or drift, and leaves the wall model as the only way to stand still.

    ``gate_net`` is the absolute gate's network (``AbsoluteGate``; the edge model never reads
    it). Every model carries it, so the parameters — checkpoint keys, optimiser groups and the
    seeded initial draw — are the same whichever wall model is chosen.
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
        return self.action_signs @ self.lattice_basis()

    def lattice_basis(self) -> Tensor:
        """(P, S): the unit move vector of each opposite-action pair."""
        return F.normalize(self.directions, dim=-1)


@dataclass
class ObservedWalk:
    """What a wall model infers from an observed walk of T steps (step 0 is the reset: s_0 = 0, gate 1)."""

    states: Tensor  # (B, T, S), before any training noise
    gates: Tensor  # (B, T): 1 where the move went through (a soft value for a learned gate)
    best_shifts: Tensor | None = None  # (B, T-1) each step's pixel shift where it slid (``MoveEvidence``), if measured
    training_states: Tensor | None = None
    """(B, T, S) the states the training objective reads, where they differ from ``states``: with the
    transition noise eps_t, or a learned localiser's soft states (``states`` then holds its decisions)."""

    @property
    def loss_states(self) -> Tensor:
        """The states the training objective reads."""
        return self.states if self.training_states is None else self.training_states


class WallModel(nn.Module):
    """How walls stop moves: one implementation per ``GTMSMConfig.wall_model`` name.

    ``moves`` (the model's ``StateTransition``) is passed to each call rather than held, so the
    wall model's own parameters and buffers (if any) are all that it adds to the state dict.
    """

    name: ClassVar[str]

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config

    def set_iteration(self, iteration: int) -> None:
        """The trainer calls this before each main-phase iteration (0, 1, ...): the warm-up hook.
        The default has no schedule."""

    def infer(self, moves: StateTransition, pixels: Tensor, actions: Tensor, *,
              for_training: bool = False) -> ObservedWalk:
        """States and gates of an observed walk: pixels (B, T, H, W, C) in [0, 1], actions (B, T) long.
        ``for_training``: the walk the training objective reads (warm-up and transition noise apply)."""
        raise NotImplementedError

    def move_rule(self, moves: StateTransition) -> MoveRule:
        """How a move is decided while imagining (built once per ``imagine`` call)."""
        raise NotImplementedError

    def imagine(self, moves: StateTransition, actions: Tensor, state: Tensor, edges: EdgeMemory,
                visited: Tensor) -> tuple[Tensor, Tensor, EdgeMemory, Tensor]:
        """Move from ``state`` (B, S) by actions (B, n) alone, one step at a time, each move decided
        by ``move_rule``. Returns the states (B, n, S), gates (B, n), the edge memory and every
        visited state (``visited`` with the n new states appended)."""
        table = moves.action_matrix()
        decide = self.move_rule(moves)
        states, gates = [], []
        for t in range(actions.shape[1]):
            move = table[actions[:, t]]
            gate, edges = decide(state, move, actions[:, t] != self.config.stay_action, edges, visited)
            state = state + move * gate.unsqueeze(-1)
            visited = torch.cat([visited, state.unsqueeze(1)], 1)
            states.append(state)
            gates.append(gate)
        return torch.stack(states, 1), torch.stack(gates, 1), edges, visited

    def count_spans(self, moves: StateTransition, states: Tensor,
                    reduce: Callable[[Tensor], Tensor] | None = None, actions: Tensor | None = None) -> None:
        """Learn from the training walks' states (B, T, S) (``ObservedWalk.states``) and actions (B, T)
        (None: states only). ``reduce`` sums a statistic over processes (DDP), so every process keeps the
        same. The default keeps nothing."""

    def world_span(self) -> Tensor | None:
        """(P,) the world's span along each lattice axis in moves, if this wall model learns it."""
        return None


WALL_MODELS: dict[str, type[WallModel]] = {}
"""The wall models by name (``GTMSMConfig.wall_model``), in registration order (the first is the default)."""


def register_wall_model(name: str) -> Callable[[type[WallModel]], type[WallModel]]:
    """Class decorator: make a ``WallModel`` subclass available as ``GTMSMConfig(wall_model=name)``."""

    def register(cls: type[WallModel]) -> type[WallModel]:
        if name in WALL_MODELS:
            raise ValueError(f"wall model {name!r} is already registered ({WALL_MODELS[name].__name__})")
        cls.name = name
        WALL_MODELS[name] = cls
        return cls

    return register


def make_wall_model(config: GTMSMConfig) -> WallModel:
    return WALL_MODELS[config.wall_model](config)


@register_wall_model("edges")
class EdgeWalls(WallModel):
    """Blocked moves read off the observations; an edge memory and an extent/span prior while imagining.

    Observing: a move is blocked iff "the view stayed" explains the crop better than "the view
    slid by the action's pixel shift" (``memory.infer_blocked``); a move the pixels cannot decide
    (a flat view) stays undecided, with the prior ``blocked_prior`` as its lean, and the
    multi-hypothesis tracker (``localisation.track_moves``) decides it on the whole walk; s_t is the
    cumulative sum of the unblocked moves. Imagining: a move is blocked iff the edge memory says
    so or, for an edge never tried, the extent prior (corrected by the world span learned from the
    training walks with ``untried_edges="span"``); each decision is written back.

    ``span_counts`` (P, SPAN_BINS): how many training walks spanned 0, 1, ... moves along each
    lattice axis (the world-span prior), counted by ``count_spans``. ``wall_counts`` (2,): how many
    blocked moves the training walks made, and how many of them had the same walk behind them (some step
    on the cell the move tried to reach or beyond it along its direction: a wall with the world behind
    it); the tracker's ``wall_behind_cost`` is -log of that rate.
    """

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__(config)
        self.register_buffer("span_counts", torch.zeros(len(config.opposite_actions), SPAN_BINS, dtype=torch.long))
        self.register_buffer("wall_counts", torch.zeros(2, dtype=torch.long))

    def tracker_threshold(self, pixels: Tensor, actions: Tensor) -> Tensor:
        """(B,): two crops differ iff their MSE exceeds this — the loop-closure threshold plus twice the
        noise variance, measured on stay steps (same cell, same crop up to noise)."""
        c = self.config
        change = crop_change(pixels)
        stay = actions == c.stay_action
        stay[:, 0] = False
        noise = torch.where(stay, change, torch.full_like(change, float("nan"))).nanmedian(1).values
        return c.loop_closure_threshold + 2 * torch.nan_to_num(noise, nan=0.0)

    def track(self, moves: StateTransition, pixels: Tensor, actions: Tensor, beliefs: MoveBeliefs,
              action_shifts: Tensor | None = None, threshold: Tensor | None = None) -> Tensor:
        """The blocked mask after the multi-hypothesis tracker settled the undecided moves.
        ``action_shifts`` (B, A, 2): each action's pixel shift, when known (the tracker then checks overlaps);
        ``threshold`` (B,): ``tracker_threshold``'s value, when the caller has it already."""
        if not bool(beliefs.undecided.any()):
            return beliefs.blocked
        span = self.world_span() if bool(self.span_counts.any()) else None
        pixel_steps = None
        if action_shifts is not None:  # one lattice move along each axis: the shift of the pair's positive action
            positive = moves.action_signs.argmax(0)  # (P,)
            pixel_steps = action_shifts[:, positive].to(pixels.dtype)  # (B, P, 2)
        if threshold is None:
            threshold = self.tracker_threshold(pixels, actions)
        return track_moves(pixels, actions, beliefs, moves.action_signs, threshold,
                           world_span=span, beam=self.config.tracker_beam, retry=self.config.tracker_retry,
                           behind_cost=self.wall_behind_cost(), pixel_steps=pixel_steps)

    def infer(self, moves: StateTransition, pixels: Tensor, actions: Tensor, *,
              for_training: bool = False) -> ObservedWalk:
        c = self.config
        step_moves = moves.action_matrix()[actions]  # (B, T, S)
        with torch.no_grad():
            signs = moves.action_signs
            evidence = infer_blocked(pixels, actions, signs, c.stay_action, c.ambiguity_margin, c.crop_size - 2)
            lean = torch.full(evidence.blocked.shape, c.blocked_prior, device=pixels.device)
            blocked = self.track(moves, pixels, actions, MoveBeliefs(evidence.blocked, evidence.ambiguous, lean),
                                 evidence.action_shifts)
        free = (~blocked).to(step_moves.dtype)
        free[:, 0] = 0.0  # the reset does not move
        states = (step_moves * free.unsqueeze(-1)).cumsum(1)
        noisy = None
        if for_training and self.training and c.state_noise > 0:  # eps_t on every step, accumulated along the walk
            noisy = states + (c.state_noise * torch.randn_like(states)).cumsum(1)
        return ObservedWalk(states, 1.0 - blocked.to(step_moves.dtype), evidence.best_shifts, noisy)

    def move_rule(self, moves: StateTransition) -> MoveRule:
        radius, basis, span = self.config.edge_radius, moves.lattice_basis(), self.world_span()

        def decide(state: Tensor, move: Tensor, moving: Tensor, edges: EdgeMemory,
                   visited: Tensor) -> tuple[Tensor, EdgeMemory]:
            midpoint = state + 0.5 * move
            known, remembered = edges.lookup(midpoint, radius)
            blocked = torch.where(known, remembered, extent_prior(visited, state, move, basis,
                                                                    edges=edges, world_span=span)) & moving
            edges = edges.write(midpoint.unsqueeze(1), blocked.unsqueeze(1), moving.unsqueeze(1))
            return 1.0 - blocked.to(move.dtype), edges

        return decide

    @torch.no_grad()
    def count_spans(self, moves: StateTransition, states: Tensor,
                    reduce: Callable[[Tensor], Tensor] | None = None, actions: Tensor | None = None) -> None:
        counts = world_span_counts(states.detach(), moves.lattice_basis(), SPAN_BINS)
        self.span_counts += counts if reduce is None else reduce(counts)
        if actions is not None:
            walls = wall_behind_counts(states.detach(), actions, moves.lattice_basis(), moves.action_signs)
            self.wall_counts += walls if reduce is None else reduce(walls)

    def wall_behind_cost(self) -> float:
        """What the tracker charges, in nats, for a blocked move with its walk behind it (some step on the
        cell it tried to reach or beyond it along its direction): -log of how often the training walks did
        that (``wall_counts``, with one pseudo-count for each outcome), capped at the cost of a view
        conflict; 0 (no such term) before any training walk was counted. Training worlds walled only at
        their border never do it, so a map that explains a flat stretch by a wall inside the world pays
        about log(number of blocked moves counted); where the training worlds have interior walls it costs
        little."""
        blocked, behind = self.wall_counts.tolist()
        if blocked == 0:
            return 0.0
        return min(-math.log((behind + 1) / (blocked + 2)), CONFLICT_COST)

    SPAN_SHARE = 0.01
    """The world span is the largest span that at least this share of the counted training walks reach:
    the walks' states are exact here, so only a rare walk that was too short to cross the world could
    pull it down."""

    def world_span(self) -> Tensor | None:
        """None with untried_edges "extent" or before any training walk was counted."""
        if self.config.untried_edges != "span" or not bool(self.span_counts.any()):
            return None
        return span_from_counts(self.span_counts, self.SPAN_SHARE)


@register_wall_model("learned")
class LearnedLocaliser(EdgeWalls):
    """A learned localiser: an inference network q(moved | x_{t-1}, x_t, a_t), trained end to end by the
    GTM-SM objective — the paper's inference-network idea, generalised beyond a fixed start.

    The network reads the two crops, their difference, the log of their mean squared change and the
    action (one-hot), and outputs the probability q_t that the move went through. Training: the
    state is ``s_t = s_{t-1} + M a_t · q_t`` with the soft probability, sharpened over training (its
    logit divided by a temperature falling from 1 to 0.3), so the memory's KL (crops seen at the
    same state must match) is the only teacher — no labels from the environment, no pixel-shift
    rule; the gate is held open for the first ``gate_open_iters`` iterations (M learns first).
    Observing: every move goes to the multi-hypothesis tracker (``localisation.track_moves``) with the
    network's q as its lean, capped at ``learned_unsure`` from certainty (overturning a sure decision
    costs ~4 nats, one view conflict 50): the network decides wherever the views allow either outcome,
    and the views overrule it where one outcome is impossible. A view that did not change and that a
    one-pixel slide leaves unchanged too (flat, or uniform along a direction: a wall and a free move
    explain it alike, and the network never saw one in training) leans on ``blocked_prior`` instead.
    Imagining, the span prior and
    the edge memory are ``EdgeWalls``'. Assumes: the same cell shows the same view.
    """

    SPAN_SHARE = 0.5
    """The localiser's decided walks are right on ~99.9 % of moves, so one walk in ten has a wrong "free"
    that stretches its span: the median span of the (full-length, sharpened) walks it counts, not the 1 % tail."""
    SHARPEN_ITERS = 400
    """Main iterations, after ``gate_open_iters``, over which the training gate sharpens to ``FINAL_TEMPERATURE``;
    a run needs more than the two together (the ``learned`` preset's 700 against 100 + 400)."""
    FINAL_TEMPERATURE = 0.3
    """The training gate's temperature at the end of its schedule, the one observing uses (sharper, 0.1,
    saturated the gate and let it collapse to "every move blocked" within 150 iterations)."""

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__(config)
        width = 4 * config.gate_hidden
        self.net = nn.Sequential(
            nn.Linear(3 * config.pixels + 1 + config.num_actions, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 1),
        )
        nn.init.constant_(self.net[-1].bias, config.gate_init_bias)
        self.held_open = False
        self.temperature = 1.0

    def set_iteration(self, iteration: int) -> None:
        """Held open for ``gate_open_iters`` iterations, then the training gate sharpens: its temperature
        falls from 1 to ``FINAL_TEMPERATURE`` over the next ``SHARPEN_ITERS`` (soft decisions early carry
        gradient to both outcomes; sharp ones late put the keys on the lattice, where a right decision is an exact match)."""
        self.held_open = iteration < self.config.gate_open_iters
        progress = min(max(iteration - self.config.gate_open_iters, 0) / self.SHARPEN_ITERS, 1.0)
        self.temperature = 1.0 - (1.0 - self.FINAL_TEMPERATURE) * progress

    @torch.no_grad()
    def count_spans(self, moves: StateTransition, states: Tensor,
                    reduce: Callable[[Tensor], Tensor] | None = None, actions: Tensor | None = None) -> None:
        """The world span (and the wall counts) from the training walks as the localiser decides them, counted only once its
        gate has sharpened (before, held open or soft, the decided walks are dead reckoning or guesses,
        and one such walk in a hundred would stretch the span). That is iteration ``gate_open_iters`` +
        ``SHARPEN_ITERS`` on: a shorter run (the debug and quick presets) learns no span and imagines with the
        extent prior. The learned preset's curriculum ends at 500, so the walks counted are full length; the median span
        assumes at least half of them cross the world (true for 288 steps on a 9×9 grid)."""
        if self.temperature <= self.FINAL_TEMPERATURE + 1e-9:
            super().count_spans(moves, states, reduce, actions)

    def moved_probability(self, pixels: Tensor, actions: Tensor, temperature: float = 1.0) -> Tensor:
        """q(moved | x_{t-1}, x_t, a_t) for every step: pixels (B, T, H, W, C), actions (B, T) → (B, T);
        step 0 (the reset) gets 1. ``temperature`` divides the logit (training's sharpening)."""
        before, after = pixels[:, :-1].flatten(2), pixels[:, 1:].flatten(2)
        change = crop_change(pixels)[:, 1:].unsqueeze(-1)
        action = F.one_hot(actions[:, 1:].long(), self.config.num_actions).to(pixels.dtype)
        features = torch.cat([before, after, after - before, torch.log(change + 1e-6) / 3, action], -1)
        moved = torch.sigmoid(self.net(features).squeeze(-1) / temperature)
        return torch.cat([moved.new_ones(moved.shape[0], 1), moved], 1)

    def infer(self, moves: StateTransition, pixels: Tensor, actions: Tensor, *,
              for_training: bool = False) -> ObservedWalk:
        c = self.config
        step_moves = moves.action_matrix()[actions]  # (B, T, S); the stay action's row is 0
        moving = actions != c.stay_action
        moving[:, 0] = False
        if for_training and self.training:
            moved = (step_moves.new_ones(actions.shape) if self.held_open
                     else self.moved_probability(pixels, actions, self.temperature))
            gates = torch.where(moving, moved, torch.ones_like(moved))
            soft = (step_moves * gates.unsqueeze(-1)).cumsum(1)
            if c.state_noise > 0:
                soft = soft + (c.state_noise * torch.randn_like(soft)).cumsum(1)
            decided = (step_moves * (gates > 0.5).to(soft.dtype).unsqueeze(-1)).cumsum(1).detach()
            return ObservedWalk(decided, gates, None, soft)
        with torch.no_grad():
            moved = self.moved_probability(pixels, actions, self.FINAL_TEMPERATURE)
            threshold = self.tracker_threshold(pixels, actions)  # (B,)
            # A view that did not change, and that some slide would leave unchanged (flat, or uniform along
            # one direction), is explained by a wall and by a free move alike: the views cannot decide it.
            unchanged = crop_change(pixels) <= threshold.unsqueeze(1)
            indistinct = unchanged & ~distinctive_views(pixels, threshold[:, None, None])
            # Every move goes to the tracker with the network's q as its lean, capped at learned_unsure from
            # certainty: a sure decision costs ~4 nats to overturn, one view conflict 50. A flat view's lean
            # is the prior, not the network's (it never saw a flat view in training).
            lean = torch.where(indistinct, torch.full_like(moved, c.blocked_prior), 1 - moved)
            beliefs = MoveBeliefs(blocked=moving & (moved < 0.5), undecided=moving,
                                  p_blocked=lean.clamp(c.learned_unsure, 1 - c.learned_unsure))
            blocked = self.track(moves, pixels, actions, beliefs, threshold=threshold)
        free = (~blocked).to(step_moves.dtype)
        free[:, 0] = 0.0
        states = (step_moves * free.unsqueeze(-1)).cumsum(1)
        return ObservedWalk(states, 1.0 - blocked.to(step_moves.dtype))


@register_wall_model("absolute")
class AbsoluteGate(WallModel):
    """The seed's wall model: ``g_t = gate(s_{t-1} + M a_t)``, a small learned sigmoid network of the
    absolute state (``StateTransition.gate_net``); the actions are trusted.

    Exact when every episode starts on the same cell; wrong when the start moves, because s_0 = 0
    then names a different cell. Warm-up: for the first ``gate_open_iters`` training iterations the
    gate is held open (every move succeeds), so M first learns which way each action points.
    """

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__(config)
        self.held_open = False

    def set_iteration(self, iteration: int) -> None:
        self.held_open = iteration < self.config.gate_open_iters

    @staticmethod
    def gate(moves: StateTransition, proposed: Tensor) -> Tensor:
        """σ_d: probability that a move ending at ``proposed`` (..., S) is allowed → (...)."""
        return torch.sigmoid(moves.gate_net(proposed)).squeeze(-1)

    def infer(self, moves: StateTransition, pixels: Tensor, actions: Tensor, *,
              for_training: bool = False) -> ObservedWalk:
        """The gated rollout of the actions alone (the pixels are not read); transition noise in
        train mode. The warm-up hold applies to the training walk only."""
        return ObservedWalk(*self.rollout(moves, actions, gate_open=for_training and self.held_open))

    def rollout(self, moves: StateTransition, actions: Tensor, gate_open: bool = False) -> tuple[Tensor, Tensor]:
        """actions (B, T) long → states (B, T, S) with s_0 = 0, and gate values (B, T) (gates[:, 0] = 1).
        ``gate_open`` bypasses the gate (every move succeeds)."""
        batch, steps = actions.shape
        step_moves = moves.action_matrix()[actions]  # (B, T, S)
        state = step_moves.new_zeros(batch, self.config.s_dim)
        states, gates = [state], [step_moves.new_ones(batch)]
        noise = self.config.state_noise if self.training else 0.0
        for t in range(1, steps):
            proposed = state + step_moves[:, t]
            gate = step_moves.new_ones(batch) if gate_open else self.gate(moves, proposed)
            state = state + step_moves[:, t] * gate.unsqueeze(-1)
            if noise > 0:
                state = state + noise * torch.randn_like(state)
            states.append(state)
            gates.append(gate)
        return torch.stack(states, 1), torch.stack(gates, 1)

    def move_rule(self, moves: StateTransition) -> MoveRule:
        def decide(state: Tensor, move: Tensor, moving: Tensor, edges: EdgeMemory,
                   visited: Tensor) -> tuple[Tensor, EdgeMemory]:
            return self.gate(moves, state + move), edges

        return decide

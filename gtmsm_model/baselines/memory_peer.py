"""What the two generic memory peers (``retrieval_transformer``, ``pose_retrieval``) share: the bit they are
given, their place signal, and their training and prediction (``MemoryPeer``).

The bit: one per memorised step, "did the view change?" ("unknown" where no view was seen: the reset and
every predicted step). A learned integrator over (action, bit) can express a blocked move (the bit says
the window did not slide), which a per-action count of moves cannot. The bit is a fixed function of the
memorised crops, not privileged information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gtmsm_env.world import NUM_ACTIONS
from gtmsm_model.baselines.base import TrainedModel, to_pixels, withheld_and_future, withheld_steps
from gtmsm_model.memory import crop_change

UNCHANGED, CHANGED, UNKNOWN = 0, 1, 2
BIT_VALUES = 3
INIT_STD = 0.05
"""Initial length scale of the integrator's step vectors: small, so poses start near each other and the
place loss pushes them apart to about one unit."""
REACH = 0.5
"""A predicted move is kept if it does not pass the memory's extent in its direction by more than this many
mean memorised moves (and a move shorter than that is none)."""
STEP_SCALE = 10.0
"""The step vectors are stored divided by this, so Adam moves them this many times faster than the
network's weights."""
SAME = 1e-7
"""Two consecutive crops whose mean squared difference is at most this count as the same view."""


def view_change_bits(memorised: Tensor, steps: int) -> Tensor:
    """memorised (B, tau, H, W, C) pixels in [0, 1] → (B, steps) long: CHANGED / UNCHANGED for memorised
    steps 1..tau-1, UNKNOWN for step 0 and for steps tau..steps-1. Training's withheld memorised crops
    keep their bits: they say where the walk went, which is what the peer must learn (that an unchanged
    bit also says a withheld crop equals its neighbour is a shortcut of training only: no predicted
    step has a bit)."""
    batch, tau = memorised.shape[:2]
    bits = torch.full((batch, steps), UNKNOWN, dtype=torch.long, device=memorised.device)
    if tau > 1:
        bits[:, 1:tau] = (crop_change(memorised)[:, 1:] > SAME).long()
    return bits


def step_features(actions: Tensor, bits: Tensor, num_actions: int) -> Tensor:
    """(B, T) actions and bits → (B, T, num_actions + BIT_VALUES) one-hot features."""
    return torch.cat([F.one_hot(actions, num_actions).float(), F.one_hot(bits, BIT_VALUES).float()], -1)


class Integrator(torch.nn.Module):
    """A learned pose per step from (action, view-change bit), returned as (B, T, size).

    Memorised steps: the running sum of a learned vector per (action, bit) pair — a path integrator,
    which can learn that a move whose view did not change went nowhere. Predicted steps have no bit: each
    tries its action's "changed" vector and stays put if that passes the memory's extent in the move's own
    direction (the largest projection of a memorised pose on it) by more than ``REACH`` (half a move) —
    the peer's only prior, "the world ends where the memory ends", the same guess the no-learning
    reference makes for untried edges (its visited box, in the learned coordinates).
    Everything else (what each action does, that an unchanged view means a blocked move, the step length)
    is learned, from the prediction loss (through retrieval) and ``place_loss``.

    Measured (one seed, 150 CPU s of training, the reference's 32 validation rollouts,
    revisited MSE; the memorisation mean scores 0.0207 there): the retrieval transformer 0.0092 and pose
    retrieval 0.0053 with this extent rule; 0.0192 and about 0.02 when a predicted move had to land near
    a memorised pose (the walk then stopped at the first interior cell the memory had missed and was off
    for the rest of the episode: a predicted step's nearest memorised pose was at its true cell 42 % of
    the time, against 86 % with the extent rule, for the place loss's integrator alone after 300 steps).

    (An earlier version added a GRU's correction to the sum: it broke the sum's exact return to the same
    pose after a loop, and with it retrieval: both peers then scored worse than the memorisation mean.)"""

    def __init__(self, num_actions: int, size: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.step = torch.nn.Embedding(num_actions * BIT_VALUES, size)
        torch.nn.init.normal_(self.step.weight, std=INIT_STD / STEP_SCALE)

    def forward(self, actions: Tensor, bits: Tensor, tau: int) -> Tensor:
        vectors = STEP_SCALE * self.step(actions * BIT_VALUES + bits)  # (B, T, size)
        memorised = vectors[:, :tau].cumsum(1)
        if actions.shape[1] == tau:
            return memorised
        moved = bits[:, :tau] == CHANGED  # the unit: the mean length of the memorised moves whose view changed
        unit = vectors[:, :tau].detach().norm(dim=-1)[moved].mean() if moved.any() else vectors.new_tensor(1.0)
        reach2 = (REACH * unit).square()
        # What a predicted step needs depends only on its action: each action's "changed" vector, its direction,
        # the memory's extent that way (the largest projection of a memorised pose on it) and whether it is a move.
        slid = STEP_SCALE * self.step.weight[CHANGED::BIT_VALUES]  # (A, size): row a is action a's "changed" vector
        direction = F.normalize(slid.detach(), dim=-1)  # only compared, never differentiated
        extent = (memorised.detach() @ direction.T).amax(1) + REACH * unit  # (B, A)
        is_move = slid.square().sum(-1) > reach2  # a move shorter than the reach is none
        pose, poses = memorised[:, -1], []
        for action in actions[:, tau:].unbind(1):
            tried = pose + slid[action]
            inside = (tried.detach() * direction[action]).sum(-1) <= extent.gather(1, action[:, None])[:, 0]
            keep = inside & is_move[action]
            pose = torch.where(keep.unsqueeze(-1), tried, pose)
            poses.append(pose)
        return torch.cat([memorised, torch.stack(poses, 1)], 1)


LOG_SHARPNESS = 0.0
"""Initial log of β in a peer's retrieval weights softmax(−β‖p − p_k‖²), learned from there (a sharper start,
β ≈ 7, measured worse: 0.0221 against 0.0192 revisited after 150 CPU s)."""
IDENTICAL = 1e-4
"""Two crops whose random 4-number signatures lie this close count as identical in ``place_loss`` (a crop
differing from another by one grey level in one pixel moves its signature by about 0.004)."""
DISTINCT_STD = 0.02
"""A crop whose pixels' std is below this is too flat to say where it was seen: ``place_loss`` neither pulls two
identical such crops together nor pushes them apart (a free move across a flat area leaves the view
unchanged); it still pushes them away from every crop they differ from."""


def place_loss(memorised: Tensor, poses: Tensor) -> Tensor:
    """A self-supervised loss on the memorised walk that teaches the integrator where it is: two memorised
    steps whose crops are identical (and not flat) were at one place, so their poses are pulled together;
    steps with different crops were at different places, so their poses are pushed at least 1 apart (a
    contrastive hinge). This is loop closure learned from the peer's own memory (no labels, no grid): the
    prediction loss reaches the step vectors only through retrieval, which is blind until the poses
    already mean something.

    memorised (B, tau, H, W, C) pixels; poses (B, tau, P)."""
    flat = memorised.flatten(2)
    probe = torch.randn(flat.shape[-1], 4, generator=torch.Generator().manual_seed(0)).to(flat)
    signature = flat @ probe  # identical crops share it; different ones almost surely differ
    identical = torch.cdist(signature, signature) <= IDENTICAL  # (B, tau, tau)
    distinct = (flat.std(-1) > DISTINCT_STD).unsqueeze(1)
    same, different = identical & distinct, ~identical  # identical flat crops: no evidence either way
    distance = torch.cdist(poses, poses)
    pull = (distance.square() * same).sum() / same.sum().clamp(min=1)
    push = (torch.relu(1.0 - distance).square() * different).sum() / different.sum().clamp(min=1)
    return pull + push


@dataclass
class MemoryPeerConfig:
    """What ``MemoryPeer``'s training and prediction read; each peer's config adds its sizes."""

    num_actions: int = NUM_ACTIONS
    """Number of discrete actions."""
    min_tau: int = 16
    """Smallest memorisation length drawn for a training batch."""
    train_horizon: int = 256
    """Training sequences are the budget's tau memorised steps plus this many more (the evaluation's
    horizon), the memorisation split drawn anywhere in them."""
    hide_share: float = 0.25
    """Share of a training batch's memorised steps whose crops are withheld, recalled from the rest and
    predicted (the memorisation phase's own revisits: many and near)."""
    place_weight: float = 0.1
    """Weight of the place loss (``place_loss``) beside the prediction MSE."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    eval_chunk: int = 8
    """Sequences per forward pass at prediction time."""


class MemoryPeer(TrainedModel):
    """Training and prediction of a memory peer whose network maps (memorised crops, actions, withheld
    memorised steps) to the withheld crops and the future ones.

    Training: MSE of the predicted crops — the future after a random memorisation split in
    ``[min_tau, T)`` (short and long memories in one run) and a ``hide_share`` of the memorised crops,
    withheld and predicted from the rest: the memorisation phase's own revisits are many and near, the
    easy lessons in where-am-I that the far predicted steps alone teach slowly (GTM-SM's memory loss on
    the memorisation phase is the same idea) — plus ``place_weight`` × ``place_loss`` on the memorised
    walk's poses. Prediction: every future crop in one pass, in chunks of ``eval_chunk`` sequences."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._rng = np.random.default_rng(0)

    def loss(self, pixels: Tensor, actions: Tensor, tau: int) -> Tensor:
        steps = pixels.shape[1]
        low = min(self.config.min_tau, steps - 1)
        split = int(self._rng.integers(low, steps)) if steps - 1 > low else low
        hidden = withheld_steps(pixels.shape[0], split, self.config.hide_share, pixels.device)
        target = withheld_and_future(pixels, split, hidden)
        predicted = (self.net(pixels[:, :split], actions, hidden) - target).square().mean()
        if self.config.place_weight == 0:
            return predicted
        memorised = pixels[:, :split]
        poses = self.net.integrator(actions[:, :split], view_change_bits(memorised, split), split)
        return predicted + self.config.place_weight * place_loss(memorised, poses)

    @torch.no_grad()
    def predict(self, observations, actions, tau, positions=None) -> np.ndarray:
        memorised, actions = self.prediction_inputs(observations, actions, tau)
        parts = []
        for start in range(0, len(actions), self.config.eval_chunk):
            end = start + self.config.eval_chunk
            parts.append(self.net(to_pixels(memorised[start:end], self.device), actions[start:end]).cpu())
        return torch.cat(parts).numpy().astype(np.float32)

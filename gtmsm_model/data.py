"""Where training and evaluation sequences come from: the env's rollouts, live or from a file.

Every model in this package (GTM-SM and the baselines) reads batches through a
``RolloutSampler``: ``sample(batch_size, length)`` returns the first ``length`` steps of
``batch_size`` sequences. Sequences always start at the reset, because GTM-SM's state starts at
s_0 = 0 where the agent starts.

Held-out data: ``heldout_rollouts`` draws evaluation sequences from a seed stream that training
never touches (training uses ``seed``; evaluation uses ``seed + HELDOUT_SEED_OFFSET``), so with
the procedural default source, evaluation images are never seen in training. For a finite
source (a folder or an array) pass a separate evaluation source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtmsm_env.images import make_image_source
from gtmsm_env.rollouts import Rollouts, collect_rollouts
from gtmsm_env.world import World

HELDOUT_SEED_OFFSET = 1_000_003


@dataclass
class Batch:
    """A training batch as tensors: observations uint8 (B, T, H, W, C), actions long (B, T),
    positions long (B, T, 2) (true grid positions: only oracle baselines and metrics may read them)."""

    observations: torch.Tensor
    actions: torch.Tensor
    positions: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.observations.to(device), self.actions.to(device), self.positions.to(device))


def rollouts_to_batch(rollouts: Rollouts, length: int | None = None) -> Batch:
    length = rollouts.actions.shape[1] if length is None else length
    return Batch(
        torch.from_numpy(np.ascontiguousarray(rollouts.observations[:, :length])),
        torch.from_numpy(np.ascontiguousarray(rollouts.actions[:, :length])).long(),
        torch.from_numpy(np.ascontiguousarray(rollouts.positions[:, :length])).long(),
    )


class RolloutSampler:
    """Batches of sequences, either generated on the fly or drawn from a dataset file.

    Args:
        seed: with the ``key`` of each ``sample`` call, fixes what that call returns: the batch
            for (seed, key) is the same whenever it is drawn, which makes resumed training
            identical to an uninterrupted run.
        dataset: path to an ``.npz`` written by ``gtmsm-rollouts``, or loaded :class:`Rollouts`
            (e.g. a Minari dataset); ``None`` generates live rollouts with the native vector env
            and the reference random walk.
        image_source: image source for live rollouts (``None`` = the procedural default); built
            once here (a folder is decoded once, into one uint8 array), then reused by every batch.
        world: the :class:`~gtmsm_env.world.World` of live rollouts (default: ``World()``).
        rollout_kwargs: further ``collect_rollouts`` settings of live rollouts (``mean_hold``).
    """

    def __init__(
        self,
        seed: int,
        dataset: str | Path | Rollouts | None = None,
        image_source: Any = None,
        world: World | None = None,
        **rollout_kwargs: Any,
    ) -> None:
        self.seed = seed
        self.world = World() if world is None else world
        self.rollout_kwargs = rollout_kwargs
        self.rollouts = (dataset if isinstance(dataset, Rollouts)
                         else Rollouts.load(dataset) if dataset is not None else None)
        # Built once: a folder is decoded here, not again for every batch (one uint8 array).
        self.image_source = (None if self.rollouts is not None
                             else make_image_source(image_source, self.world.image_size))

    @property
    def max_length(self) -> int | None:
        return None if self.rollouts is None else self.rollouts.actions.shape[1]

    def sample(self, batch_size: int, length: int, key: int = 0, shard: int = 0) -> Batch:
        """``batch_size`` sequences of ``length`` steps; the same (seed, key, shard) gives the same batch.

        ``shard`` names an independent stream (one per process under DDP; shard 0 is the
        single-process stream)."""
        rng = np.random.default_rng([self.seed, key] if shard == 0 else [self.seed, key, shard])
        if self.rollouts is None:
            seed = int(rng.integers(2**31 - 1))
            rollouts = collect_rollouts(
                batch_size, length, seed=seed, image_source=self.image_source, world=self.world,
                **self.rollout_kwargs
            )
            return rollouts_to_batch(rollouts)
        if length > self.rollouts.actions.shape[1]:
            raise ValueError(
                f"the dataset's sequences have {self.rollouts.actions.shape[1]} steps; "
                f"training asks for {length}. Write longer rollouts (--seq-len) or lower seq_len."
            )
        index = rng.integers(len(self.rollouts), size=batch_size)
        return rollouts_to_batch(self.rollouts[index], length)


def heldout_rollouts(
    num_sequences: int,
    length: int,
    seed: int,
    image_source: Any = None,
    world: World | None = None,
    **env_kwargs: Any,
) -> Rollouts:
    """Evaluation rollouts from a seed stream disjoint from training's (see module docstring), in
    ``world`` (or the loose ``collect_rollouts`` settings ``env_kwargs``)."""
    return collect_rollouts(
        num_sequences, length, seed=seed + HELDOUT_SEED_OFFSET, image_source=image_source,
        world=World() if world is None else world, **env_kwargs
    )

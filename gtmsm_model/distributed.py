"""Several processes: PyTorch DistributedDataParallel for ``gtmsm train`` under ``torchrun``.

    torchrun --nproc_per_node=4 $(which gtmsm) train --preset quick --out-dir runs/ddp

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; the process group uses
gloo on the CPU and nccl on CUDA (each rank on ``cuda:LOCAL_RANK``). The global batch
(``--batch-size``) is split evenly: each rank draws its share from its own rollout stream (shard
= rank), so no data is shared or duplicated. Rank 0 alone writes the run folder (checkpoint with
``world_size``, config, log, plots); every rank reads the checkpoint on ``--resume``.

Equivalence: a single process with ``--data-shards N`` draws the same N shards and averages their
losses, so it takes the same optimisation steps as N processes (within floating-point tolerance):
each shard's sampling noise is seeded from (seed, step, shard), not from a global RNG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gtmsm_model.config import ConfigError


@dataclass
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size`` (1 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> DistributedContext:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    def start(self, device: torch.device) -> torch.device:
        """Join the process group (gloo on CPU, nccl on CUDA); returns this rank's device."""
        if not self.enabled:
            return device
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    rank=self.rank, world_size=self.world_size)
        return device

    def stop(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The sum of ``values`` over ranks (itself when single-process)."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values)
        return values

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over ranks (itself when single-process)."""
        return self.sum(values) / self.world_size if self.enabled else values

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank; ``value`` itself when
        single-process. Every rank must call it (after :meth:`start`)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any rank (stop requests must agree)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


class LossModule(nn.Module):
    """The model's two training objectives behind ``forward``, so DDP can wrap them.

    Phase "vae": the VAE warm-up's loss parts (``GTMSM.vae_loss``). Phase "main": the loss parts
    and the walks' states (``GTMSM.loss_and_states``), which the trainer hands to ``count_spans``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, phase: str, *args: Any, **kwargs: Any) -> Any:
        if phase == "vae":
            return self.model.vae_loss(*args, **kwargs)
        return self.model.loss_and_states(*args, **kwargs)


def wrap(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """``LossModule(model)``, inside DDP when there are several processes.

    ``find_unused_parameters``: the VAE warm-up, the absolute gate's warm-up and the edge wall
    model (which never reads the gate network) leave parameters without gradients, which plain
    DDP treats as an error.
    """
    module = LossModule(model)
    if not context.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


@dataclass
class Shards:
    """Which rollout streams this process draws each step, out of how many in all."""

    local: list[int]
    total: int

    @classmethod
    def for_run(cls, data_shards: int, batch_sizes: dict[str, int], context: DistributedContext) -> Shards:
        """``data_shards`` streams (0: one per process); every batch size in ``batch_sizes``
        (field name → size) must divide among them. ``ConfigError`` naming the field otherwise."""
        total = data_shards or context.world_size
        if context.enabled and total != context.world_size:
            raise ConfigError(f"`data_shards` {data_shards} must equal the number of processes "
                             f"({context.world_size}) under torchrun (or be 0)")
        for name, size in batch_sizes.items():
            if size % total:
                raise ConfigError(f"`{name}` {size} must be divisible by the {total} data shards/processes")
        return cls([context.rank] if context.enabled else list(range(total)), total)


def shard_seed(seed: int, step: int, shard: int) -> int:
    """The torch seed of one shard's sampling noise at one step (same in every process layout)."""
    return int(np.random.default_rng([seed, step, shard, 3]).integers(2**62))

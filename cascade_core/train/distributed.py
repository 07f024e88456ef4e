"""Multi-GPU / multi-node training through ``torchrun`` and PyTorch DistributedDataParallel.

Launch: ``torchrun --nproc_per_node=N -m cascade_core.train CONFIG.json`` (add ``--nnodes``/``--rdzv_*``
for several machines). torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; without them training runs in
one process. The global batch is split evenly across ranks (every rank draws the same per-sample
randomness and takes its slice), and DDP averages gradients, so N processes take exactly the step one
process takes on the whole batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "init_world", "shutdown_world"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def local_slice(self, global_batch: int) -> slice:
        """This rank's part of a global batch (which must divide evenly)."""
        if global_batch % self.size:
            raise ValueError(f"batch_size {global_batch} must be divisible by the number of processes {self.size}")
        n = global_batch // self.size
        return slice(self.rank * n, (self.rank + 1) * n)


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on the CPU); a 1-process World otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

"""Single-process or ``torchrun`` (DDP) execution with the same code.

Under ``torchrun`` the environment carries ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; the process
group uses NCCL on GPU and gloo on CPU. Batches are cut from one seeded global order so that a
run on W processes sees exactly the global batches of a single-process run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime() -> Runtime:
    """Join the process group when started by ``torchrun``; pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank=rank, world_size=world_size, device=device)


def shutdown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of each global batch of a seeded permutation (last partial batch dropped).

    Args:
        size: dataset length.
        global_batch: samples per optimisation step across all ranks; must divide by ``world_size``.
        seed: base seed; the order of epoch ``e`` depends only on ``(seed, e)``.
    """

    def __init__(self, size: int, global_batch: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} must be divisible by the {world_size} processes")
        if size < global_batch:
            raise ValueError(f"the training split has {size} samples, fewer than one batch of {global_batch}")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        share = self.global_batch // self.world_size
        for start in range(0, len(self) * self.global_batch, self.global_batch):
            offset = start + self.rank * share
            yield order[offset : offset + share]

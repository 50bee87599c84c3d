"""Data-parallel runs under ``torchrun``: who this process is, and the few collective steps the runner needs.

Under ``torchrun --nproc_per_node=N experiment.py ...`` every rank runs the
same phases: all train (DistributedDataParallel, each rank a slice of every
global batch), rank 0 alone writes files and takes artifact locks, and the
others follow its decisions (reuse or make) and wait at barriers for its
writes. Outside torchrun (no ``WORLD_SIZE`` > 1) every function here is the
single-process no-op, so nothing else needs to know.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_type: str) -> None:
    """Join the process group torchrun prepared (NCCL on CUDA, gloo on CPU); a no-op outside torchrun."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t

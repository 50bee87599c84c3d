"""Device choice and the per-device speed settings (autocast, memory layout)."""

from __future__ import annotations

import contextlib
import os
import re

import torch
from torch import nn

from utils.errors import UserError


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's ``device``; UserError when this machine does not have it.

    Never a fallback to CPU: a paper config that asks for ``cuda`` would
    otherwise run for days on a CPU after a warning nobody reads (DESIGN 3.2).
    """
    how = "run on the CPU with -device cpu (or set device: cpu in the config)"
    cuda = re.fullmatch(r"cuda(?::(\d+))?", name)
    if name.startswith("cuda") and not cuda:
        raise UserError(f"device: must be cpu, cuda, cuda:N or mps, got {name!r}")
    if cuda:
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} was requested but this machine has no CUDA GPU; {how}")
        count = torch.cuda.device_count()
        if cuda[1] is not None and int(cuda[1]) >= count:
            have = "1 CUDA GPU (cuda:0)" if count == 1 else f"{count} CUDA GPUs (cuda:0 to cuda:{count - 1})"
            raise UserError(f"device {name!r} was requested but this machine has {have}; choose one of those, "
                            f"or {how}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device 'mps' was requested but this machine has no MPS (Apple GPU) device; {how}")
    return torch.device(name)


PRECISIONS = ("fp32", "bf16")
# One process trains under one config, so its precision is process state, set once by the runner;
# evaluation deep inside matching and interpolation must use the same precision as training.
_precision = "fp32"


def set_precision(precision: str) -> None:
    """``fp32`` (the paper's tables) or ``bf16`` autocast for every training and evaluation after this."""
    global _precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    _precision = precision


def get_precision() -> str:
    return _precision


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when the precision is ``bf16`` (CUDA or CPU); full fp32 otherwise.

    Precision is part of the dense artifact key: a bf16 model is not the same
    artifact as an fp32 one, whichever device made it.
    """
    if _precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device``; channels_last for conv nets on CUDA and CPU.

    On CUDA it selects the faster cuDNN kernels; on CPU oneDNN's convolutions
    run natively in NHWC and skip the reorders NCHW costs (ResNet20 trains
    about 1.3x faster per step; benchmarks/RESULTS.md). Only the strides
    change: state dicts, masks and checkpoints are the same tensors.
    """
    model = model.to(device)
    if device.type in ("cuda", "cpu") and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def set_cpu_threads(threads: int | None, device: torch.device) -> int:
    """Set PyTorch's intra-op threads; returns the number used.

    ``None`` on CPU means one thread per available core but one. Measured on a
    2-core machine with one other busy process, an MLP epoch took 0.6-0.7 s per
    100 batches on one thread against 4-19 s on two: intra-op threads that wait
    for a core held by someone else stall every op. Leaving a core free costs
    little when the machine is idle and avoids that cliff when it is not.
    """
    if threads is None:
        if device.type != "cpu":
            return torch.get_num_threads()
        threads = max(1, len(os.sched_getaffinity(0)) - 1)
    torch.set_num_threads(threads)
    return threads

"""Per-epoch random generators derived from (seed, epoch, stream).

Every epoch gets fresh generators computed from the run seed and the epoch
number alone, so epoch ``e`` draws the same shuffle and the same augmentation
whatever happened before it. That makes resuming an interrupted run exact
without saving any data RNG state.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

SHUFFLE = "shuffle"
AUGMENT = "augment"


def epoch_seed(seed: int, epoch: int, stream: str) -> int:
    """A well-mixed 63-bit seed for ``stream`` in ``epoch`` of a run seeded ``seed``.

    ``SeedSequence`` hashes the three numbers together, so nearby seeds and
    epochs give unrelated streams (plain ``seed + epoch`` would make seed 1's
    epoch 0 equal seed 0's epoch 1).
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    stream_id = zlib.crc32(stream.encode())
    state = np.random.SeedSequence([seed, epoch, stream_id]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def epoch_generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``stream`` in ``epoch``; CPU so results do not depend on the device."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(epoch_seed(seed, epoch, stream))
    return generator


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` training examples in ``epoch`` (int64, CPU)."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch, SHUFFLE))

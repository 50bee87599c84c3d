"""The interface every dataset presents to training: batches on the training device."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch
from torch import Tensor

from data.info import DatasetInfo

Batch = tuple[Tensor, Tensor]


class DataBundle(ABC):
    """Train and test splits of one dataset, served as (x, y) batches on ``device``.

    ``x`` is float32 NCHW, normalised with the dataset's mean/std; ``y`` is int64.
    """

    def __init__(self, info: DatasetInfo, batch_size: int, device: torch.device) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.info = info
        self.batch_size = batch_size
        self.device = device

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def in_channels(self) -> int:
        return self.info.in_channels

    @property
    @abstractmethod
    def num_train(self) -> int: ...

    @property
    @abstractmethod
    def num_test(self) -> int: ...

    @property
    def batches_per_epoch(self) -> int:
        """Training batches per epoch: the last partial batch is dropped."""
        return self.num_train // self.batch_size

    @abstractmethod
    def train_batches(self, epoch: int, seed: int, augment: bool = True,
                      shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """One epoch of training batches, shuffled by (seed, epoch), last partial batch dropped.

        Augmented only if ``augment`` and the dataset is augmented (``info.augment``).
        ``shard=(rank, world)`` yields only that rank's contiguous slice of every
        batch (data-parallel training): the slices of all ranks together are
        exactly the single-process batch, augmentation included.
        """

    @abstractmethod
    def eval_train_batches(self, max_batches: int | None = None) -> Iterator[Batch]:
        """The training set in a fixed order, not augmented, last partial batch kept; at most ``max_batches``.

        The order is the stored one for in-memory datasets (their files are not sorted by class) and a fixed
        seeded shuffle for image folders (which are), so the first batches cover the classes either way.
        """

    @abstractmethod
    def test_batches(self) -> Iterator[Batch]:
        """The test set in order, not augmented, last partial batch kept."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.info.name!r}, train={self.num_train}, test={self.num_test}, "
            f"batch_size={self.batch_size}, device={self.device})"
        )


def shard_slice(size: int, shard: tuple[int, int]) -> slice:
    """Rank ``shard[0]`` of ``shard[1]``'s part of a batch of ``size`` (which the world size divides)."""
    rank, world = shard
    per = size // world
    return slice(rank * per, (rank + 1) * per)

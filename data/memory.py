"""Datasets small enough to live on the training device as one uint8 tensor per split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from data.augment import crop_flip, draw_crop_flip
from data.bundle import Batch, DataBundle, shard_slice
from data.info import DatasetInfo
from data.normalize import Normalizer
from data.rng import AUGMENT, epoch_generator, epoch_permutation

PADDING = 4  # random crop padding, as in the usual CIFAR recipe RandomCrop(32, padding=4)


@dataclass(frozen=True)
class Splits:
    """Raw train and test data as loaded from disk: uint8 (N,C,H,W) images and int64 (N,) labels."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{split} images must be uint8 (N,C,H,W), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"{split} labels must be int64 ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}"
                )

    def subset(self, train: int | None, test: int | None) -> Splits:
        """The first ``train`` training and first ``test`` test examples (all where None)."""
        return Splits(self.train_x[:train], self.train_y[:train], self.test_x[:test], self.test_y[:test])


class InMemoryBundle(DataBundle):
    """Both splits held on ``device``; every batch is gathered, augmented and normalised there.

    The images are moved to the device once, as uint8 (a quarter the size of
    float32); per batch only an index tensor and the crop/flip parameters move.
    """

    def __init__(self, info: DatasetInfo, splits: Splits, batch_size: int, device: torch.device) -> None:
        super().__init__(info, batch_size, device)
        self._train_x = splits.train_x.to(device).contiguous()
        self._train_y = splits.train_y.to(device)
        self._test_x = splits.test_x.to(device).contiguous()
        self._test_y = splits.test_y.to(device)
        self._normalize = Normalizer(info.mean, info.std, device)

    @property
    def num_train(self) -> int:
        return self._train_x.shape[0]

    @property
    def num_test(self) -> int:
        return self._test_x.shape[0]

    def train_batches(self, epoch: int, seed: int, augment: bool = True,
                      shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        size, count = self.batch_size, self.batches_per_epoch
        part = shard_slice(size, shard)
        order = epoch_permutation(self.num_train, seed, epoch)[: count * size].to(self.device)
        params = None
        if augment and self.info.augment:
            # The whole epoch's parameters in one draw from a generator of their own, so the
            # shuffle is the same with and without augmentation.
            params = draw_crop_flip(
                count * size, PADDING, epoch_generator(seed, epoch, AUGMENT), flip=self.info.hflip
            ).to(self.device)
        for b in range(count):
            index = order[b * size : (b + 1) * size][part]
            x = self._train_x.index_select(0, index)
            if params is not None:
                x = crop_flip(x, params[b * size : (b + 1) * size][part], PADDING)
            yield self._normalize(x), self._train_y.index_select(0, index)

    def eval_train_batches(self, max_batches: int | None = None) -> Iterator[Batch]:
        return self._in_order(self._train_x, self._train_y, max_batches)

    def test_batches(self) -> Iterator[Batch]:
        return self._in_order(self._test_x, self._test_y, None)

    def _in_order(self, x: Tensor, y: Tensor, max_batches: int | None) -> Iterator[Batch]:
        starts = range(0, x.shape[0], self.batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        for start in starts:
            stop = start + self.batch_size
            yield self._normalize(x[start:stop]), y[start:stop]

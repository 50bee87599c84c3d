"""ImageNet (ILSVRC2012) streamed from ``<root>/train`` and ``<root>/val`` image folders.

Too large for memory, so images are decoded and augmented per sample in
DataLoader workers (RandomResizedCrop(224) + flip for training, Resize(256) +
CenterCrop(224) for evaluation). Workers emit uint8; normalisation happens on
the training device, so a quarter of the bytes cross to the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset

from data.bundle import Batch, DataBundle, shard_slice
from data.errors import DatasetNotFound
from data.info import DatasetInfo
from data.normalize import Normalizer
from data.rng import AUGMENT, epoch_generator, epoch_permutation, epoch_seed


def train_transform(size: int, flip: bool = True) -> Callable[[Any], Tensor]:
    from torchvision import transforms

    flips = [transforms.RandomHorizontalFlip()] if flip else []
    return transforms.Compose([transforms.RandomResizedCrop(size), *flips, transforms.PILToTensor()])


# An ImageFolder lists its files sorted by class, so "the first N" would be a handful of classes. Subsets and the
# fixed order of eval_train_batches are seeded shuffles instead. The seed is fixed, not the run's: a subset is
# part of what the data is (dense A and B must train on the same one), and so are the batches BN resets on.
SUBSET_SEED = 0


def seeded_subset(samples: list[tuple[str, int]], n: int | None, stream: str) -> list[tuple[str, int]]:
    """``n`` of ``samples`` drawn at random with a fixed seed, kept in folder order (all of them when None)."""
    if n is None or n >= len(samples):
        return list(samples)
    chosen = torch.randperm(len(samples), generator=epoch_generator(SUBSET_SEED, 0, stream))[:n]
    return [samples[i] for i in sorted(chosen.tolist())]


def eval_transform(size: int) -> Callable[[Any], Tensor]:
    from torchvision import transforms

    return transforms.Compose(
        [transforms.Resize(size * 256 // 224), transforms.CenterCrop(size), transforms.PILToTensor()]
    )


class SeededImages(Dataset):
    """Image files with a transform whose randomness is seeded per (run seed, epoch, sample index).

    Seeding each sample makes an epoch's augmentation the same whatever the
    number of workers (and with none), without touching the caller's global RNG.
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        loader: Callable[[str], Any],
        transform: Callable[[Any], Tensor],
        base_seed: int | None,
    ) -> None:
        self.samples = samples
        self.loader = loader
        self.transform = transform
        self.base_seed = base_seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        image = self.loader(path)
        if self.base_seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.base_seed + index) % 2**63)
            return self.transform(image), label


def image_folder(name: str, root: Path, split: str, how_to_get: str) -> Any:
    """torchvision ImageFolder over ``root/split``; its missing-folder error becomes DatasetNotFound."""
    from torchvision.datasets import ImageFolder

    folder = root / split
    try:
        return ImageFolder(str(folder))
    except FileNotFoundError as error:
        raise DatasetNotFound(name, [folder], how_to_get, str(error)) from error


class ImageNetBundle(DataBundle):
    def __init__(
        self,
        info: DatasetInfo,
        root: str | Path,
        batch_size: int,
        device: torch.device,
        num_workers: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
    ) -> None:
        super().__init__(info, batch_size, device)
        root = Path(root).expanduser()
        train = image_folder(info.name, root, "train", info.how_to_get)
        val = image_folder(info.name, root, "val", info.how_to_get)
        if train.classes != val.classes:
            raise ValueError(f"{root}: train/ and val/ have different class folders; labels would not agree")
        self.classes: list[str] = train.classes
        self._loader = train.loader
        self._train_samples: list[tuple[str, int]] = seeded_subset(train.samples, train_subset, "subset-train")
        self._test_samples: list[tuple[str, int]] = seeded_subset(val.samples, test_subset, "subset-test")
        # Matching and BN resets take the first batches of this order: every class, not the first few folders.
        self._eval_order: list[int] = torch.randperm(
            len(self._train_samples), generator=epoch_generator(SUBSET_SEED, 0, "eval-train-order")
        ).tolist()
        self.num_workers = num_workers
        self._normalize = Normalizer(info.mean, info.std, device)

    @property
    def num_train(self) -> int:
        return len(self._train_samples)

    @property
    def num_test(self) -> int:
        return len(self._test_samples)

    def train_batches(self, epoch: int, seed: int, augment: bool = True,
                      shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        order = epoch_permutation(self.num_train, seed, epoch).tolist()
        if augment and self.info.augment:
            images = SeededImages(
                self._train_samples,
                self._loader,
                train_transform(self.info.image_size, self.info.hflip),
                epoch_seed(seed, epoch, AUGMENT),
            )
        else:
            images = SeededImages(
                self._train_samples, self._loader, eval_transform(self.info.image_size), None
            )
        # Each rank decodes only its slice of every batch; per-sample augmentation seeds keep them the same images.
        part = shard_slice(self.batch_size, shard)
        batches = [b[part] for b in BatchSampler(order, self.batch_size, drop_last=True)]
        return self._stream(images, batches)

    def eval_train_batches(self, max_batches: int | None = None) -> Iterator[Batch]:
        count = (
            min(self.num_train, max_batches * self.batch_size) if max_batches is not None else self.num_train
        )
        images = SeededImages(self._train_samples, self._loader, eval_transform(self.info.image_size), None)
        return self._stream(images, BatchSampler(self._eval_order[:count], self.batch_size, drop_last=False))

    def test_batches(self) -> Iterator[Batch]:
        images = SeededImages(self._test_samples, self._loader, eval_transform(self.info.image_size), None)
        return self._stream(images, BatchSampler(range(self.num_test), self.batch_size, drop_last=False))

    def _stream(self, images: SeededImages, batches: BatchSampler) -> Iterator[Batch]:
        loader = DataLoader(
            images,
            batch_sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield self._normalize(x), y.to(self.device, non_blocking=True)

"""``build_data``: one entry point from a dataset name to batches on the training device."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from data.bundle import DataBundle
from data.cifar import load_cifar
from data.idx import load_fashion_mnist
from data.imagenet import ImageNetBundle
from data.info import DatasetInfo, dataset_info, normalized_as
from data.memory import InMemoryBundle, Splits
from data.svhn import load_svhn

LOADERS: dict[str, Callable[[str | Path, bool], Splits]] = {
    "cifar10": partial(load_cifar, "cifar10"),
    "cifar100": partial(load_cifar, "cifar100"),
    "svhn": load_svhn,
    "fashion-mnist": load_fashion_mnist,
}


def check_splits(info: DatasetInfo, splits: Splits) -> None:
    """Refuse data whose shape or labels disagree with the dataset's facts (e.g. a wrong folder)."""
    expected = (info.in_channels, info.image_size, info.image_size)
    for split, x, y in (("train", splits.train_x, splits.train_y), ("test", splits.test_x, splits.test_y)):
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{info.name} {split} images have shape {tuple(x.shape[1:])}, expected {expected}"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
            raise ValueError(f"{info.name} {split} labels outside 0..{info.num_classes - 1}")


def build_data(
    name: str,
    root: str | Path,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    download: bool = False,
    num_workers: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    normalization: str = "dataset",
) -> DataBundle:
    """Load dataset ``name`` from ``root`` and serve it as batches on ``device``.

    ``train_subset``/``test_subset`` keep N examples of each split, deterministically:
    the first N of in-memory datasets, a fixed seeded random N of image folders
    (whose files are sorted by class). Raises DatasetNotFound when the files
    are missing (after trying to download them if ``download``), KeyError for
    an unknown name, ValueError when not even one training batch fits.
    ``normalization`` (``dataset`` or ``imagenet``) chooses the inputs' mean and std
    (``data.info.normalized_as``).
    """
    info = normalized_as(dataset_info(name), normalization)
    for label, value in (("train_subset", train_subset), ("test_subset", test_subset)):
        if value is not None and value <= 0:
            raise ValueError(f"{label} must be positive or None, got {value}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    device = torch.device(device)
    if info.in_memory:
        splits = LOADERS[name](root, download).subset(train_subset, test_subset)
        check_splits(info, splits)
        bundle: DataBundle = InMemoryBundle(info, splits, batch_size, device)
    else:
        bundle = ImageNetBundle(info, root, batch_size, device, num_workers, train_subset, test_subset)
    if bundle.batches_per_epoch == 0:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {bundle.num_train} training examples of {name}"
        )
    return bundle

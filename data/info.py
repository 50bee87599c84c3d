"""Static facts about each supported dataset, known without loading it.

Models read the class count and input channels from here, so building a model
never touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from utils.facts import register_datasets


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_channels: int
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_memory: bool  # small enough to live as one uint8 tensor on the device
    augment: bool  # random crop (pad 4, or resized for ImageNet) during training, plus flips where `hflip`
    how_to_get: str  # told to the user when the files are missing
    # Random horizontal flips as part of the augmentation: not for digits (SVHN), which a mirror makes into
    # other shapes; the released SVHN loader has none either.
    hflip: bool = True


# ImageNet's per-channel mean and std: the released code normalised CIFAR-10 with these, not CIFAR-10's own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10", 3, 10, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, True,
        "set `download: true` on a machine that is online (torchvision downloads "
        "cifar-10-python.tar.gz and extracts cifar-10-batches-py/)",
    ),
    "cifar100": DatasetInfo(
        "cifar100", 3, 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True, True,
        "set `download: true` on a machine that is online (torchvision downloads "
        "cifar-100-python.tar.gz and extracts cifar-100-python/)",
    ),
    "svhn": DatasetInfo(
        "svhn", 3, 10, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), True, True,
        "set `download: true` on a machine that is online (torchvision downloads "
        "train_32x32.mat and test_32x32.mat)",
        hflip=False,
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 10, 28, (0.2860,), (0.3530,), True, False,
        "`apt-get install dataset-fashion-mnist` (Debian; files land in "
        "/usr/share/datasets/fashion-mnist) or set `download: true` on a machine that is online",
    ),
    "imagenet": DatasetInfo(
        "imagenet", 3, 1000, 224, IMAGENET_MEAN, IMAGENET_STD, False, True,
        "ImageNet cannot be downloaded automatically: put the ILSVRC2012 train/ and val/ "
        "folders (one sub-folder per class) under dataset_root",
    ),
}

# Config validation (utils/config.py) checks `dataset` against these: it may not import this module itself.
register_datasets(DATASETS)


def normalized_as(info: DatasetInfo, normalization: str) -> DatasetInfo:
    """``info`` with the mean and std of ``normalization``: ``dataset`` (its own) or ``imagenet``.

    A dataset of other than three channels takes ImageNet's statistics averaged over the three channels in
    each of its channels (a grey image's share of them), so the setting means the same kind of mismatch there.
    """
    if normalization == "dataset":
        return info
    if normalization != "imagenet":
        raise ValueError(f"normalization: must be 'dataset' or 'imagenet', got {normalization!r}")
    if info.in_channels == 3:
        return replace(info, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    grey_mean, grey_std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    return replace(info, mean=(grey_mean,) * info.in_channels, std=(grey_std,) * info.in_channels)


def dataset_info(name: str) -> DatasetInfo:
    """Facts about ``name``; raises KeyError listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None

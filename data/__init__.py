"""Datasets served as normalised batches on the training device.

``build_data(name, root, batch_size=..., device=...)`` returns a DataBundle;
small datasets live on the device as uint8 and are augmented batch-wise there,
ImageNet is streamed from image folders.
"""

from data.augment import CropFlipParams, crop_flip, draw_crop_flip, random_crop_flip
from data.build import build_data
from data.bundle import Batch, DataBundle
from data.errors import DatasetNotFound
from data.info import DATASETS, DatasetInfo, dataset_info
from data.memory import InMemoryBundle, Splits
from data.rng import epoch_generator, epoch_permutation, epoch_seed

__all__ = [
    "DATASETS",
    "Batch",
    "CropFlipParams",
    "DataBundle",
    "DatasetInfo",
    "DatasetNotFound",
    "InMemoryBundle",
    "Splits",
    "build_data",
    "crop_flip",
    "dataset_info",
    "draw_crop_flip",
    "epoch_generator",
    "epoch_permutation",
    "epoch_seed",
    "random_crop_flip",
]

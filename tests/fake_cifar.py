"""Tiny CIFAR-10/100 datasets written in the exact on-disk format torchvision downloads.

The real batch files were pickled by Python 2: their dict keys and the numpy
array's raw bytes are Python 2 ``str`` objects, which Python 3 loads as bytes
with ``encoding="bytes"`` and as str with ``encoding="latin1"`` (torchvision's
choice). We write bytes objects with the same pickle opcodes, so both readers
see these files just as they see the real ones.

The images are learnable: each class has its own colour shift and coarse
pattern, plus per-image noise, balanced so the per-channel mean is CIFAR's.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from data.info import dataset_info

LAYOUT = {
    # name: (folder, train files, test files, label key, meta file, meta key)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        b"labels",
        "batches.meta",
        b"label_names",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table we can extend
    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def dump_python2(obj: object, path: Path) -> None:
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)


def class_templates(num_classes: int, rng_seed: int = 1234) -> np.ndarray:
    """(K,3,32,32) float offsets from the mean image, one per class, summing to zero over classes.

    A colour shift and an 8×8 pattern upsampled to 32×32; the same for every
    seed, so train and test (and fake sets of different seeds) are one task.
    """
    rng = np.random.default_rng(rng_seed + num_classes)
    colour = rng.uniform(-40, 40, size=(num_classes, 3, 1, 1))
    pattern = rng.uniform(-25, 25, size=(num_classes, 1, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    templates = colour + pattern
    return templates - templates.mean(axis=0, keepdims=True)


def fake_images(
    labels: np.ndarray, num_classes: int, mean: tuple[float, ...], noise: float, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (N, 3072) rows, CHW row-major like CIFAR's ``data``."""
    base = np.asarray(mean).reshape(1, 3, 1, 1) * 255.0
    noise = rng.normal(0.0, noise, size=(len(labels), 3, 32, 32))
    images = base + class_templates(num_classes)[labels] + noise
    return np.clip(np.rint(images), 0, 255).astype(np.uint8).reshape(len(labels), 3 * 32 * 32)


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def write_fake_cifar(
    root: str | Path,
    name: str = "cifar10",
    n_train: int = 500,
    n_test: int = 100,
    seed: int = 0,
    noise: float = 20.0,
) -> Path:
    """Write a fake ``name`` (cifar10 or cifar100) under ``root``; returns the batch folder.

    ``root`` is what you pass to ``build_data`` (the folder is created inside
    it, as torchvision's download does). The training examples are split over
    the batch files like the real ones (five files for CIFAR-10). ``noise`` is
    the per-pixel standard deviation (in 0..255 units): raise it for a harder task.
    """
    folder_name, train_files, test_files, label_key, meta_file, meta_key = LAYOUT[name]
    info = dataset_info(name)
    rng = np.random.default_rng(seed)
    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)

    train_labels = balanced_labels(n_train, info.num_classes, rng)
    train_images = fake_images(train_labels, info.num_classes, info.mean, noise, rng)
    test_labels = balanced_labels(n_test, info.num_classes, rng)
    test_images = fake_images(test_labels, info.num_classes, info.mean, noise, rng)

    def write_split(files: list[str], images: np.ndarray, labels: np.ndarray, split: str) -> None:
        chunks = np.array_split(np.arange(len(labels)), len(files))
        for i, (file, rows) in enumerate(zip(files, chunks, strict=True)):
            entry = {
                b"batch_label": f"{split} batch {i + 1} of {len(files)}".encode(),
                label_key: [int(v) for v in labels[rows]],
                b"data": np.ascontiguousarray(images[rows]),
                b"filenames": [f"fake_{split}_{j}.png".encode() for j in rows],
            }
            if name == "cifar100":
                entry[b"coarse_labels"] = [int(v) // 5 for v in labels[rows]]
            dump_python2(entry, folder / file)

    write_split(train_files, train_images, train_labels, "training")
    write_split(test_files, test_images, test_labels, "testing")
    meta = {meta_key: [f"class_{k}".encode() for k in range(info.num_classes)]}
    if name == "cifar10":
        meta[b"num_cases_per_batch"] = int(np.ceil(n_train / len(train_files)))
        meta[b"num_vis"] = 3072
    else:
        meta[b"coarse_label_names"] = [f"superclass_{k}".encode() for k in range(20)]
    dump_python2(meta, folder / meta_file)
    return folder

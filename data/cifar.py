"""CIFAR-10 and CIFAR-100 from the python pickle batches that torchvision downloads.

We read the pickles ourselves rather than through torchvision's dataset
classes: we want one uint8 (N,3,32,32) tensor per split, not a dataset of PIL
images, and torchvision re-hashes every file (md5) each time it is opened.
torchvision is used only to download and extract the archive.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.errors import find_or_download
from data.memory import Splits


@dataclass(frozen=True)
class CifarLayout:
    folder: str  # the folder the archive extracts to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    torchvision_class: str


LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
        "CIFAR10",
    ),
    "cifar100": CifarLayout("cifar-100-python", ("train",), ("test",), b"fine_labels", "CIFAR100"),
}


def candidate_dirs(name: str, root: Path) -> list[Path]:
    """Where the batch files may be: ``<root>/<archive folder>``, or ``root`` itself if it is that folder."""
    return [root / LAYOUTS[name].folder, root]


def find_cifar(name: str, root: Path) -> Path | None:
    """The first candidate folder holding every batch file, or None."""
    layout = LAYOUTS[name]
    for folder in candidate_dirs(name, root):
        if all((folder / f).is_file() for f in layout.train_files + layout.test_files):
            return folder
    return None


def download_cifar(name: str, root: Path) -> None:
    """Have torchvision download and extract the archive into ``root`` (it skips files already there)."""
    from torchvision import datasets

    getattr(datasets, LAYOUTS[name].torchvision_class)(str(root), train=True, download=True)


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (N,3,32,32) uint8 and labels (N,) int64 of one pickle batch file.

    The files were pickled by Python 2, so ``encoding="bytes"`` gives bytes
    keys; str keys (a file re-pickled by Python 3) are accepted too.
    """
    with open(path, "rb") as f:
        entry: dict[Any, Any] = pickle.load(f, encoding="bytes")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    key = label_key.decode()
    if "data" not in entry or key not in entry:
        raise ValueError(
            f"{path}: not a CIFAR batch file (keys {sorted(entry)}; expected 'data' and {key!r})"
        )
    images = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[key], dtype=np.int64)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or labels.shape != (images.shape[0],):
        raise ValueError(f"{path}: data {images.shape} and labels {labels.shape} do not match CIFAR's format")
    return images.reshape(-1, 3, 32, 32), labels


def read_split(folder: Path, files: tuple[str, ...], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [read_batch(folder / f, label_key) for f in files]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_cifar(name: str, root: str | Path, download: bool = False) -> Splits:
    """Train and test splits of ``cifar10`` or ``cifar100`` found under ``root``.

    Raises DatasetNotFound naming the folders searched; with ``download`` the
    archive is fetched first when the files are missing.
    """
    root = Path(root).expanduser()
    layout = LAYOUTS[name]
    folder = find_or_download(name, lambda: find_cifar(name, root), lambda: download_cifar(name, root),
                              candidate_dirs(name, root), download)
    train_x, train_y = read_split(folder, layout.train_files, layout.label_key)
    test_x, test_y = read_split(folder, layout.test_files, layout.label_key)
    return Splits(train_x, train_y, test_x, test_y)

"""SVHN from the ``.mat`` files torchvision downloads (``train_32x32.mat``, ``test_32x32.mat``).

torchvision fetches the files; we read them with scipy exactly as its SVHN
class does (digit 0 is stored as label 10), but without hashing the 180 MB
files on every load, and straight into one uint8 tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data.errors import find_or_download
from data.memory import Splits

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def candidate_dirs(root: Path) -> list[Path]:
    return [root, root / "svhn"]


def find_svhn(root: Path) -> Path | None:
    for folder in candidate_dirs(root):
        if all((folder / f).is_file() for f in FILES.values()):
            return folder
    return None


def read_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N,3,32,32) uint8 and labels 0..9 (N,) int64 from one SVHN .mat file."""
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    images = np.asarray(mat["X"], dtype=np.uint8)  # (H, W, C, N)
    labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1) % 10  # label 10 is the digit 0
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != labels.shape[0]:
        raise ValueError(f"{path}: X {images.shape} and y {labels.shape} do not match SVHN's format")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1))), torch.from_numpy(labels)


def load_svhn(root: str | Path, download: bool = False) -> Splits:
    root = Path(root).expanduser()

    def fetch() -> None:
        from torchvision import datasets

        for split in FILES:
            datasets.SVHN(str(root), split=split, download=True)

    folder = find_or_download("svhn", lambda: find_svhn(root), fetch, candidate_dirs(root), download)
    train_x, train_y = read_mat(folder / FILES["train"])
    test_x, test_y = read_mat(folder / FILES["test"])
    return Splits(train_x, train_y, test_x, test_y)

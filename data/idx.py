"""Fashion-MNIST from its IDX files (plain or gzipped), parsed with numpy.

Searched in ``<root>``, ``<root>/FashionMNIST/raw`` (where torchvision
downloads it) and the folder Debian's ``dataset-fashion-mnist`` package
installs, so a machine with the package needs no download at all.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from data.errors import find_or_download
from data.memory import Splits

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

# IDX magic: two zero bytes, a type code, the number of dimensions.
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """The array stored in IDX bytes; ValueError on a bad magic number or a size that does not match."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(f"{source}: not an IDX file (magic bytes {raw[:4].hex()})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{source}: IDX header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{source}: IDX file has {len(raw)} bytes, its header {shape} implies {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def idx_path(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (plain first)."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return parse_idx(f.read(), str(path))


def candidate_dirs(root: Path) -> list[Path]:
    return [root, root / "FashionMNIST" / "raw", SYSTEM_DIR]


def find_fashion_mnist(root: Path) -> dict[str, Path] | None:
    """The four IDX files from the first candidate folder holding all of them, or None."""
    for folder in candidate_dirs(root):
        paths = {key: idx_path(folder, stem) for key, stem in FILES.items()}
        if all(p is not None for p in paths.values()):
            return paths  # type: ignore[return-value]
    return None


def read_images(path: Path) -> torch.Tensor:
    images = read_idx(path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{path}: expected uint8 images (N,H,W), got {images.dtype} {images.shape}")
    return torch.from_numpy(images.copy()).unsqueeze(1)  # copy: frombuffer arrays are read-only


def read_labels(path: Path, count: int) -> torch.Tensor:
    labels = read_idx(path)
    if labels.ndim != 1 or labels.shape[0] != count:
        raise ValueError(f"{path}: expected {count} labels, got shape {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def load_fashion_mnist(root: str | Path, download: bool = False) -> Splits:
    """Fashion-MNIST's 60000 training and 10000 test images as uint8 (N,1,28,28)."""
    root = Path(root).expanduser()

    def fetch() -> None:
        from torchvision import datasets

        datasets.FashionMNIST(str(root), train=True, download=True)

    paths = find_or_download("fashion-mnist", lambda: find_fashion_mnist(root), fetch, candidate_dirs(root), download)
    train_x = read_images(paths["train_x"])
    test_x = read_images(paths["test_x"])
    return Splits(
        train_x,
        read_labels(paths["train_y"], len(train_x)),
        test_x,
        read_labels(paths["test_y"], len(test_x)),
    )

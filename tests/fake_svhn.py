"""A tiny SVHN in the on-disk format torchvision downloads (``train_32x32.mat``, ``test_32x32.mat``).

Learnable like ``tests/fake_cifar.py``'s sets, but with class templates of its own: another task on the same
image format (3 x 32 x 32, 10 classes), as SVHN is to CIFAR-10, for the mask transfer tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.info import dataset_info
from tests.fake_cifar import balanced_labels, class_templates


def write_fake_svhn(root: str | Path, n_train: int = 500, n_test: int = 100, seed: int = 0,
                    noise: float = 20.0) -> Path:
    """Write ``train_32x32.mat`` and ``test_32x32.mat`` under ``root``; returns ``root``."""
    import scipy.io

    info = dataset_info("svhn")
    rng = np.random.default_rng(seed)
    templates = class_templates(info.num_classes, rng_seed=4321)  # not CIFAR's templates: another task
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(n, info.num_classes, rng)
        base = np.asarray(info.mean).reshape(1, 3, 1, 1) * 255.0
        images = base + templates[labels] + rng.normal(0.0, noise, size=(n, 3, 32, 32))
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        # SVHN's layout: X is (H, W, C, N), y is (N, 1) with the digit 0 stored as 10.
        y = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)
        scipy.io.savemat(str(root / f"{split}_32x32.mat"), {"X": images.transpose(2, 3, 1, 0), "y": y})
    return root

"""Shared fixtures. Tests run single-threaded: on 2 shared cores, small ops with two threads are
several times slower, and single-threaded results are bit-reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models.registry  # noqa: F401 - registers the model and dataset facts config checks use (utils/facts.py)
from tests.fake_cifar import write_fake_cifar

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fake_cifar10(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar(root, name="cifar10", n_train=1024, n_test=256, seed=0)
    return root

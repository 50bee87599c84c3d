"""Architectures. Each model declares its permutation spec and which weights may be pruned.

The names below are loaded on first use (PEP 562), so ``import models.registry`` (which every
program that loads a config does, see ``utils/facts.py``) does not pay for torch's model classes or torchvision.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.base import PermutableModel
    from models.build import build_model, create
    from models.mlp import MLP
    from models.registry import MODEL_TYPES, MODELS, canonical_model_type, model_settings, tolerance_field
    from models.resnet20 import ResNet20
    from models.resnet50 import ResNet50
    from models.vgg import VGG

_SOURCES = {
    "MLP": "models.mlp", "MODELS": "models.registry", "MODEL_TYPES": "models.registry",
    "PermutableModel": "models.base", "ResNet20": "models.resnet20", "ResNet50": "models.resnet50", "VGG": "models.vgg",
    "build_model": "models.build", "canonical_model_type": "models.registry", "create": "models.build",
    "model_settings": "models.registry", "tolerance_field": "models.registry",
}

__all__ = [
    "MLP", "MODELS", "MODEL_TYPES", "PermutableModel", "ResNet20", "ResNet50", "VGG", "build_model",
    "canonical_model_type", "create", "model_settings", "tolerance_field",
]


# The eager package used to import these, so ``import models; models.build.create`` worked; keep it working.
_SUBMODULES = ("adapter", "base", "build", "mlp", "registry", "resnet20", "resnet50", "vgg")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"models.{name}")
    if name not in _SOURCES:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

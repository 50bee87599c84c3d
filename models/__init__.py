"""Architectures. Each model declares its permutation spec and which weights may be pruned."""

from models.base import PermutableModel
from models.build import MODEL_TYPES, build_model, create
from models.mlp import MLP
from models.resnet20 import ResNet20
from models.resnet50 import ResNet50
from models.vgg import VGG

__all__ = ["MLP", "MODEL_TYPES", "PermutableModel", "ResNet20", "ResNet50", "VGG", "build_model", "create"]

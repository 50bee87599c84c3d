"""Model construction from a config object (``build_model``) or from plain arguments (``create``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from data.info import dataset_info
from models.mlp import MLP
from models.resnet20 import ResNet20
from models.resnet50 import ResNet50
from models.vgg import VGG

MODEL_TYPES: tuple[str, ...] = ("ResNet", "ResNet20", "VGG11", "ResNet50", "MLP")


def create(
    model_type: str,
    *,
    num_classes: int,
    in_channels: int,
    width: int = 1,
    image_size: int = 32,
    mlp_hidden: list[int] | tuple[int, ...] = (512, 512),
    batchnorm: bool = False,
    init_weights: bool = False,
) -> nn.Module:
    """Build ``model_type`` (one of ``MODEL_TYPES``; "ResNet" means ResNet20).

    ``image_size`` is only used by the MLP (its input has ``in_channels·image_size²``
    features); ``batchnorm`` and ``init_weights`` only by VGG11; ``mlp_hidden`` only by MLP.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width_multiplier must be a positive integer, got {width!r}")
    if model_type in ("ResNet", "ResNet20"):
        return ResNet20(num_classes=num_classes, in_channels=in_channels, width=width)
    if model_type == "VGG11":
        return VGG(
            num_classes=num_classes, in_channels=in_channels, width=width,
            batchnorm=batchnorm, init_weights=init_weights,
        )
    if model_type == "ResNet50":
        return ResNet50(num_classes=num_classes, in_channels=in_channels, width=width)
    if model_type == "MLP":
        return MLP(
            num_classes=num_classes, in_features=in_channels * image_size**2,
            hidden=list(mlp_hidden), width=width,
        )
    raise ValueError(f"unknown model_type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")


def build_model(config: Any) -> nn.Module:
    """Build the model a config describes; input channels and classes come from its dataset.

    Reads ``model_type``, ``dataset``, ``width_multiplier`` (1), ``mlp_hidden`` ([512, 512]),
    ``batchnorm`` (False) and ``init_weights`` (False) as attributes, so any object with
    them (a config dataclass, a ``SimpleNamespace``) works.
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    info = dataset_info(getattr(config, "dataset", "cifar10"))
    hidden = getattr(config, "mlp_hidden", None)
    return create(
        model_type,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        width=getattr(config, "width_multiplier", 1),
        image_size=info.image_size,
        mlp_hidden=[512, 512] if hidden is None else hidden,
        batchnorm=getattr(config, "batchnorm", False),
        init_weights=getattr(config, "init_weights", False),
    )

"""Model construction from a config object (``build_model``) or from plain arguments (``create``).

Which models exist, and which config fields each one reads, is ``models.registry``'s business.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from data.info import dataset_info
from models.registry import MODEL_TYPES, MODELS, canonical_model_type, model_settings

__all__ = ["MODEL_TYPES", "build_model", "create"]


def _check_width(width: Any) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width_multiplier must be a positive integer, got {width!r}")


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
    features); ``batchnorm`` and ``init_weights`` only by VGG11; ``mlp_hidden`` only by MLP
    (each model receives only its own registry ``arch_fields``).
    """
    entry = MODELS[canonical_model_type(model_type)]
    _check_width(width)
    given = {"mlp_hidden": list(mlp_hidden), "batchnorm": batchnorm, "init_weights": init_weights}
    arch = {name: given[name] for name in entry.arch_fields}
    return entry.build(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width, **arch)


def build_model(config: Any) -> nn.Module:
    """Build the model a config describes; input channels and classes come from its dataset.

    Reads ``model_type``, ``dataset``, ``width_multiplier`` (1) and the model's own
    architecture fields (``mlp_hidden`` [512, 512]; ``batchnorm``, ``init_weights`` False) as
    attributes, so any object with them (a config dataclass, a ``SimpleNamespace``) works.
    Builds from exactly the settings that go into the artifact keys (``model_settings``).
    """
    settings = model_settings(config)
    entry = MODELS[settings.pop("model_type")]
    width = settings.pop("width_multiplier")
    _check_width(width)
    info = dataset_info(getattr(config, "dataset", "cifar10"))
    return entry.build(num_classes=info.num_classes, in_channels=info.in_channels, image_size=info.image_size,
                       width=width, **settings)

"""Model construction from a config object (``build_model``) or from plain arguments (``create``).

Which models exist, and which config fields each one reads, is ``models.registry``'s business.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from data.info import dataset_info
from models.adapter import adapt
from models.registry import MODEL_TYPES, MODELS, canonical_model_type, model_entry, model_settings
from utils.errors import UserError
from utils.hashing import stable_hash

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
    mlp_hidden: list[int] | tuple[int, ...] | None = None,
    batchnorm: bool | None = None,
    init_weights: bool | None = None,
) -> nn.Module:
    """Build ``model_type`` (one of ``MODEL_TYPES``; "ResNet" means ResNet20).

    ``image_size`` is only used by the MLP (its input has ``in_channels·image_size²``
    features); ``batchnorm`` and ``init_weights`` only by VGG11; ``mlp_hidden`` only by MLP
    (each model receives only its own registry ``arch_fields``, None meaning the row's default).
    """
    entry = MODELS.get(canonical_model_type(model_type))
    if entry is None:
        raise ValueError(f"create() builds the built-in models; build {model_type!r} with build_model(config)")
    _check_width(width)
    given = {"mlp_hidden": mlp_hidden, "batchnorm": batchnorm, "init_weights": init_weights}
    arch = {name: default if given.get(name) is None else given[name] for name, default in entry.arch_fields.items()}
    return entry.build(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width, **arch)


def build_model(config: Any) -> nn.Module:
    """Build the model a config describes; input channels and classes come from its dataset.

    Reads ``model_type``, ``dataset``, ``width_multiplier`` (1) and the model's own
    architecture fields (its registry row's ``arch_fields``, whose defaults apply to
    a missing or None one) as attributes, so any object with them (a config
    dataclass, a ``SimpleNamespace``) works. Builds from exactly the settings that go into
    the artifact keys (``model_settings``). The model gets ``permutation_spec()`` and
    ``prunable_parameters()`` where its class has none, and ``prune_exclude`` applied
    (``models.adapter``).
    """
    settings = model_settings(config)
    arch_key = stable_hash(settings, 16)
    entry = model_entry(settings.pop("model_type"))
    width = settings.pop("width_multiplier", 1)
    _check_width(width)
    info = dataset_info(getattr(config, "dataset", "cifar10"))
    try:
        model = entry.build(num_classes=info.num_classes, in_channels=info.in_channels,
                            image_size=info.image_size, width=width, **settings)
    except ValueError as err:
        if not entry.plugin:
            raise
        raise UserError(str(err)) from None  # the user's class or kwargs: one line, no traceback
    if not isinstance(model, nn.Module):
        raise UserError(f"model_type {entry.name!r} built a {type(model).__name__}, not a torch.nn.Module")
    _set_matching_stream(model, entry.name, getattr(getattr(config, "matching", None), "stream", "pooled"))
    return adapt(model, arch_key=f"{arch_key}-{info.name}",
                 input_shape=(info.in_channels, info.image_size, info.image_size),
                 exclude=getattr(config, "prune_exclude", None))


def _set_matching_stream(model: nn.Module, name: str, stream: str) -> None:
    """Give the model ``matching.stream``'s choice of residual-stream activations for its spec.

    Not part of the architecture (the model key): it changes which activations activation matching reads,
    which enters the permutation's key instead. A model that does not declare the choice (a plug-in, whose
    spec is derived from its graph) has only ``pooled``.
    """
    if stream == "pooled":
        return
    if stream not in getattr(type(model), "matching_streams", ("pooled",)):
        raise UserError(f"matching.stream: {stream!r} is defined for the paper's models (ResNet20, ResNet50, "
                        f"VGG11) and MLP, not for {name!r}; use 'pooled'")
    model.matching_stream = stream

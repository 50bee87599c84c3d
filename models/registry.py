"""The one list of model types: names, aliases, builders, architecture fields, IMP tolerance.

Everything that depends on which model a config names goes through here: the
config's validation, ``models.build``, the artifact keys (``phases/keys.py``)
and the choice of IMP stopping tolerance. Adding an architecture is one entry.

``utils.config`` imports this module, so it stays cheap: the model classes (and
torch/torchvision with them) are imported inside the builders, only when a model
is actually built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """One model type.

    ``arch_fields`` maps each config field that changes this architecture (besides
    ``width_multiplier``, which every model has) to the value used when a config
    object lacks it; the defaults equal ``utils.config.Config``'s (tested), so a
    ``SimpleNamespace`` without them builds the same model as a default config.
    """

    name: str  # canonical: what artifact keys record
    aliases: tuple[str, ...]  # other accepted spellings of model_type
    # build(*, num_classes, in_channels, image_size, width, **{field: value for each arch field})
    build: Callable[..., nn.Module]
    arch_fields: Mapping[str, Any]
    tolerance_field: str  # the PruningConfig field holding this architecture's IMP tolerance

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name, then its aliases."""
        return (self.name, *self.aliases)


def _resnet20(*, num_classes: int, in_channels: int, image_size: int, width: int) -> nn.Module:
    from models.resnet20 import ResNet20

    return ResNet20(num_classes=num_classes, in_channels=in_channels, width=width)


def _vgg11(*, num_classes: int, in_channels: int, image_size: int, width: int, batchnorm: bool,
           init_weights: bool) -> nn.Module:
    from models.vgg import VGG

    return VGG(num_classes=num_classes, in_channels=in_channels, width=width, batchnorm=batchnorm,
               init_weights=init_weights)


def _resnet50(*, num_classes: int, in_channels: int, image_size: int, width: int) -> nn.Module:
    from models.resnet50 import ResNet50  # imports torchvision: only when a ResNet50 is built

    return ResNet50(num_classes=num_classes, in_channels=in_channels, width=width)


def _mlp(*, num_classes: int, in_channels: int, image_size: int, width: int, mlp_hidden: list[int]) -> nn.Module:
    from models.mlp import MLP

    # The only model whose size depends on the input resolution: it sees the flattened image.
    return MLP(num_classes=num_classes, in_features=in_channels * image_size**2, hidden=list(mlp_hidden),
               width=width)


def _entry(name: str, build: Callable[..., nn.Module], *, aliases: tuple[str, ...] = (),
           arch_fields: dict[str, Any] | None = None, tolerance_field: str) -> ModelEntry:
    return ModelEntry(name=name, aliases=aliases, build=build, arch_fields=MappingProxyType(dict(arch_fields or {})),
                      tolerance_field=tolerance_field)


# Order matters only for messages (MODEL_TYPES lists names in this order). The tolerances are the
# paper's code's: its ResNet20 tolerance was used for every model but VGG11.
MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        _entry("ResNet", _resnet20, aliases=("ResNet20",), tolerance_field="tolerance_resnet20"),
        _entry("VGG11", _vgg11, arch_fields={"batchnorm": False, "init_weights": False},
               tolerance_field="tolerance_vgg11"),
        _entry("ResNet50", _resnet50, tolerance_field="tolerance_resnet20"),
        _entry("MLP", _mlp, arch_fields={"mlp_hidden": (512, 512)}, tolerance_field="tolerance_resnet20"),
    )
}

_BY_NAME: dict[str, ModelEntry] = {n: e for e in MODELS.values() for n in e.names}

# Every accepted model_type spelling, aliases included (for messages and did-you-mean hints).
MODEL_TYPES: tuple[str, ...] = tuple(_BY_NAME)


def _lookup(name: str) -> ModelEntry:
    """The entry for ``name`` (canonical or alias); ValueError naming the choices if unknown."""
    entry = _BY_NAME.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"unknown model_type {name!r}; choose one of {', '.join(MODEL_TYPES)}")
    return entry


def canonical_model_type(name: str) -> str:
    """``name``'s canonical model type ("ResNet20" -> "ResNet"); ValueError if unknown (case matters)."""
    return _lookup(name).name


def _plain(value: Any) -> Any:
    # Lists and tuples become fresh lists: what YAML and the artifact keys (JSON) hold.
    return list(value) if isinstance(value, (list, tuple)) else value


def model_settings(cfg: Any) -> dict[str, Any]:
    """The architecture part of an artifact key.

    ``{"model_type": canonical name, "width_multiplier": ..., **the model's own arch_fields}``,
    read as attributes of ``cfg`` (a ``Config`` or any object with them; missing ones take the
    entry's defaults). Fields of other models are left out, so e.g. ``batchnorm`` does not
    change a ResNet's artifacts. The result is the same dict ``phases.keys.model_key`` has
    always produced (tested), so artifact hashes do not change.
    """
    entry = _lookup(getattr(cfg, "model_type", None))
    settings: dict[str, Any] = {"model_type": entry.name, "width_multiplier": getattr(cfg, "width_multiplier", 1)}
    for name, default in entry.arch_fields.items():
        value = getattr(cfg, name, None)
        settings[name] = _plain(default if value is None else value)
    return settings


def tolerance_field(model_type: str) -> str:
    """The ``PruningConfig`` field with ``model_type``'s IMP tolerance, e.g. "tolerance_vgg11"."""
    return _lookup(model_type).tolerance_field

"""The one list of model types: names, aliases, builders, architecture fields, IMP tolerance.

Everything that depends on which model a config names goes through here: the
config's validation, ``models.build``, the artifact keys (``phases/keys.py``)
and the choice of IMP stopping tolerance. Adding an architecture is one entry.

Besides the built-in names, ``model_type`` may be a plug-in path
``"package.module:ClassName"``: any importable ``nn.Module``, built with the config's
``model_kwargs`` (and ``in_channels``/``num_classes`` from the dataset when its
constructor takes them). Its entry is made here on demand, so the rest of the
runner treats it like a built-in one.

Importing this module registers the facts config validation needs (``utils/facts.py``; ``utils.config``
may not import this floor), those of ``data.info`` with them. So it stays cheap: the model classes (and
torch/torchvision with them) are imported inside the builders, only when a model is actually built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import data.info  # noqa: F401 - registers the dataset facts: one import of this module readies config checks
from utils.facts import ModelFacts, register_models
from utils.plugins import is_plugin, plugin_arguments, resolve_plugin

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """One model type.

    ``arch_fields`` maps each config field that changes this architecture (besides
    ``width_multiplier``, which every model has) to its default: the one place it is
    given. A config leaves these fields null until it is loaded (``utils.config``
    fills them in from here), so a config object that lacks one, a
    ``SimpleNamespace``, builds and keys as the default. ``arch_checks`` gives, per
    field, the complaint about a bad value (None: fine); it holds for any model_type.
    """

    name: str  # canonical: what artifact keys record
    aliases: tuple[str, ...]  # other accepted spellings of model_type
    # build(*, num_classes, in_channels, image_size, width, **{field: value for each arch field})
    build: Callable[..., nn.Module]
    arch_fields: Mapping[str, Any]
    arch_checks: Mapping[str, Callable[[Any], str | None]]
    tolerance: float  # IMP stops once within this of its target sparsity (unless the config overrides it)
    # The original code's key under `pruning` that overrides `tolerance` for this model (tolerance_resnet20
    # served every model but VGG11); `pruning.tolerance` overrides it for any model.
    tolerance_field: str
    display: str = ""  # the name tables and figures show (default: name)
    plugin: bool = False  # a user's class (model_type "package.module:ClassName"): no width_multiplier
    # What tables and figures call a config's "width" (read from its config.yaml as a dict), and how
    # they write it alone ({width}) and after the model's name ({name}, {width}).
    width_of: Callable[[Mapping[str, Any]], Any] = lambda cfg: cfg.get("width_multiplier", 1)
    width_text: str = "×{width}"
    caption: str = "{name}×{width}"

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


_MLP_HIDDEN = (512, 512)


def _first_hidden(cfg: Mapping[str, Any]) -> Any:
    # An MLP's "width" is its first hidden layer's: what grows when the paper widens it (None if unsaid).
    return (cfg.get("mlp_hidden") or [None])[0]


def _widths(value: Any) -> str | None:
    if not value or any(h <= 0 for h in value):
        return f"must be a non-empty list of positive widths, got {value}"
    return None


# IMP tolerances (the key overriding it, the value) are the paper's code's: its ResNet20 tolerance served
# every model but VGG11, plug-ins included.
_TOLERANCE = ("tolerance_resnet20", 0.005)
_VGG11_TOLERANCE = ("tolerance_vgg11", 5e-7)


def _entry(name: str, build: Callable[..., nn.Module], *, aliases: tuple[str, ...] = (),
           arch_fields: dict[str, Any] | None = None, arch_checks: dict[str, Callable[[Any], str | None]] | None = None,
           tolerance: tuple[str, float] = _TOLERANCE, display: str = "", plugin: bool = False,
           **describe: Any) -> ModelEntry:
    return ModelEntry(name=name, aliases=aliases, build=build, arch_fields=MappingProxyType(dict(arch_fields or {})),
                      arch_checks=MappingProxyType(dict(arch_checks or {})), tolerance_field=tolerance[0],
                      tolerance=tolerance[1], display=display or name, plugin=plugin, **describe)


# Order matters only for messages (MODEL_TYPES lists names in this order).
MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        _entry("ResNet", _resnet20, aliases=("ResNet20",), display="ResNet20"),
        _entry("VGG11", _vgg11, arch_fields={"batchnorm": False, "init_weights": False}, tolerance=_VGG11_TOLERANCE),
        _entry("ResNet50", _resnet50),
        _entry("MLP", _mlp, arch_fields={"mlp_hidden": _MLP_HIDDEN}, arch_checks={"mlp_hidden": _widths},
               width_of=_first_hidden, width_text="{width} hidden", caption="{name} ({width} hidden)"),
    )
}

_BY_NAME: dict[str, ModelEntry] = {n: e for e in MODELS.values() for n in e.names}

# Every accepted model_type spelling, aliases included (for messages and did-you-mean hints).
MODEL_TYPES: tuple[str, ...] = tuple(_BY_NAME)


def _plugin_builder(path: str) -> Callable[..., nn.Module]:
    def build(*, num_classes: int, in_channels: int, image_size: int, width: int,
              model_kwargs: Mapping[str, Any]) -> nn.Module:
        kwargs = plugin_arguments(path, model_kwargs, in_channels=in_channels, num_classes=num_classes)
        cls = resolve_plugin(path)
        try:
            model = cls(**kwargs)
        except Exception as err:  # noqa: BLE001 - the user's constructor: one line naming it, not a traceback
            raise ValueError(f"model_type {path!r}: {cls.__name__}(**model_kwargs) failed: "
                             f"{type(err).__name__}: {err}") from None
        check_plugin_output(path, model, in_channels=in_channels, image_size=image_size, num_classes=num_classes)
        return model

    return build


def check_plugin_output(path: str, model: Any, *, in_channels: int, image_size: int, num_classes: int) -> None:
    """One forward pass on a zero image: the model must give one logit per class of the dataset.

    A zoo model built without ``num_classes`` (torchvision's default is 1000) would otherwise train
    quietly with 990 unused outputs, and one with too few would fail deep inside the loss.
    """
    import torch
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ValueError(f"model_type {path!r} built a {type(model).__name__}, not a torch.nn.Module")
    was_training = model.training
    model.eval()  # BatchNorm cannot train on one example
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, image_size, image_size))
    except Exception as err:  # noqa: BLE001 - the user's forward: one line naming the input it was given
        raise ValueError(f"model_type {path!r}: forward of a {in_channels}x{image_size}x{image_size} image failed: "
                         f"{type(err).__name__}: {err}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model_type {path!r}: the model outputs {shape} for one image, the dataset needs "
                         f"(1, {num_classes}) logits; set its class count in model_kwargs (e.g. num_classes: "
                         f"{num_classes})")


def _plugin_entry(path: str) -> ModelEntry:
    return _entry(path, _plugin_builder(path), arch_fields={"model_kwargs": {}}, display=path.split(":")[1],
                  plugin=True, caption="{name}")


def _lookup(name: str) -> ModelEntry:
    """The entry for ``name`` (canonical, alias or plug-in path); ValueError naming the choices if unknown."""
    entry = _BY_NAME.get(name) if isinstance(name, str) else None
    if entry is None and is_plugin(name):
        return _plugin_entry(name)
    if entry is None:
        raise ValueError(f"unknown model_type {name!r}; choose one of {', '.join(MODEL_TYPES)} "
                         "or a class of your own as 'package.module:ClassName'")
    return entry


def model_entry(name: str) -> ModelEntry:
    """The registry entry of a model_type (canonical, alias or plug-in path); ValueError if unknown."""
    return _lookup(name)


def display_name(model_type: str) -> str:
    """The name tables show for a model_type ("ResNet" -> "ResNet20"); an unknown one as it is written."""
    try:
        return _lookup(model_type).display
    except ValueError:
        return model_type


def config_width(model_type: str, cfg: Mapping[str, Any]) -> Any:
    """What tables call the width of a saved config (a dict): ``width_multiplier`` for most models, an
    MLP's first hidden width; an unknown model_type's ``width_multiplier``."""
    try:
        entry = _lookup(model_type)
    except ValueError:
        return cfg.get("width_multiplier", 1)
    return entry.width_of(cfg)


def width_text(model: str | None, width: Any) -> str:
    """A width as tables and figures write it ("×4", an MLP's "256 hidden"); ``model`` as ``display_name``
    gives it (or any accepted model_type)."""
    if width is None:
        return "width ?"
    try:
        return _lookup(model).width_text.format(width=width)
    except ValueError:
        return f"×{width}"


def model_caption(model: str, width: Any) -> str:
    """The model at a width, as a paper captions it ("ResNet20×4", "MLP (256 hidden)"); the name alone
    when the width is unknown or the model is not a built-in one."""
    try:
        entry = _lookup(model)
    except ValueError:
        return model
    return model if width is None or entry.plugin else entry.caption.format(name=model, width=width)


def canonical_model_type(name: str) -> str:
    """``name``'s canonical model type ("ResNet20" -> "ResNet"); ValueError if unknown (case matters)."""
    return _lookup(name).name


def _plain(value: Any) -> Any:
    # Lists and tuples become fresh lists, mappings plain dicts: what YAML and the artifact keys (JSON) hold.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def model_settings(cfg: Any) -> dict[str, Any]:
    """The architecture part of an artifact key.

    ``{"model_type": canonical name, "width_multiplier": ..., **the model's own arch_fields}``,
    read as attributes of ``cfg`` (a ``Config`` or any object with them; missing ones take the
    entry's defaults). Fields of other models are left out, so e.g. ``batchnorm`` does not
    change a ResNet's artifacts. The result is the same dict ``phases.keys.model_key`` has
    always produced (tested), so artifact hashes do not change.
    """
    entry = _lookup(getattr(cfg, "model_type", None))
    settings: dict[str, Any] = {"model_type": entry.name}
    if not entry.plugin:  # a plug-in's size is in its model_kwargs
        settings["width_multiplier"] = getattr(cfg, "width_multiplier", 1)
    for name, default in entry.arch_fields.items():
        value = getattr(cfg, name, None)
        settings[name] = _plain(default if value is None else value)
    return settings


def tolerance_field(model_type: str) -> str:
    """The ``PruningConfig`` field with ``model_type``'s IMP tolerance, e.g. "tolerance_vgg11"."""
    return _lookup(model_type).tolerance_field


def tolerance(model_type: str) -> tuple[str, float]:
    """``model_type``'s IMP tolerance: the ``pruning`` key that overrides it (the original code's), its value."""
    entry = _lookup(model_type)
    return entry.tolerance_field, entry.tolerance


def _arch_defaults() -> dict[str, Any]:
    """Every built-in architecture field and its default (plain lists, as a config holds them); rows that share
    a field share its default, so a loaded config reads the same whichever model it names."""
    defaults: dict[str, Any] = {}
    for entry in MODELS.values():
        for name, default in entry.arch_fields.items():
            if defaults.setdefault(name, _plain(default)) != _plain(default):
                raise AssertionError(f"models/registry.py: rows disagree on the default of {name!r}")
    return defaults


register_models(ModelFacts(
    model_types=MODEL_TYPES, canonical=canonical_model_type, tolerance=tolerance, arch_defaults=_arch_defaults(),
    arch_checks={name: check for e in MODELS.values() for name, check in e.arch_checks.items()}))

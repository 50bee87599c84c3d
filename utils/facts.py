"""What config validation knows about datasets and models, handed down by the floors that own those facts.

``utils`` is the lowest floor: it may not import ``data`` or ``models`` (tests/test_import_floors.py). Yet a
config is checked against their facts (is ``dataset`` known, is ``model_type``, which IMP tolerance applies,
do a plug-in's ``model_kwargs`` fit its class). So ``data/info.py`` and ``models/registry.py`` register their
facts here when they are imported (``models.registry`` imports ``data.info``, so importing it registers both),
and ``utils.config`` asks for them only when it checks a config.

Chosen over moving the checks up to a module above ``models``: ``utils.config.config_from_dict`` stays the one
function every caller uses, and a caller that forgot the registration gets a loud ``FactsMissing`` naming the
import to add, never a config that was silently checked less. Every command-line entry point is tested in a
fresh interpreter for it (tests/test_import_floors.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class FactsMissing(RuntimeError):
    """A config was checked before ``models.registry`` (and with it ``data.info``) was imported: a bug of the
    calling program, not of the config."""


class DatasetFacts(Protocol):
    """One dataset, as config validation needs it (``data.info.DatasetInfo`` has these)."""

    in_channels: int
    num_classes: int
    how_to_get: str


@dataclass(frozen=True)
class ModelFacts:
    """What config validation asks of the model registry (``models/registry.py`` fills it)."""

    model_types: tuple[str, ...]  # every accepted built-in spelling, for messages
    canonical: Callable[[str], str]  # the canonical name (a plug-in path's is itself); ValueError if unknown
    # model_type -> (the original code's per-architecture key under `pruning` that overrides its IMP
    # tolerance, the tolerance its registry row gives); ValueError if unknown
    tolerance: Callable[[str], tuple[str, float]]
    # architecture field (a top-level config key of a built-in model) -> its default
    arch_defaults: Mapping[str, Any]
    # architecture field -> the complaint about a value (None: fine), whatever the model_type
    arch_checks: Mapping[str, Callable[[Any], str | None]]


_registered: dict[str, Any] = {}


def register_datasets(datasets: Mapping[str, DatasetFacts]) -> None:
    """Called by ``data/info.py`` at import."""
    _registered["datasets"] = datasets


def register_models(facts: ModelFacts) -> None:
    """Called by ``models/registry.py`` at import."""
    _registered["models"] = facts


def _get(what: str) -> Any:
    if what not in _registered:
        raise FactsMissing(f"a config was checked before the {what} facts were registered: import models.registry "
                           "(it registers data.info's too) before loading a config (utils/facts.py)")
    return _registered[what]


def datasets() -> Mapping[str, DatasetFacts]:
    """The registered datasets (name -> facts); FactsMissing if none were."""
    return _get("datasets")


def models() -> ModelFacts:
    """The registered model facts; FactsMissing if none were."""
    return _get("models")

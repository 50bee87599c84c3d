"""The two methods the pipeline calls on every model, for models that do not define them.

``adapt`` gives a built model ``permutation_spec()`` and ``prunable_parameters()``
as instance attributes when its class lacks them (a plug-in ``nn.Module``), and
applies the config's ``prune_exclude`` to any model. The model itself is not
wrapped: its state-dict keys, forward and class stay the user's.

The spec of a model without one is derived from its traced graph
(``matching.derive_spec``), once per process for each architecture and input shape,
on the first call. This is the one place ``models`` calls into ``matching`` beyond
the spec type, and it imports it only then.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

from matching.spec import PermutationSpec
from models.base import conv_linear_weights
from utils.errors import UserError

# (architecture key, input shape) -> derived spec: deriving traces and checks the model, so it is done once.
_DERIVED: dict[tuple[str, tuple[int, ...]], PermutationSpec] = {}


def excluded(key: str, patterns: Sequence[str]) -> bool:
    """Whether a parameter key matches a ``prune_exclude`` pattern: a dotted component of its name
    (``downsample`` matches ``layer1.0.downsample.0.weight``) or a glob over the whole key (``fc*``)."""
    parts = key.split(".")
    return any(p in parts or fnmatch.fnmatchcase(key, p) for p in patterns)


def adapt(model: nn.Module, *, arch_key: str, input_shape: tuple[int, ...],
          exclude: Sequence[str] | None = None) -> nn.Module:
    """``model`` with ``permutation_spec`` and ``prunable_parameters`` (see the module docstring).

    ``arch_key`` identifies the architecture (its settings) for the derived-spec cache;
    ``input_shape`` is one example's shape (channels, height, width) to trace with.
    Raises UserError when a ``prune_exclude`` pattern matches no prunable weight, or all of them.
    """
    if not callable(getattr(model, "permutation_spec", None)):

        def permutation_spec() -> PermutationSpec:
            return derived_spec(model, arch_key, input_shape)

        model.permutation_spec = permutation_spec
    declared = getattr(model, "prunable_parameters", None)
    base = list(declared()) if callable(declared) else conv_linear_weights(model, exclude=())
    if exclude:
        for pattern in exclude:
            if not any(excluded(k, [pattern]) for k in base):
                shown = ", ".join(base[:6]) + (", ..." if len(base) > 6 else "")
                raise UserError(f"prune_exclude: {pattern!r} matches none of the prunable weights ({shown})")
        base = [k for k in base if not excluded(k, exclude)]
        if not base:
            raise UserError(f"prune_exclude: {list(exclude)} excludes every prunable weight")
    if exclude or not callable(declared):
        names = list(base)

        def prunable_parameters() -> list[str]:
            return list(names)

        model.prunable_parameters = prunable_parameters
    return model


def derived_spec(model: nn.Module, arch_key: str, input_shape: tuple[int, ...]) -> PermutationSpec:
    """``model``'s spec from its graph, derived on a fixed random input and cached by ``arch_key``."""
    cache_key = (arch_key, tuple(input_shape))
    if cache_key not in _DERIVED:
        from matching.derive import UntraceableModelError, derive_spec, report_line
        from matching.derive_report import spec_summary

        device = next((t.device for t in model.parameters()), torch.device("cpu"))
        example = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0)).to(device)
        held: list[str] = []

        def report(line: str) -> None:
            held.append(line)
            report_line(line)

        try:
            spec = derive_spec(model, example, report=report)
        except UntraceableModelError as err:
            raise UserError(str(err)) from None
        report_line(f"{type(model).__name__}: {spec_summary(spec, model.state_dict(), len(held))} "
                    "(python -m matching.derive prints the table)")
        _DERIVED[cache_key] = spec
    return _DERIVED[cache_key]

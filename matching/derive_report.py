"""A derived permutation spec for people: a table of its groups, what was held fixed, a one-line summary.

``python -m matching.derive pkg.mod:Class [--model-kwargs '{...}'] [--input-shape 3,32,32]`` builds the
model as a run builds a plug-in ``model_type`` (the same import and keyword arguments), derives its spec
and prints the table, then the places where channels were held fixed and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

import torch

from matching.spec import PermutationSpec


def _tensors(spec: PermutationSpec, members: list[tuple[str, int]]) -> str:
    """``module.{weight,bias}[axis]`` per module and axis (``xR``: each unit owns R consecutive entries)."""
    by_module: dict[tuple[str, int, int], list[str]] = {}
    for key, axis in members:
        module, _, name = key.rpartition(".")
        by_module.setdefault((module, axis, spec.repeat(key, axis)), []).append(name)
    parts = []
    for (module, axis, repeat), names in by_module.items():
        names_text = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
        prefix = f"{module}." if module else ""
        parts.append(f"{prefix}{names_text}[{axis}]" + (f"x{repeat}" if repeat != 1 else "")
                     + (" (one block)" if (f"{prefix}{names[0]}", axis) in spec.folded else ""))
    return ", ".join(parts)


def _units(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor], members: list[tuple[str, int]]) -> int:
    key, axis = members[0]
    if key not in state_dict:
        return 0
    return state_dict[key].shape[axis] // spec.repeat(key, axis) * spec.fold(key, axis)


def spec_rows(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """One row per group: name, units, blocks ("tied": all move alike), where it is observed, its tensors' axes."""
    rows = []
    for group, members in spec.groups.items():
        blocks = spec.block_count(group)
        shown = "-" if blocks == 1 else f"{blocks} tied" if group in spec.tied else str(blocks)
        rows.append([group, str(_units(spec, state_dict, members)), shown,
                     ", ".join(spec.activations.get(group, [])) or "(weights only)", _tensors(spec, members)])
    return rows


def spec_table(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor]) -> str:
    """The spec as a plain-text table, one line per group; the last column, its tensors, is left unpadded."""
    header = ["group", "units", "blocks", "observed at", "tensors[axis]"]
    rows = spec_rows(spec, state_dict)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]])
                     for r in [header, *rows])


def spec_summary(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor], held: int) -> str:
    """``N groups, U permutable units, H places held fixed`` for a derived spec."""
    units = sum(_units(spec, state_dict, members) for members in spec.groups.values())
    return f"{len(spec.groups)} groups, {units} permutable units, {held} place(s) held fixed"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m matching.derive", description=__doc__.splitlines()[0])
    p.add_argument("model", help="package.module:ClassName (or a function returning an nn.Module)")
    p.add_argument("--model-kwargs", default="{}", help="JSON object of keyword arguments for the constructor")
    p.add_argument("--input-shape", default="3,32,32", help="one example's shape, e.g. 3,32,32")
    p.add_argument("--num-classes", type=int, default=10, help="passed where the constructor takes a class count")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the derived spec of a plug-in model; exit status 2 with one line on a user error."""
    args = _parse(argv)
    from matching.check import SpecError
    from matching.derive import derive_spec
    from models.registry import plugin_arguments, resolve_plugin

    try:
        shape = tuple(int(s) for s in args.input_shape.split(","))
        kwargs = json.loads(args.model_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("--model-kwargs must be a JSON object")
        build = resolve_plugin(args.model)
        model = build(**plugin_arguments(args.model, kwargs, in_channels=shape[0], num_classes=args.num_classes))
        example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                model.eval()(example)
        except Exception as err:  # noqa: BLE001 - the user's forward: one line, not a traceback
            raise ValueError(f"{args.model} fails on an input of shape {tuple(example.shape)} "
                             f"({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
                             "give --input-shape") from None
        held: list[str] = []
        spec = derive_spec(model, example, report=held.append)
    except (ValueError, TypeError, SpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = model.state_dict()
    print(spec_table(spec, state))
    print()
    print("held fixed:" if held else "held fixed: nothing (beyond the model's input and output axes)")
    for line in held:
        print(f"  {line}")
    print()
    print(spec_summary(spec, state, len(held)))
    return 0

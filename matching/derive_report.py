"""A derived permutation spec for people: a table of its groups, what was held fixed, a one-line summary.

``python -m matching.derive`` (``matching.derive.main``) prints them; a run that derives a spec logs the summary.
"""

from __future__ import annotations

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

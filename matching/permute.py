"""Applying permutations to state dicts, generically over a ``PermutationSpec``.

A permutation of a group is a LongTensor ``p`` with new unit ``i`` = old unit ``p[i]``:
every (key, axis) of the group is indexed as ``tensor.index_select(axis, p)`` (an axis with a
repeat factor ``r`` by ``p`` expanded to blocks of ``r``, see ``PermutationSpec.repeats``).
The same function permutes weights, masks (bool dicts keyed by parameter name) and
optimizer buffers keyed by parameter name: keys of the spec absent from the dict are
skipped and keys absent from the spec pass through.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from matching.spec import PermutationSpec

Perms = dict[str, torch.Tensor]


def group_sizes(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Number of units of each group that has at least one tensor in ``state_dict``.

    Raises ValueError when a tensor's rank disagrees with its spec entry or when the
    axes of one group disagree on their size.
    """
    sizes: dict[str, int] = {}
    seen: dict[str, tuple[str, int]] = {}
    for key, axes in spec.axes.items():
        if key not in state_dict:
            continue
        tensor = state_dict[key]
        if tensor.ndim != len(axes):
            raise ValueError(f"{key!r} has {tensor.ndim} axes but the spec declares {len(axes)}: {axes}")
        for axis, group in enumerate(axes):
            if group is None:
                continue
            repeat = spec.repeat(key, axis)
            if tensor.shape[axis] % repeat:
                raise ValueError(f"{key!r} axis {axis} has size {tensor.shape[axis]}, not a multiple of its "
                                 f"repeat factor {repeat}")
            size = tensor.shape[axis] // repeat * spec.fold(key, axis)
            if size % spec.block_count(group):
                raise ValueError(f"group {group!r} has {size} units at {key!r} axis {axis}, which do not fall in "
                                 f"its {spec.block_count(group)} equal blocks")
            if group not in sizes:
                sizes[group], seen[group] = size, (key, axis)
            elif sizes[group] != size:
                k0, a0 = seen[group]
                raise ValueError(
                    f"group {group!r} has size {sizes[group]} at {k0!r} axis {a0} "
                    f"but size {size} at {key!r} axis {axis}"
                )
    return sizes


def _validate(group: str, p: torch.Tensor, size: int | None) -> None:
    if not isinstance(p, torch.Tensor) or p.ndim != 1 or p.dtype.is_floating_point or p.dtype == torch.bool:
        raise ValueError(f"group {group!r}: a permutation must be a 1-D integer tensor")
    if size is not None and p.numel() != size:
        raise ValueError(f"group {group!r}: permutation has length {p.numel()}, the group has {size} units")
    if not torch.equal(torch.sort(p.cpu()).values, torch.arange(p.numel())):
        raise ValueError(f"group {group!r}: not a permutation of 0..{p.numel() - 1} (repeats, out of range)")


def permute(
    spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Return a new dict with every tensor of ``state_dict`` that the spec lists permuted by ``perms``.

    A group missing from ``perms`` is left as it is (identity). Tensors that are not
    permuted are passed through without a copy; the input is never modified.
    Raises ValueError naming the group for a perm that is not a permutation of the
    group's size, or for a group the spec does not have.
    """
    known = spec.groups
    sizes = group_sizes(spec, state_dict)
    for group, p in perms.items():
        if group not in known:
            raise ValueError(f"group {group!r} is not in the permutation spec")
        _validate(group, p, sizes.get(group))
    out = dict(state_dict)
    for key, axes in spec.axes.items():
        if key not in out:
            continue
        tensor = out[key]
        for axis, group in enumerate(axes):
            if group is not None and group in perms:
                index = spec.axis_index(key, axis, perms[group].to(device=tensor.device, dtype=torch.long))
                tensor = tensor.index_select(axis, index)
        out[key] = tensor
    return out


def invert(perms: Mapping[str, torch.Tensor]) -> Perms:
    """The inverse permutations: ``permute(spec, permute(spec, sd, perms), invert(perms)) == sd``."""
    return {group: torch.argsort(p) for group, p in perms.items()}


def compose(first: Mapping[str, torch.Tensor], then: Mapping[str, torch.Tensor]) -> Perms:
    """Permutations equal to applying ``first`` and then ``then`` (a missing group is identity)."""
    out = dict(first)
    for group, p in then.items():
        out[group] = first[group].to(p.device)[p] if group in first else p
    return out


def identity_permutations(spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor]) -> Perms:
    """The identity permutation of every group that has a tensor in ``state_dict``."""
    return {group: torch.arange(n) for group, n in group_sizes(spec, state_dict).items()}


def random_permutations(
    spec: PermutationSpec,
    state_dict: Mapping[str, torch.Tensor],
    generator: torch.Generator | None = None,
) -> Perms:
    """A uniformly random permutation (on the CPU) of every group that has a tensor in ``state_dict``
    (of each block on its own, for a group with blocks)."""
    out = {}
    for g, n in group_sizes(spec, state_dict).items():
        size = n // spec.block_count(g)
        if g in spec.tied:  # one permutation for every block
            p = torch.randperm(size, generator=generator)
            out[g] = torch.cat([start + p for start in range(0, n, size)])
        else:
            out[g] = torch.cat([start + torch.randperm(size, generator=generator) for start in range(0, n, size)])
    return out

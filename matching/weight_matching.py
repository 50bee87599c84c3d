"""Weight matching (Git Re-Basin, Ainsworth et al. 2023): coordinate descent over permutation groups.

Each step fixes every group but one and solves that group's linear assignment
problem exactly: maximise ``sum_k <pi(A)[k], B[k]>`` over the tensors touching
the group. A step is kept only if it strictly raises that objective, so the
objective never decreases and the descent ends (a full sweep that changes no
group) instead of cycling among tied optima.

Speed. A tensor's term for a group (one matmul of the two tensors flattened to
``(n, -1)``) depends only on the permutations of the tensor's *other* permuted
axes. So:

- terms with no other permuted axis (biases, BatchNorm vectors, the output
  axis of a first layer) are concatenated and computed once, in one matmul;
- every other term is cached with the versions of the groups it depends on
  and recomputed only when one of them changed; the group's float64 score
  matrix is updated by the difference;
- a group whose inputs did not change since its last solve is not solved
  again (its answer would be the same), so the confirming last sweep is free;
- each tensor is stored once with the group's axis first (a view when that
  axis is already first), so a recomputation costs one ``index_select`` copy
  and one matmul. This stores up to one extra copy of both models' weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from matching.assignment import (
    assignment_score,
    axis_repeats,
    compute_dtype,
    group_sizes,
    matchable_keys,
    permute_other_axes,
    solve_assignment,
)
from matching.spec import PermutationSpec, expand_permutation

# A group's new permutation is kept only if it raises the group's score by more
# than this fraction of the score's magnitude: float rounding of the terms must
# not make the descent swap between equally good permutations forever.
_REL_TOL = 1e-9


@dataclass(frozen=True)
class WeightMatchingResult:
    perms: dict[str, torch.Tensor]  # group -> CPU LongTensor, new unit i = old unit p[i]
    sweeps: int  # full sweeps over the groups that were run
    converged: bool  # True when the last sweep changed no group
    objective: float  # sum over matched tensors of <pi(A), B> at the end


def weight_matching(
    spec: PermutationSpec,
    state_dict_a: Mapping[str, torch.Tensor],
    state_dict_b: Mapping[str, torch.Tensor],
    seed: int = 0,
    max_iter: int = 100,
) -> dict[str, torch.Tensor]:
    """Permutations ``perms`` such that ``permute(spec, A, perms)`` best matches B (inner product).

    Returns one CPU LongTensor per group of the spec that touches a floating
    tensor. Deterministic for a given ``seed`` (which sets the order the
    groups are visited in each sweep). Computes on the tensors' device.
    """
    return match_weights(spec, state_dict_a, state_dict_b, seed=seed, max_iter=max_iter).perms


class _Term:
    """One (tensor, axis) of a group: A and B with that axis first, flattened products on demand."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, axes: tuple[str | None, ...], axis: int,
                 repeats: Mapping[int, int]) -> None:
        dtype = compute_dtype(a)
        # A unit of an axis with a repeat factor r owns r consecutive entries: with the axis first, they
        # reshape into the unit's row.
        self.n = a.shape[axis] // repeats.get(axis, 1)
        self.a = a.movedim(axis, 0).to(dtype).contiguous()
        self.b = b.movedim(axis, 0).to(dtype).reshape(self.n, -1)
        # the other permuted axes (with their repeat factors), at their positions once ``axis`` is moved first
        self.others = [
            (ax + 1 if ax < axis else ax, g, repeats.get(ax, 1))
            for ax, g in enumerate(axes) if g is not None and ax != axis
        ]
        self.depends_on = tuple(g for _, g, _ in self.others)

    def a_flat(self, perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        a = self.a
        for pos, g, r in self.others:
            a = a.index_select(pos, expand_permutation(perms[g], r))
        return a.reshape(self.n, -1)

    def score(self, perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``S[i, j] = <B unit i, A unit j>`` with A's other axes permuted (compute dtype)."""
        return self.b @ self.a_flat(perms).T


def match_weights(
    spec: PermutationSpec,
    state_dict_a: Mapping[str, torch.Tensor],
    state_dict_b: Mapping[str, torch.Tensor],
    seed: int = 0,
    max_iter: int = 100,
    init_perms: Mapping[str, torch.Tensor] | None = None,
) -> WeightMatchingResult:
    """:func:`weight_matching` that also reports sweeps, convergence and the final objective.

    ``init_perms`` (default identity) is where the descent starts.
    """
    keys = matchable_keys(spec, state_dict_a, state_dict_b)
    sizes = group_sizes(spec, state_dict_a, keys)
    groups = [g for g in spec.groups if g in sizes]
    if not groups:
        return WeightMatchingResult(perms={}, sweeps=0, converged=True, objective=0.0)
    device = state_dict_a[keys[0]].device
    perms = {g: torch.arange(sizes[g], device=device) for g in groups}
    if init_perms is not None:
        for g, p in init_perms.items():
            if g in perms:
                perms[g] = p.to(device=device, dtype=torch.long)
    version = dict.fromkeys(groups, 0)
    key_set = set(keys)

    total: dict[str, torch.Tensor] = {}  # float64 score matrix of each group
    varying: dict[str, list[tuple[_Term, list]]] = {}  # terms to recompute, with [stamp, cached score]
    depends_on: dict[str, list[str]] = {}
    for g in groups:
        fixed_a, fixed_b, varying[g] = [], [], []
        for key, axis in spec.groups[g]:
            if key not in key_set:
                continue
            term = _Term(state_dict_a[key], state_dict_b[key], spec.axes[key], axis, axis_repeats(spec, key))
            if term.others:
                varying[g].append((term, [None, None]))
            else:
                fixed_a.append(term.a.reshape(term.n, -1))
                fixed_b.append(term.b)
        n = sizes[g]
        total[g] = torch.zeros(n, n, dtype=torch.float64, device=device)
        if fixed_a:
            dtype = torch.promote_types(fixed_a[0].dtype, torch.float32)
            cat_a = torch.cat([t.to(dtype) for t in fixed_a], dim=1)
            cat_b = torch.cat([t.to(dtype) for t in fixed_b], dim=1)
            total[g] += cat_b @ cat_a.T
        depends_on[g] = sorted({h for term, _ in varying[g] for h in term.depends_on})

    def score_matrix(g: str) -> torch.Tensor:
        acc = total[g]
        for term, cached in varying[g]:
            stamp = tuple(version[h] for h in term.depends_on)
            if cached[0] == stamp:
                continue
            s = term.score(perms)
            acc += s  # in place, upcast on the fly: no float64 temporaries
            if cached[1] is not None:
                acc -= cached[1]
            cached[0], cached[1] = stamp, s
        return acc

    solved_at: dict[str, tuple[int, ...]] = {}
    rng = np.random.default_rng(seed)
    sweeps = 0
    converged = False
    while sweeps < max_iter:
        sweeps += 1
        changed = False
        for idx in rng.permutation(len(groups)):
            g = groups[idx]
            inputs = tuple(version[h] for h in depends_on[g])
            if solved_at.get(g) == inputs:
                continue  # same score matrix as at this group's last solve: same answer
            solved_at[g] = inputs
            s = score_matrix(g).cpu()
            new = solve_assignment(s)
            old_score = assignment_score(s, perms[g])
            new_score = assignment_score(s, new)
            if new_score > old_score + _REL_TOL * max(abs(old_score), abs(new_score), 1e-30):
                perms[g] = new.to(device)
                version[g] += 1
                changed = True
        if not changed:
            converged = True
            break

    out = {g: p.cpu() for g, p in perms.items()}
    objective = weight_matching_objective(spec, state_dict_a, state_dict_b, out)
    return WeightMatchingResult(perms=out, sweeps=sweeps, converged=converged, objective=objective)


def weight_matching_objective(
    spec: PermutationSpec,
    state_dict_a: Mapping[str, torch.Tensor],
    state_dict_b: Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor] | None = None,
) -> float:
    """``sum_k <pi(A)[k], B[k]>`` over the spec's floating tensors (identity if ``perms`` is None).

    Products in the tensors' precision, summed in float64.
    """
    total = 0.0
    on_device: dict[torch.device, dict[str, torch.Tensor]] = {}
    for key in matchable_keys(spec, state_dict_a, state_dict_b):
        a, b = state_dict_a[key], state_dict_b[key]
        if perms is not None:
            if a.device not in on_device:
                on_device[a.device] = {g: p.to(a.device) for g, p in perms.items()}
            a = permute_other_axes(a, spec.axes[key], on_device[a.device], repeats=axis_repeats(spec, key))
        total += float(torch.sum(a * b.to(a), dtype=torch.float64))
    return total

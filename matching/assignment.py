"""Linear assignment and the weight-similarity terms shared by both matching methods.

Conventions used throughout ``matching/``: a permutation ``p`` (a LongTensor)
means "new unit i = old unit p[i]", i.e. ``w.index_select(axis, p)``. A score
matrix ``S`` has B's units as rows and A's units as columns, so the assignment
that maximises ``sum_i S[i, p[i]]`` is exactly the permutation that moves A's
units onto B's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from matching.spec import PermutationSpec, expand_permutation


def solve_assignment(score: torch.Tensor, blocks: int = 1, tied: bool = False) -> torch.Tensor:
    """The permutation ``p`` (CPU LongTensor) maximising ``sum_i score[i, p[i]]``.

    ``score`` is square; it is moved to the CPU in float64 for scipy (imported
    here so that importing ``matching`` stays light). With ``blocks`` = k, the
    units fall in k consecutive equal blocks and ``p`` keeps each inside its
    own (each diagonal block is solved on its own); ``tied``, every block
    moves by one permutation (the sum of the diagonal blocks is solved).
    """
    from scipy.optimize import linear_sum_assignment

    if score.dim() != 2 or score.shape[0] != score.shape[1]:
        raise ValueError(f"score matrix must be square, got shape {tuple(score.shape)}")
    n = score.shape[0]
    if blocks < 1 or n % blocks:
        raise ValueError(f"{n} units do not fall in {blocks} equal blocks")
    s = score.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(s).all():
        raise ValueError("score matrix contains NaN or infinite entries")
    p = torch.empty(n, dtype=torch.long)
    size = max(n // blocks, 1)
    if tied and blocks > 1:
        summed = s.reshape(blocks, size, blocks, size).diagonal(axis1=0, axis2=2).sum(-1)
        rows, cols = linear_sum_assignment(summed, maximize=True)
        one = torch.empty(size, dtype=torch.long)
        one[torch.from_numpy(rows)] = torch.from_numpy(cols).long()
        return torch.cat([start + one for start in range(0, n, size)])
    for start in range(0, n, size):
        rows, cols = linear_sum_assignment(s[start : start + size, start : start + size], maximize=True)
        p[torch.from_numpy(rows) + start] = torch.from_numpy(cols).long() + start
    return p


def assignment_score(score: torch.Tensor, p: torch.Tensor) -> float:
    """``sum_i score[i, p[i]]`` in float64."""
    s = score.detach().to("cpu", torch.float64)
    return float(s[torch.arange(s.shape[0]), p.cpu()].sum())


def matchable_keys(
    spec: PermutationSpec, state_dict_a: Mapping[str, torch.Tensor], state_dict_b: Mapping[str, torch.Tensor]
) -> list[str]:
    """Spec keys whose tensors take part in matching: floating point, present in both, same shape.

    Integer buffers (``num_batches_tracked``) are skipped; a floating tensor the
    spec lists but a state dict lacks is an error, not something to skip silently.
    """
    keys = []
    for key, axes in spec.axes.items():
        for name, sd in (("A", state_dict_a), ("B", state_dict_b)):
            if key not in sd:
                raise KeyError(f"state dict {name} has no tensor {key!r} listed in the permutation spec")
        a, b = state_dict_a[key], state_dict_b[key]
        if not (a.is_floating_point() and b.is_floating_point()):
            continue
        if a.shape != b.shape:
            raise ValueError(f"{key!r}: shape {tuple(a.shape)} in A but {tuple(b.shape)} in B")
        if len(axes) != a.dim():
            raise ValueError(f"{key!r}: spec lists {len(axes)} axes but the tensor has {a.dim()}")
        keys.append(key)
    return keys


def group_sizes(
    spec: PermutationSpec, state_dict: Mapping[str, torch.Tensor], keys: list[str]
) -> dict[str, int]:
    """Size of every group that touches ``keys``; raises if two axes of one group disagree."""
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for key in keys:
        for axis, group in enumerate(spec.axes[key]):
            if group is None:
                continue
            n = state_dict[key].shape[axis] // spec.repeat(key, axis) * spec.fold(key, axis)
            if group in sizes and sizes[group] != n:
                raise ValueError(
                    f"group {group!r} has size {sizes[group]} at {where[group]} "
                    f"but {n} at {key!r} axis {axis}"
                )
            sizes[group] = n
            where[group] = f"{key!r} axis {axis}"
    return sizes


def permute_other_axes(
    w: torch.Tensor,
    axes: tuple[str | None, ...],
    perms: Mapping[str, torch.Tensor],
    skip_axis: int | None = None,
    repeats: Mapping[int, int] | None = None,
    folds: Mapping[int, int] | None = None,
) -> torch.Tensor:
    """``w`` with every permuted axis except ``skip_axis`` reordered by ``perms`` (``repeats``: axis -> factor;
    ``folds``: axis -> its group's block count, for an axis holding one block of a tied group)."""
    for axis, group in enumerate(axes):
        if group is None or axis == skip_axis:
            continue
        p = perms[group]
        fold = (folds or {}).get(axis, 1)
        if fold != 1:
            p = p[: p.numel() // fold]
        w = w.index_select(axis, expand_permutation(p, (repeats or {}).get(axis, 1)))
    return w


def axis_repeats(spec: PermutationSpec, key: str) -> dict[int, int]:
    """``key``'s axes with a repeat factor other than 1 (see ``PermutationSpec.repeats``)."""
    return {axis: r for (k, axis), r in spec.repeats.items() if k == key and r != 1}


def axis_folds(spec: PermutationSpec, key: str) -> dict[int, int]:
    """``key``'s folded axes with their group's block count (see ``PermutationSpec.folded``)."""
    return {axis: spec.fold(k, axis) for k, axis in spec.folded if k == key}


def embed_folded(score: torch.Tensor, fold: int) -> torch.Tensor:
    """A tied group's ``m x m`` score of one block, as an ``n x n`` score (n = fold * m): the block's
    score divided by ``fold`` on every diagonal block, so that a tied permutation scores it once."""
    out = torch.zeros(score.shape[0] * fold, score.shape[1] * fold, dtype=score.dtype, device=score.device)
    m = score.shape[0]
    for b in range(fold):
        out[b * m : (b + 1) * m, b * m : (b + 1) * m] = score / fold
    return out


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else is multiplied in float32 (and summed in float64)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def weight_similarity(
    spec: PermutationSpec,
    group: str,
    state_dict_a: Mapping[str, torch.Tensor],
    state_dict_b: Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor],
    keys: list[str],
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weight-matching score of one group, ``S[i, j] = sum_k <B_k unit i, pi(A)_k unit j>``.

    A's other axes are permuted by ``perms`` (on the tensors' device); only
    tensors in ``keys`` take part. With ``rows`` (B units) and/or ``cols`` (A
    units) given, only those rows and columns are computed and the rest of the
    float64 result is 0: for a few units this costs a few rows of matmul, not
    the full ``n x n``.
    """
    allowed = set(keys)
    terms = [(k, ax) for k, ax in spec.groups[group] if k in allowed]
    if not terms:
        raise ValueError(f"group {group!r} has no floating tensor to match on")
    n = state_dict_a[terms[0][0]].shape[terms[0][1]] // spec.repeat(*terms[0]) * spec.fold(*terms[0])
    device = state_dict_a[terms[0][0]].device
    out = torch.zeros(n, n, dtype=torch.float64, device=device)
    for key, axis in terms:
        a, b = state_dict_a[key], state_dict_b[key]
        dtype = compute_dtype(a)
        fold = spec.fold(key, axis)
        # A unit of a repeated axis owns a block of ``r`` consecutive entries: moved first, they reshape into its row.
        a_mat = permute_other_axes(a, spec.axes[key], perms, skip_axis=axis, repeats=axis_repeats(spec, key),
                                   folds=axis_folds(spec, key))
        a_mat = a_mat.movedim(axis, 0).reshape(n // fold, -1)
        b_mat = b.movedim(axis, 0).reshape(n // fold, -1)
        a_mat, b_mat = a_mat.to(dtype), b_mat.to(dtype)
        if fold != 1:  # one block of a tied group: its score on every diagonal block (all rows and columns)
            out += embed_folded((b_mat @ a_mat.T).double(), fold)
            continue
        if rows is None and cols is None:
            out += b_mat @ a_mat.T
            continue
        if rows is not None and len(rows):
            out[rows] += b_mat[rows] @ a_mat.T
        if cols is not None and len(cols):
            block = b_mat @ a_mat[cols].T
            if rows is not None and len(rows):
                block[rows] = 0.0  # those entries were added with the rows already
            out[:, cols] += block
    return out

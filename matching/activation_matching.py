"""Activation matching (the paper's method, after Jordan et al. 2023, REPAIR).

For every group the outputs of its modules (``spec.activations``) in A and B are
correlated unit by unit over the matching data, each spatial position being a
sample; the permutation maximising the summed correlation is a linear
assignment problem, solved once per group.

All groups are collected in one pass: forward hooks on every listed module of
both models, one forward of A and one of B per batch, statistics accumulated in
float64 (sums, sums of squares, and the A-by-B cross-product matrix).

Units with zero variance on the data (dead ReLUs, a unit whose incoming weights
are zero) carry no activation signal: their correlations are set to 0 (never
NaN). The ties they create, and exact ties between live units (with little data,
two units firing on the same single sample), are broken by the weights: on the
rows and columns of tied units a tiny multiple of the group's weight-matching
score (other groups permuted by the activation result) is added, too small to
move any assignment decided by a real correlation. So a planted permutation is
recovered exactly even where units are dead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from matching.assignment import group_sizes, matchable_keys, solve_assignment, weight_similarity
from matching.spec import PermutationSpec

# A unit counts as dead when its variance is below this fraction of its mean square:
# a constant activation leaves only float64 rounding (~1e-16 relative) as variance.
_DEAD_REL_VAR = 1e-9
# Total weight of the weight-similarity tie-break, spread over the n entries of an
# assignment: the whole tie-break can move the objective by at most ~2e-6.
_TIE_BREAK = 1e-6
_MAX_TIE_BREAK_PASSES = 10
# Two correlations closer than this are a tie, to be broken by the weights.
_TIE_GAP = 1e-9


@dataclass(frozen=True)
class GroupCorrelation:
    corr: torch.Tensor  # float64 [unit of B, unit of A]; 0 in the row or column of a dead unit
    dead_a: torch.Tensor  # bool per unit of A: zero variance on the data
    dead_b: torch.Tensor  # bool per unit of B


class _GroupStats:
    """Float64 running sums for one group: A and B sums, sums of squares, A-by-B cross products."""

    def __init__(self) -> None:
        self.count = 0
        self.sum_a: torch.Tensor | None = None
        self.sum_b: torch.Tensor | None = None
        self.sq_a: torch.Tensor | None = None
        self.sq_b: torch.Tensor | None = None
        self.cross: torch.Tensor | None = None  # [unit of A, unit of B]

    def add(self, za: torch.Tensor, zb: torch.Tensor) -> None:
        if za.shape != zb.shape:
            raise ValueError(
                f"activation shapes differ between models: {tuple(za.shape)} vs {tuple(zb.shape)}"
            )
        if za.device != zb.device:
            zb = zb.to(za.device)
        parts = (za.sum(0), zb.sum(0), (za * za).sum(0), (zb * zb).sum(0), za.T @ zb)
        if self.cross is None:
            self.sum_a, self.sum_b, self.sq_a, self.sq_b, self.cross = parts
        else:
            if parts[4].shape != self.cross.shape:
                raise ValueError("modules of one group have different numbers of units")
            self.sum_a += parts[0]
            self.sum_b += parts[1]
            self.sq_a += parts[2]
            self.sq_b += parts[3]
            self.cross += parts[4]
        self.count += za.shape[0]

    def correlation(self) -> GroupCorrelation:
        n = self.count
        mean_a, mean_b = self.sum_a / n, self.sum_b / n
        msq_a, msq_b = self.sq_a / n, self.sq_b / n
        var_a, var_b = msq_a - mean_a**2, msq_b - mean_b**2
        dead_a = var_a <= _DEAD_REL_VAR * msq_a
        dead_b = var_b <= _DEAD_REL_VAR * msq_b
        std_a = torch.where(dead_a, torch.ones_like(var_a), var_a.clamp_min(0).sqrt())
        std_b = torch.where(dead_b, torch.ones_like(var_b), var_b.clamp_min(0).sqrt())
        cov = self.cross / n - torch.outer(mean_a, mean_b)
        corr = cov / torch.outer(std_a, std_b)
        corr = corr.masked_fill(dead_a[:, None] | dead_b[None, :], 0.0)
        return GroupCorrelation(corr=corr.T.contiguous(), dead_a=dead_a, dead_b=dead_b)


def _flatten_units(z: Any, name: str) -> torch.Tensor:
    """(N, C, *spatial) -> (N * prod(spatial), C) in float64: every position is a sample."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"module {name!r} returned {type(z).__name__}; activation matching needs a tensor")
    if z.dim() < 2:
        raise ValueError(f"module {name!r} returned shape {tuple(z.shape)}; units must be on dimension 1")
    z = z.detach()
    # one copy that converts and puts units last; it also keeps later in-place ops from reaching it
    out = torch.empty((*z.shape[:1], *z.shape[2:], z.shape[1]), dtype=torch.float64, device=z.device)
    out.copy_(z.movedim(1, -1))
    return out.reshape(-1, z.shape[1])


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _inputs(batch: Any) -> torch.Tensor:
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def collect_correlations(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    spec: PermutationSpec,
) -> dict[str, GroupCorrelation]:
    """Per group with activation modules: unit correlations between A and B over ``batches``.

    One forward pass of each model per batch, in eval mode under ``no_grad``;
    every module's training flag is restored afterwards.
    """
    groups_of: dict[str, list[str]] = {}
    for group, names in spec.activations.items():
        for name in names:
            groups_of.setdefault(name, []).append(group)
    stats = {g: _GroupStats() for g, names in spec.activations.items() if names}
    pending: dict[str, torch.Tensor] = {}
    seen: set[tuple[str, str]] = set()
    phase = {"role": ""}

    def make_hook(role: str, name: str):
        def hook(_module: nn.Module, _inp: Any, out: Any) -> None:
            if phase["role"] != role:
                return
            if (role, name) in seen:
                raise RuntimeError(
                    f"module {name!r} ran twice in one forward pass; each module in spec.activations "
                    "must run once (a shared module, e.g. one ReLU reused, mixes several layers)"
                )
            seen.add((role, name))
            z = _flatten_units(out, name)
            if role == "a":
                pending[name] = z
                return
            za = pending.pop(name, None)
            if za is None:
                raise RuntimeError(f"module {name!r} ran in model B but not in model A")
            for g in groups_of[name]:
                stats[g].add(za, z)

        return hook

    handles = []
    modes: list[tuple[nn.Module, bool]] = []
    try:
        for role, model in (("a", model_a), ("b", model_b)):
            modules = dict(model.named_modules())
            for name in groups_of:
                if name not in modules:
                    raise ValueError(
                        f"spec.activations names module {name!r}, which model {role.upper()} lacks"
                    )
                handles.append(modules[name].register_forward_hook(make_hook(role, name)))
            modes.extend((m, m.training) for m in model.modules())
        model_a.eval()
        model_b.eval()
        dev_a, dev_b = _model_device(model_a), _model_device(model_b)
        with torch.no_grad():
            for batch in batches:
                x = _inputs(batch)
                seen.clear()
                phase["role"] = "a"
                model_a(x.to(dev_a))
                phase["role"] = "b"
                model_b(x.to(dev_b))
                phase["role"] = ""
                if pending:
                    raise RuntimeError(f"modules ran in model A but not in model B: {sorted(pending)}")
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    if any(s.count == 0 for s in stats.values()):
        raise ValueError("activation matching got no batches (or a listed module never ran)")
    return {g: s.correlation() for g, s in stats.items()}


def activation_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    spec: PermutationSpec | None = None,
) -> dict[str, torch.Tensor]:
    """Permutations (one CPU LongTensor per group) moving A's units onto B's by activation correlation.

    ``batches`` yields ``(x, y)`` pairs or bare inputs; ``spec`` defaults to
    ``model_a.permutation_spec()``. Groups without activation modules in the
    spec are matched by weights, given the other groups' permutations.
    """
    if spec is None:
        spec = model_a.permutation_spec()
    corr = collect_correlations(model_a, model_b, batches, spec)
    perms = {g: solve_assignment(c.corr) for g, c in corr.items()}

    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    keys = matchable_keys(spec, sd_a, sd_b)
    sizes = group_sizes(spec, sd_a, keys)
    missing = [g for g in spec.groups if g not in corr and g not in sizes]
    if missing:
        raise ValueError(f"groups {missing} have neither activation modules nor floating tensors")
    for g, n in sizes.items():
        if g not in corr:  # no activations: every unit is matched by weights alone
            every = torch.ones(n, dtype=torch.bool)
            corr[g] = GroupCorrelation(torch.zeros(n, n, dtype=torch.float64), every, every)
            perms[g] = torch.arange(n)
    tied = {g: (_tied_units(corr[g], 1), _tied_units(corr[g], 0)) for g in sizes}
    need = [g for g in spec.groups if g in tied and bool(tied[g][0].any() or tied[g][1].any())]
    if need:
        _break_ties_by_weights(spec, sd_a, sd_b, keys, corr, tied, perms, need)
    return perms


def _tied_units(c: GroupCorrelation, dim: int) -> torch.Tensor:
    """Units (B's for ``dim=1``, rows; A's for ``dim=0``, columns) whose best match is not unique.

    Dead units tie with everything. A live unit ties when its two best
    correlations are within ``_TIE_GAP``: with few samples, two units that
    fire on the same single sample correlate exactly alike.
    """
    dead = c.dead_b if dim == 1 else c.dead_a
    if c.corr.shape[dim] < 2:
        return dead.clone()
    top = c.corr.topk(2, dim=dim).values
    first, second = (top[:, 0], top[:, 1]) if dim == 1 else (top[0], top[1])
    return dead | (first - second <= _TIE_GAP)


def _resolve_rows(
    score: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Re-solve the assignment ``p`` only among ``rows``, the rows now holding ``cols``, and the
    columns those rows hold; every other row keeps its column.

    The weight term only touches tied rows and columns, and it is far smaller
    than any real correlation gap, so the rest of the assignment has nothing
    to gain from moving; this avoids a full ``n x n`` solve per tie-break.
    """
    inverse = torch.argsort(p)
    sub_rows = torch.unique(torch.cat([rows, inverse[cols]]))
    sub_cols = p[sub_rows]
    local = solve_assignment(score[sub_rows][:, sub_cols])
    out = p.clone()
    out[sub_rows] = sub_cols[local]
    return out


def _break_ties_by_weights(
    spec: PermutationSpec,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    keys: list[str],
    corr: Mapping[str, GroupCorrelation],
    tied: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    perms: dict[str, torch.Tensor],
    groups: list[str],
) -> None:
    """Re-solve ``groups`` (those with tied units) with weight similarity added on tied rows and columns.

    Dead units have correlation 0 with everything, so among them the
    assignment is a tie; live units can tie too (see :func:`_tied_units`).
    The weight-matching score of the tied rows (B units) and columns (A
    units), with the other groups permuted by the current result, decides
    it; it is scaled so that all of it together moves the objective by at
    most ``2 * _TIE_BREAK``, far below any real correlation gap. Entries
    between two untied units get no weight term, which keeps the cost to a
    few rows of a weight-matching step. Coordinate ascent over these groups,
    repeated while a group changes, because the tied units of neighbouring
    groups refine each other.
    """
    device = sd_a[keys[0]].device
    version = dict.fromkeys(perms, 0)
    solved_at: dict[str, tuple[int, ...]] = {}
    neighbours = {g: sorted({h for k, _ in spec.groups[g] for h in spec.axes[k]} - {g, None}) for g in groups}
    for _ in range(_MAX_TIE_BREAK_PASSES):
        changed = False
        for g in groups:
            inputs = tuple(version.get(h, 0) for h in neighbours[g])
            if solved_at.get(g) == inputs:
                continue
            solved_at[g] = inputs
            c = corr[g]
            rows = torch.nonzero(tied[g][0]).flatten().to(device)
            cols = torch.nonzero(tied[g][1]).flatten().to(device)
            on_device = {h: p.to(device) for h, p in perms.items()}
            w = weight_similarity(spec, g, sd_a, sd_b, on_device, keys, rows=rows, cols=cols).cpu()
            scale = w.abs().max()
            if scale > 0:
                w = w * (_TIE_BREAK / (w.shape[0] * scale))
            new = _resolve_rows(c.corr.cpu() + w, perms[g], rows.cpu(), cols.cpu())
            if not torch.equal(new, perms[g]):
                perms[g] = new
                version[g] += 1
                changed = True
        if not changed:
            break

"""Activation matching (the paper's method, after Jordan et al. 2023, REPAIR).

For every group the outputs of its modules (``spec.activations``) in A and B are
correlated unit by unit over the matching data, each spatial position being a
sample; the permutation maximising the summed correlation is a linear
assignment problem, solved once per group.

All groups are collected in one pass: forward hooks on every listed module of
both models, one forward of A and one of B per batch. Per module and batch the
statistics (sums, sums of squares, the A-by-B cross products) are computed on
activations shifted by a per-unit constant (the unit's mean on the first batch),
with float32 matrix products, and added up across batches in float64; the
modules of a group are then pooled exactly (Chan's formula). The shift keeps
float32 accurate when means are large against spreads (products of raw
activations would lose the covariance to cancellation), and it makes a unit
that is constant on the data exactly zero after shifting, so dead units are
found exactly. Correlations agree with all-float64 statistics to about 1e-6
(benchmarks/RESULTS.md, tests/test_matching.py). Small activations (at most
``_FLOAT64_MAX_VALUES`` values per batch, where float32 would save nothing) and
float64 models are multiplied in float64.

Units with zero variance on the data (dead ReLUs, a unit whose incoming weights
are zero) carry no activation signal: their correlations are set to 0 (never
NaN). Units that are interchangeable on the data (identical activations up to
scale, e.g. two units firing on the same single sample) get exactly equal
correlations: columns (rows) that agree everywhere within the statistics'
precision are replaced by their mean. The ties dead and interchangeable units
create are broken by the weights: on the rows and columns of tied units a tiny
multiple of the group's weight-matching score (other groups permuted by the
activation result) is added, too small to move any assignment decided by a real
correlation. So a planted permutation is recovered exactly even where units are
dead or duplicated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from matching.assignment import group_sizes, matchable_keys, solve_assignment, weight_similarity
from matching.spec import PermutationSpec

# A unit counts as dead when its variance is below this fraction of its mean square. A constant
# unit is exactly 0 after the shift (see _ModuleStats), so its variance is exactly 0.
_DEAD_REL_VAR = 1e-9
# ... or when its spread is below this fraction of the group's typical magnitude (root mean square
# over all its units): a unit that is constant up to float32 rounding of the forward pass (a network
# whose deep layers no longer vary with the input, a unit just above a ReLU's zero) varies by ~1e-7 of
# the layer's values, differently in A and in B (their sums run in another order), and its
# correlations are noise that would outvote the weights.
_NOISE_REL_STD = 1e-5
# Activations of at most this many values per batch (rows x units) are multiplied in float64: at that
# size per-op overhead dominates and float32 saves nothing, while float64 is exact (small data is also
# where exact ties between units, e.g. two units firing on the same single sample, are common).
_FLOAT64_MAX_VALUES = 1 << 16
# Rows per float32 matrix product; the products of longer activations are added in float64 block
# by block, so that the float32 error does not grow with the batch's size (ImageNet stems).
_BLOCK_ROWS = 1 << 17
# Correlations from float32 products are within ~2e-6 of float64 ones (benchmarks/RESULTS.md); two
# units whose correlations with every unit of the other model agree within this are interchangeable.
_SAME_UNIT_TOL = 1e-5
# Total weight of the weight-similarity tie-break, spread over the n entries of an
# assignment: the whole tie-break can move the objective by at most ~2e-6.
_TIE_BREAK = 1e-6
_MAX_TIE_BREAK_PASSES = 10
# Two correlations closer than this are a tie, to be broken by the weights (interchangeable units
# have been made exactly equal, dead ones are exactly 0).
_TIE_GAP = 1e-9
# How each unit's standard deviation is estimated (``std=`` of activation_matching): `pooled`, over all
# samples of all batches; `batch_mean`, the mean of its per-batch sample standard deviations with 1e-4 added
# to the product of two, as the paper's released ResNet20 matching estimated it.
STD_ESTIMATES = ("pooled", "batch_mean")
_BATCH_MEAN_EPS = 1e-4


@dataclass(frozen=True)
class GroupCorrelation:
    corr: torch.Tensor  # float64 [unit of B, unit of A]; 0 in the row or column of a dead unit
    dead_a: torch.Tensor  # bool per unit of A: zero variance on the data
    dead_b: torch.Tensor  # bool per unit of B


@dataclass(frozen=True)
class _Moments:
    """One module's float64 statistics about its own means: count, means, sums of squared
    deviations (M2) and the A-by-B co-moment ``sum (a - mean_a)(b - mean_b)^T``."""

    count: int
    mean_a: torch.Tensor
    mean_b: torch.Tensor
    m2_a: torch.Tensor
    m2_b: torch.Tensor
    comoment: torch.Tensor  # [unit of A, unit of B]
    # The mean over batches of each unit's per-batch sample standard deviation (the `batch_mean` estimate).
    batch_std_a: torch.Tensor | None = None
    batch_std_b: torch.Tensor | None = None


def _cross(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """``za.T @ zb`` in za's dtype, in blocks of rows added up in float64.

    Full float32 products even where the user allows TF32 or bf16 matmuls (``torch.
    set_float32_matmul_precision``): a 10-bit mantissa would cost three digits of every correlation.
    """
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        rows = za.shape[0]
        if rows <= _BLOCK_ROWS or za.dtype == torch.float64:
            return (za.T @ zb).double()
        total = torch.zeros(za.shape[1], zb.shape[1], dtype=torch.float64, device=za.device)
        for start in range(0, rows, _BLOCK_ROWS):
            total += (za[start : start + _BLOCK_ROWS].T @ zb[start : start + _BLOCK_ROWS]).double()
        return total
    finally:
        torch.set_float32_matmul_precision(precision)


class _Scratch:
    """Buffers reused from batch to batch, so that the statistics allocate nothing large per batch.

    On CPU a fresh tensor of a few MB costs more in page faults than the arithmetic done in
    it (measured on ResNet20's 8 MB activations: a square 6 ms fresh, 0.6 ms in place).
    """

    def __init__(self) -> None:
        self._buffers: dict[Any, torch.Tensor] = {}

    def get(self, key: Any, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel].view(shape)


class _ModuleStats:
    """Running float64 sums for one hooked module, over activations shifted by a per-unit constant.

    The shift of each model's units is their mean over the first batch: shifted
    activations have means of the order of their spreads, so float32 products keep the
    covariance. Where that mean is within 1e-5 of the first sample's value, the shift is
    that value itself: so a unit constant at c is shifted by exactly c (a float32 mean of
    copies of c is only within ~1e-6 of c), and its shifted values, sums and variance are
    exactly 0.
    """

    def __init__(self, name: str, scratch: _Scratch) -> None:
        self.name = name
        self.scratch = scratch
        self.count = 0
        self.shift: dict[str, torch.Tensor] = {}
        self.sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.cross: torch.Tensor | None = None  # [unit of A, unit of B]
        self.batch_std: dict[str, tuple[torch.Tensor, int]] = {}  # role -> (sum of per-batch stds, batches)

    def shifted(self, out: Any, role: str) -> torch.Tensor:
        """(N, C, *spatial) -> (N * prod(spatial), C), shifted, in a buffer; adds its sums.

        The copy is the one pass every activation needs: it puts units last (free for
        channels_last tensors, a transpose otherwise), converts, and keeps A's activations
        safe from in-place ops until B's forward. A's buffer is this module's own (it
        lives until B's forward); B's is shared by all modules.
        """
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"module {self.name!r} returned {type(out).__name__}; activation matching needs a tensor"
            )
        if out.dim() < 2:
            raise ValueError(
                f"module {self.name!r} returned shape {tuple(out.shape)}; units must be on dimension 1"
            )
        z = out.detach().movedim(1, -1)
        units = z.shape[-1]
        # float32 products (a half-precision model's too); small activations and float64 models: float64
        small = z.numel() <= _FLOAT64_MAX_VALUES
        dtype = torch.float64 if small or z.dtype == torch.float64 else torch.float32
        if role not in self.shift:
            rows = max(z.numel() // max(units, 1), 1)
            mean = z.sum(dim=tuple(range(z.dim() - 1)), dtype=dtype) / rows
            first = z[(0,) * (z.dim() - 1)].to(dtype)
            self.shift[role] = torch.where((mean - first).abs() <= 1e-5 * first.abs(), first, mean)
        shift = self.shift[role].to(dtype)  # a batch of another size may take the other dtype
        if shift.shape[0] != units:
            raise ValueError(f"module {self.name!r} changed its number of units between batches")
        key = ("a", self.name) if role == "a" else "b"
        centered = self.scratch.get(key, tuple(z.shape), dtype, z.device)
        torch.sub(z, shift, out=centered)
        centered = centered.view(-1, units)
        squares = self.scratch.get("squares", tuple(centered.shape), dtype, z.device)
        torch.mul(centered, centered, out=squares)
        part = (centered.sum(0).double(), squares.sum(0).double())
        old = self.sums.get(role)
        self.sums[role] = part if old is None else (old[0] + part[0], old[1] + part[1])
        self._add_batch_std(role, part, centered.shape[0])
        return centered

    def _add_batch_std(self, role: str, part: tuple[torch.Tensor, torch.Tensor], rows: int) -> None:
        """Adds this batch's sample standard deviation per unit (shift-invariant, from its sums)."""
        var = (part[1] - part[0] * part[0] / rows).clamp_min(0) / max(rows - 1, 1)
        total, batches = self.batch_std.get(role, (0.0, 0))
        self.batch_std[role] = (var.sqrt() + total, batches + 1)

    def add_cross(self, za: torch.Tensor, zb: torch.Tensor) -> None:
        if za.shape != zb.shape:
            raise ValueError(
                f"activation shapes differ between models at {self.name!r}: "
                f"{tuple(za.shape)} vs {tuple(zb.shape)}"
            )
        if za.device != zb.device:
            zb = zb.to(za.device)
        if za.dtype != zb.dtype:  # float32 in one model, float64 in the other: multiply in float64
            za, zb = za.double(), zb.double()
        part = _cross(za, zb)
        self.cross = part if self.cross is None else self.cross + part
        self.count += za.shape[0]

    def moments(self) -> _Moments:
        n = self.count
        (sum_a, sq_a), (sum_b, sq_b) = self.sums["a"], self.sums["b"]
        return _Moments(
            count=n,
            mean_a=self.shift["a"].double().to(sum_a.device) + sum_a / n,
            mean_b=self.shift["b"].double().to(sum_b.device) + sum_b / n,
            m2_a=(sq_a - sum_a * sum_a / n).clamp_min(0),
            m2_b=(sq_b - sum_b * sum_b / n).clamp_min(0),
            comoment=self.cross - torch.outer(sum_a, sum_b) / n,
            batch_std_a=self.batch_std["a"][0] / self.batch_std["a"][1],
            batch_std_b=self.batch_std["b"][0] / self.batch_std["b"][1],
        )


def _pool(parts: list[_Moments]) -> _Moments:
    """The moments of the union of the modules' samples (Chan et al.'s parallel formula)."""
    if len(parts) == 1:
        return parts[0]
    if len({p.comoment.shape for p in parts}) > 1:
        raise ValueError("modules of one group have different numbers of units")
    n = sum(p.count for p in parts)
    mean_a = sum(p.count * p.mean_a for p in parts) / n
    mean_b = sum(p.count * p.mean_b for p in parts) / n
    m2_a = sum(p.m2_a + p.count * (p.mean_a - mean_a) ** 2 for p in parts)
    m2_b = sum(p.m2_b + p.count * (p.mean_b - mean_b) ** 2 for p in parts)
    comoment = sum(p.comoment + p.count * torch.outer(p.mean_a - mean_a, p.mean_b - mean_b) for p in parts)
    # the batch-mean estimate of several modules pooled: their sample-weighted mean
    batch_std_a = sum(p.count * p.batch_std_a for p in parts) / n
    batch_std_b = sum(p.count * p.batch_std_b for p in parts) / n
    return _Moments(n, mean_a, mean_b, m2_a, m2_b, comoment, batch_std_a, batch_std_b)


def _correlation(m: _Moments, std: str = "pooled") -> GroupCorrelation:
    n = m.count
    var_a, var_b = m.m2_a / n, m.m2_b / n
    dead_a = _dead(var_a, m.mean_a)
    dead_b = _dead(var_b, m.mean_b)
    if std == "batch_mean":
        denominator = torch.outer(m.batch_std_a, m.batch_std_b) + _BATCH_MEAN_EPS
    else:
        std_a = torch.where(dead_a, torch.ones_like(var_a), var_a.sqrt())
        std_b = torch.where(dead_b, torch.ones_like(var_b), var_b.sqrt())
        denominator = torch.outer(std_a, std_b)
    corr = (m.comoment / n) / denominator
    corr = corr.masked_fill(dead_a[:, None] | dead_b[None, :], 0.0).T.contiguous()  # [unit of B, unit of A]
    corr = _merge_interchangeable(corr, ~dead_a, dim=1)
    corr = _merge_interchangeable(corr, ~dead_b, dim=0)
    return GroupCorrelation(corr=corr, dead_a=dead_a, dead_b=dead_b)


def _dead(var: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Units with no usable variance: relative to their own mean square, or at rounding level for the group."""
    power = var + mean**2
    floor = _NOISE_REL_STD**2 * power.mean()
    return (var <= _DEAD_REL_VAR * power) | (var <= floor)


def _merge_interchangeable(corr: torch.Tensor, live: torch.Tensor, dim: int) -> torch.Tensor:
    """Replace the columns (``dim=1``, A's units) or rows (``dim=0``, B's units) of live units
    that agree everywhere within ``_SAME_UNIT_TOL`` by their mean, so their ties are exact.

    Such units are indistinguishable on the data (e.g. identical activations, or two units
    firing on the same single sample); in float32 their correlations differ by rounding,
    which would decide the tie at random instead of by the weights. Candidates are found
    by sorting a random projection of the vectors (pairs within the tolerance project
    within ``_SAME_UNIT_TOL * |r|_1`` of each other), then checked entry by entry.
    """
    vectors = corr if dim == 1 else corr.T  # one unit per column
    units = torch.nonzero(live).flatten()
    if len(units) < 2:
        return corr
    g = torch.Generator(device="cpu").manual_seed(0)
    r = torch.rand(vectors.shape[0], generator=g, dtype=torch.float64).to(vectors.device)
    proj = r @ vectors[:, units]
    order = torch.argsort(proj)
    proj, units = proj[order].tolist(), units[order]
    window = _SAME_UNIT_TOL * float(r.sum())
    parent = list(range(len(units)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    merged = False
    for i in range(len(units)):
        j = i + 1
        while j < len(units) and proj[j] - proj[i] <= window:
            if root(i) != root(j):
                diff = (vectors[:, units[i]] - vectors[:, units[j]]).abs().max()
                if float(diff) <= _SAME_UNIT_TOL:
                    parent[root(j)] = root(i)
                    merged = True
            j += 1
    if not merged:
        return corr
    vectors = vectors.clone()
    classes: dict[int, list[int]] = {}
    for i in range(len(units)):
        classes.setdefault(root(i), []).append(int(units[i]))
    for members in classes.values():
        if len(members) > 1:
            idx = torch.tensor(members, device=vectors.device)
            vectors[:, idx] = vectors[:, idx].mean(1, keepdim=True)
    return vectors if dim == 1 else vectors.T.contiguous()


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


class _PairedForward:
    """The forward hooks of one collection: each batch runs through A, then B, and every hooked module's
    activations go into its statistics (A's kept, shifted, until B's arrive for the cross products)."""

    def __init__(self, stats: dict[str, _ModuleStats]) -> None:
        self.stats = stats
        self.role = ""  # the model running now, "a" or "b"; "" between forwards (hooks do nothing)
        self.pending: dict[str, torch.Tensor] = {}  # A's shifted activations, by module, until B's forward
        self.seen: set[tuple[str, str]] = set()  # (role, module) already run in this batch
        self.handles: list[Any] = []

    def attach(self, role: str, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name in self.stats:
            if name not in modules:
                raise ValueError(f"spec.activations names module {name!r}, which model {role.upper()} lacks")
            self.handles.append(modules[name].register_forward_hook(self._hook(role, name)))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()

    def _hook(self, role: str, name: str):
        def hook(_module: nn.Module, _inp: Any, out: Any) -> None:
            if self.role != role:
                return
            if (role, name) in self.seen:
                raise RuntimeError(
                    f"module {name!r} ran twice in one forward pass; each module in spec.activations "
                    "must run once (a shared module, e.g. one ReLU reused, mixes several layers)"
                )
            self.seen.add((role, name))
            z = self.stats[name].shifted(out, role)
            if role == "a":
                self.pending[name] = z
                return
            za = self.pending.pop(name, None)
            if za is None:
                raise RuntimeError(f"module {name!r} ran in model B but not in model A")
            self.stats[name].add_cross(za, z)

        return hook

    def run(self, model_a: nn.Module, model_b: nn.Module, batches: Iterable[Any]) -> None:
        """One forward of A and one of B per batch, without gradients."""
        dev_a, dev_b = _model_device(model_a), _model_device(model_b)
        with torch.no_grad():
            for batch in batches:
                x = _inputs(batch)
                self.seen.clear()
                self.role = "a"
                model_a(x.to(dev_a))
                self.role = "b"
                model_b(x.to(dev_b))
                self.role = ""
                if self.pending:
                    raise RuntimeError(f"modules ran in model A but not in model B: {sorted(self.pending)}")


def collect_correlations(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    spec: PermutationSpec,
    std: str = "pooled",
) -> dict[str, GroupCorrelation]:
    """Per group with activation modules: unit correlations between A and B over ``batches``.

    One forward pass of each model per batch, in eval mode under ``no_grad``;
    every module's training flag is restored afterwards. A module listed in
    several groups is measured once. ``std`` is one of ``STD_ESTIMATES``.
    """
    if std not in STD_ESTIMATES:
        raise ValueError(f"std must be one of {', '.join(STD_ESTIMATES)}, got {std!r}")
    groups = {g: list(names) for g, names in spec.activations.items() if names}
    scratch = _Scratch()
    stats = {name: _ModuleStats(name, scratch) for names in groups.values() for name in names}
    paired = _PairedForward(stats)
    modes: list[tuple[nn.Module, bool]] = []
    # A derived spec may observe graph nodes that are no module's output: it hooks a view of each model.
    model_a, model_b = spec.observable(model_a), spec.observable(model_b)
    try:
        for role, model in (("a", model_a), ("b", model_b)):
            paired.attach(role, model)
            modes.extend((m, m.training) for m in model.modules())
        model_a.eval()
        model_b.eval()
        paired.run(model_a, model_b, batches)
    finally:
        paired.detach()
        for m, mode in modes:
            m.training = mode
    if any(s.count == 0 for s in stats.values()):
        raise ValueError("activation matching got no batches (or a listed module never ran)")
    moments = {name: s.moments() for name, s in stats.items()}
    return {g: _correlation(_pool([moments[n] for n in names]), std) for g, names in groups.items()}


def activation_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    spec: PermutationSpec | None = None,
    std: str = "pooled",
) -> dict[str, torch.Tensor]:
    """Permutations (one CPU LongTensor per group) moving A's units onto B's by activation correlation.

    ``batches`` yields ``(x, y)`` pairs or bare inputs; ``spec`` defaults to
    ``model_a.permutation_spec()``. Groups without activation modules in the
    spec are matched by weights, given the other groups' permutations. ``std``:
    how unit standard deviations are estimated (``STD_ESTIMATES``).
    """
    if spec is None:
        spec = model_a.permutation_spec()
    correlations = collect_correlations(model_a, model_b, batches, spec, std)
    return permutations_from_correlations(model_a, model_b, correlations, spec)


def permutations_from_correlations(
    model_a: nn.Module,
    model_b: nn.Module,
    correlations: Mapping[str, GroupCorrelation],
    spec: PermutationSpec,
) -> dict[str, torch.Tensor]:
    """The assignments of :func:`activation_matching` from already collected correlations.

    One assignment per group; groups without correlations are matched by weights, and
    ties (dead or interchangeable units) are broken by weights.
    """
    corr = dict(correlations)
    perms = {g: solve_assignment(c.corr, spec.block_count(g), g in spec.tied) for g, c in corr.items()}

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
    if [g for g in need if g not in spec.tied]:
        _break_ties_by_weights(spec, sd_a, sd_b, keys, corr, tied, perms, [g for g in need if g not in spec.tied])
    for g in need:
        if g in spec.tied:  # every block moves alike: one solve of the whole group with the weights added
            device = sd_a[keys[0]].device
            w = weight_similarity(spec, g, sd_a, sd_b, {h: p.to(device) for h, p in perms.items()}, keys).cpu()
            scale = w.abs().max()
            if scale > 0:
                w = w * (_TIE_BREAK / (w.shape[0] * scale))
            perms[g] = solve_assignment(corr[g].corr.cpu() + w, spec.block_count(g), tied=True)
    return perms


def _tied_units(c: GroupCorrelation, dim: int) -> torch.Tensor:
    """Units (B's for ``dim=1``, rows; A's for ``dim=0``, columns) whose best match is not unique.

    Dead units tie with everything. A live unit ties when its two best
    correlations are within ``_TIE_GAP``: with few samples, two units that
    fire on the same single sample correlate exactly alike (made exact by
    :func:`_merge_interchangeable`).
    """
    dead = c.dead_b if dim == 1 else c.dead_a
    if c.corr.shape[dim] < 2:
        return dead.clone()
    top = c.corr.topk(2, dim=dim).values
    first, second = (top[:, 0], top[:, 1]) if dim == 1 else (top[0], top[1])
    return dead | (first - second <= _TIE_GAP)


def _resolve_rows(
    score: torch.Tensor, p: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, blocks: int = 1
) -> torch.Tensor:
    """Re-solve the assignment ``p`` only among ``rows``, the rows now holding ``cols``, and the
    columns those rows hold; every other row keeps its column.

    The weight term only touches tied rows and columns, and it is far smaller
    than any real correlation gap, so the rest of the assignment has nothing
    to gain from moving; this avoids a full ``n x n`` solve per tie-break.
    With ``blocks``, ``p`` keeps units inside their blocks: each block's rows
    are re-solved among themselves.
    """
    inverse = torch.argsort(p)
    size = p.numel() // blocks
    all_rows = torch.unique(torch.cat([rows, inverse[cols]]))
    out = p.clone()
    for block in torch.unique(all_rows // size):
        sub_rows = all_rows[all_rows // size == block]
        sub_cols = p[sub_rows]
        local = solve_assignment(score[sub_rows][:, sub_cols])
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
            new = _resolve_rows(c.corr.cpu() + w, perms[g], rows.cpu(), cols.cpu(), spec.block_count(g))
            if not torch.equal(new, perms[g]):
                perms[g] = new
                version[g] += 1
                changed = True
        if not changed:
            break

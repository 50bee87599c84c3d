"""Activation matching: ours (one pass, float32 products) against the original code and our float64 version.

Three implementations, side by side in one process on the same models and batches:

- **the original**: the released code's ``act_matching_resnet20.py`` (REPAIR's
  ``run_corr_matrix``), rebuilt here (``original_matching``): for each of its 12
  groups it runs fresh prefix networks of both models over all the data (9 block
  interiors, then one block output per stage, blocks 3, 6 and 8), converts each
  activation to float64, and averages per-batch means, per-batch standard
  deviations and cross products; correlation = cov / (std_B std_A + 1e-4), then
  ``linear_sum_assignment``. Its models are as the original ran them (NCHW, ReLUs
  out of place). It also writes each permutation into A's weights as it goes;
  that changes no later activation (every permutation preserves the function)
  and costs milliseconds, so the rebuild returns the permutations instead.
- **ours**: ``matching.activation_matching``: hooks on every group's modules, one
  forward of A and one of B per batch, per-batch statistics from float32 matrix
  products of shifted activations, added up in float64. Timed with the original's
  choice of activations (one block output per stage: identical permutations
  expected) and with our default spec (every block output of a stage pooled).
- **ours, float64**: the previous version of ours, whose statistics were float64
  copies and products of every activation (``float64_correlations``, kept here as
  the baseline), with the same assignment and tie-breaking code.

Models: two ResNet20s from different seeds, their BatchNorm statistics set on
the data (no unit is dead), prepared for the device as the pipeline prepares
them. The float32 statistics are also checked against the float64 ones on two
briefly trained ResNet20s (Fashion-MNIST if present, else the fake CIFAR).
"""

from __future__ import annotations

import copy
import itertools
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import (
    add_check,
    add_table,
    base_parser,
    emit,
    interleaved,
    median,
    new_section,
    paired_ratio,
    set_threads,
)
from benchmarks.original import as_original_model
from data import build_data
from data.errors import DatasetNotFound
from matching.activation_matching import (
    GroupCorrelation,
    collect_correlations,
    permutations_from_correlations,
)
from matching.assignment import solve_assignment
from matching.spec import PermutationSpec
from models import create
from tests.fake_cifar import write_fake_cifar
from training.device import prepare_model

CPU = torch.device("cpu")
TARGET = 8.0  # ours / the original, side by side (issue 10)
STREAM_BLOCKS = (3, 6, 8)  # the original's block indices (0 = stem) whose outputs give the stage permutations


# ---------------------------------------------------------------- the original (act_matching_resnet20.py)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The original's ``get_blocks``: the stem (conv, BN, a fresh ReLU), then the nine blocks."""
    stem = nn.Sequential(model.conv1, model.bn1, nn.ReLU())
    return [stem, *model.layer1, *model.layer2, *model.layer3]


def _block_name(k: int) -> str:
    """Block index k >= 1 of ``_blocks`` -> our module name (``layer{s}.{i}``)."""
    return f"layer{(k - 1) // 3 + 1}.{(k - 1) % 3}"


def original_prefixes(model: nn.Module) -> dict[str, nn.Module]:
    """Our group name -> the original's prefix network whose output gives that group's activations."""
    blocks = _blocks(model)
    nets: dict[str, nn.Module] = {}
    for k in range(1, len(blocks)):
        block = blocks[k]
        nets[f"{_block_name(k)}.inner"] = nn.Sequential(*blocks[:k], block.conv1, block.bn1, nn.ReLU())
    for stage, k in enumerate(STREAM_BLOCKS, start=1):
        nets[f"stream{stage}"] = nn.Sequential(*blocks[: k + 1])
    return nets


def _original_units(out: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C) float64, as the original reshapes, permutes and converts."""
    out = out.reshape(out.shape[0], out.shape[1], -1).permute(0, 2, 1)
    return out.reshape(-1, out.shape[2]).double()


def original_correlation(net_b: nn.Module, net_a: nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    """REPAIR's ``run_corr_matrix(net0=B, net1=A)``: means, unbiased stds and cross products averaged
    over batches (each batch weighted equally), then cov / (std_B std_A^T + 1e-4); [B unit, A unit]."""
    n = len(batches)
    acc: list[torch.Tensor] | None = None
    with torch.no_grad():
        net_b.eval()
        net_a.eval()
        for x in batches:
            zb = _original_units(net_b(x))
            za = _original_units(net_a(x))
            parts = [zb.mean(0), za.mean(0), zb.std(0), za.std(0), (zb.T @ za) / zb.shape[0]]
            acc = [p / n for p in parts] if acc is None else [s + p / n for s, p in zip(acc, parts, strict=True)]
    mean_b, mean_a, std_b, std_a, outer = acc
    return (outer - torch.outer(mean_b, mean_a)) / (torch.outer(std_b, std_a) + 1e-4)


def original_matching(model_a: nn.Module, model_b: nn.Module, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original's ``permute_model_resnet``: one prefix pass of both models over the data per group."""
    nets_a, nets_b = original_prefixes(model_a), original_prefixes(model_b)
    return {g: solve_assignment(original_correlation(nets_b[g], nets_a[g], batches)) for g in nets_a}


def original_spec(spec: PermutationSpec) -> PermutationSpec:
    """Our ResNet20 spec with the original's activations: block interiors, and one block output per stage."""
    activations = {g: list(names) for g, names in spec.activations.items() if g.endswith(".inner")}
    for stage, k in enumerate(STREAM_BLOCKS, start=1):
        activations[f"stream{stage}"] = [_block_name(k)]
    return PermutationSpec(axes=dict(spec.axes), activations=activations)


def original_flops(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(FLOPs of all the original's prefix passes, FLOPs of one full forward) for one model and batch."""
    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as full:
            model(x)
        with FlopCounterMode(display=False) as prefixes:
            for net in original_prefixes(model).values():
                net(x)
    return float(prefixes.get_total_flops()), float(full.get_total_flops())


# ---------------------------------------------------------------- ours before: float64 statistics


class _Float64Stats:
    """The previous statistics path: float64 running sums, sums of squares and cross products of raw activations."""

    def __init__(self) -> None:
        self.count = 0
        self.parts: list[torch.Tensor] | None = None  # sum A, sum B, sum A^2, sum B^2, A^T B

    def add(self, za: torch.Tensor, zb: torch.Tensor) -> None:
        parts = [za.sum(0), zb.sum(0), (za * za).sum(0), (zb * zb).sum(0), za.T @ zb]
        if self.parts is None:
            self.parts = parts
        else:
            for total, part in zip(self.parts, parts, strict=True):
                total += part
        self.count += za.shape[0]

    def correlation(self) -> GroupCorrelation:
        n = self.count
        sum_a, sum_b, sq_a, sq_b, cross = self.parts
        mean_a, mean_b = sum_a / n, sum_b / n
        msq_a, msq_b = sq_a / n, sq_b / n
        var_a, var_b = msq_a - mean_a**2, msq_b - mean_b**2
        dead_a, dead_b = var_a <= 1e-9 * msq_a, var_b <= 1e-9 * msq_b
        std_a = torch.where(dead_a, torch.ones_like(var_a), var_a.clamp_min(0).sqrt())
        std_b = torch.where(dead_b, torch.ones_like(var_b), var_b.clamp_min(0).sqrt())
        corr = (cross / n - torch.outer(mean_a, mean_b)) / torch.outer(std_a, std_b)
        corr = corr.masked_fill(dead_a[:, None] | dead_b[None, :], 0.0)
        return GroupCorrelation(corr=corr.T.contiguous(), dead_a=dead_a, dead_b=dead_b)


def _float64_units(z: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) -> (N * prod(spatial), C): one float64 copy with units last."""
    z = z.detach()
    out = torch.empty((*z.shape[:1], *z.shape[2:], z.shape[1]), dtype=torch.float64, device=z.device)
    out.copy_(z.movedim(1, -1))
    return out.reshape(-1, z.shape[1])


def float64_correlations(
    model_a: nn.Module, model_b: nn.Module, batches: Iterable[Any], spec: PermutationSpec
) -> dict[str, GroupCorrelation]:
    """Our previous ``collect_correlations``: the same one pass, float64 copies and products of every activation."""
    groups_of: dict[str, list[str]] = {}
    for group, names in spec.activations.items():
        for name in names:
            groups_of.setdefault(name, []).append(group)
    stats = {g: _Float64Stats() for g, names in spec.activations.items() if names}
    pending: dict[str, torch.Tensor] = {}
    phase = {"role": ""}

    def make_hook(role: str, name: str):
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if phase["role"] != role:
                return
            z = _float64_units(out)
            if role == "a":
                pending[name] = z
                return
            za = pending.pop(name)
            for g in groups_of[name]:
                stats[g].add(za, z)

        return hook

    handles = []
    for role, model in (("a", model_a), ("b", model_b)):
        modules = dict(model.named_modules())
        handles += [modules[name].register_forward_hook(make_hook(role, name)) for name in groups_of]
    model_a.eval()
    model_b.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                phase["role"] = "a"
                model_a(x)
                phase["role"] = "b"
                model_b(x)
                phase["role"] = ""
    finally:
        for h in handles:
            h.remove()
    return {g: s.correlation() for g, s in stats.items()}


# ---------------------------------------------------------------- models and checks


def calibrated_model(width: int, seed: int, batches: list[torch.Tensor], in_channels: int = 3) -> nn.Module:
    """A fresh ResNet20 whose BatchNorm running statistics are those of ``batches`` (no dead units)."""
    torch.manual_seed(seed)
    model = prepare_model(create("ResNet", num_classes=10, in_channels=in_channels, width=width), CPU)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    return model.eval()


def trained_pair(width: int, steps: int, batch: int, n_match: int, fake_root: str) -> tuple[str, nn.Module,
                                                                                            nn.Module, list]:
    """Two ResNet20s trained ``steps`` SGD steps from different seeds, and ``n_match`` matching batches."""
    try:
        bundle, name = build_data("fashion-mnist", "absent", batch_size=batch, device=CPU), "Fashion-MNIST"
    except DatasetNotFound:
        bundle, name = build_data("cifar10", fake_root, batch_size=batch, device=CPU), "fake CIFAR-10"
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = prepare_model(create("ResNet", num_classes=10, in_channels=bundle.in_channels, width=width), CPU)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        model.train()
        batches = itertools.chain.from_iterable(bundle.train_batches(e, seed) for e in itertools.count())
        for x, y in itertools.islice(batches, steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        models.append(model.eval())
    match = [(x.clone(), y) for x, y in bundle.eval_train_batches(n_match)]
    return f"ResNet20x{width} trained {steps} steps on {name}", models[0], models[1], match


def compare_statistics(model_a: nn.Module, model_b: nn.Module, batches: list, spec: PermutationSpec) -> dict:
    """Float32-product correlations against the float64 ones: max abs difference, dead units, assignments."""
    new = collect_correlations(model_a, model_b, batches, spec)
    old = float64_correlations(model_a, model_b, batches, spec)
    p_new = permutations_from_correlations(model_a, model_b, new, spec)
    p_old = permutations_from_correlations(model_a, model_b, old, spec)
    return {
        "max_abs_diff": max(float((new[g].corr - old[g].corr).abs().max()) for g in old),
        "dead_same": all(torch.equal(new[g].dead_a, old[g].dead_a) and torch.equal(new[g].dead_b, old[g].dead_b)
                         for g in old),
        "dead": sum(int(c.dead_a.sum() + c.dead_b.sum()) for c in new.values()),
        "identical": all(torch.equal(p_new[g], p_old[g]) for g in p_old),
    }


def profile_ours(model_a: nn.Module, model_b: nn.Module, batches: list, spec: PermutationSpec) -> list[list]:
    """Self CPU time of ours by operator (torch.profiler), grouped into the forward and the statistics."""
    from torch.profiler import ProfilerActivity, profile

    forward_ops = {"aten::mkldnn_convolution", "aten::native_batch_norm", "aten::clamp_min_", "aten::clamp_min",
                   "aten::add", "aten::add_", "aten::convolution", "aten::_convolution", "aten::addmm",
                   "aten::relu_", "aten::mean", "aten::adaptive_avg_pool2d", "aten::_batch_norm_impl_index",
                   "aten::batch_norm", "aten::linear", "aten::relu"}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        collect_correlations(model_a, model_b, batches, spec)
    events = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    total = sum(t for _, t in events)
    rows = []
    for label, keep in (("forward of A and B (convolution, batch norm, ReLU, residual add)",
                         lambda k: k in forward_ops),
                        ("statistics: matrix products (mm)", lambda k: k == "aten::mm"),
                        ("statistics: shifted copies (sub)", lambda k: k == "aten::sub"),
                        ("statistics: sums and squares (sum, mul)", lambda k: k in ("aten::sum", "aten::mul")),
                        ("other (float64 accumulation, conversions, hooks, allocation)",
                         lambda k: k not in forward_ops and k not in ("aten::mm", "aten::sub", "aten::sum",
                                                                     "aten::mul"))):
        seconds = sum(t for k, t in events if keep(k))
        rows.append([label, seconds, seconds / total])
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=20, help="batches of 128 (default 20, the issue's figure)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=100, help="SGD steps of each trained-like model")
    args = p.parse_args(argv)
    set_threads(args.threads)
    batch = 16 if args.tiny else 128
    n_batches = 2 if args.tiny else args.batches
    rounds = 1 if args.tiny else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar(tmp, "cifar10", n_train=max(n_batches, 4) * batch, n_test=batch, seed=0)
        bundle = build_data("cifar10", tmp, batch_size=batch, device=CPU)
        xs = [x.clone() for x, _ in bundle.eval_train_batches(n_batches)]
        trained = trained_pair(args.width, 2 if args.tiny else args.train_steps, batch, n_batches, tmp)
    model_a = calibrated_model(args.width, 0, xs[:5])
    model_b = calibrated_model(args.width, 1, xs[:5])
    orig_a, orig_b = as_original_model(copy.deepcopy(model_a)), as_original_model(copy.deepcopy(model_b))
    spec = model_a.permutation_spec()
    spec_orig = original_spec(spec)
    batches = [(x, torch.zeros(x.shape[0], dtype=torch.long)) for x in xs]
    results: dict[str, dict[str, torch.Tensor]] = {}

    def forward_only() -> None:
        with torch.no_grad():
            for x in xs:
                model_a(x)
                model_b(x)

    names = {
        "ours, the original's activations": "ours_orig",
        "ours, default spec (all block outputs)": "ours",
        "ours float64 (previous), default spec": "float64",
        "the original (act_matching_resnet20.py)": "original",
        "forward of A and B only (no statistics)": "forward",
    }
    variants: dict[str, Callable[[], object]] = {
        "ours, the original's activations": lambda: results.__setitem__(
            "ours_orig", permutations_from_correlations(
                model_a, model_b, collect_correlations(model_a, model_b, batches, spec_orig), spec_orig)),
        "ours, default spec (all block outputs)": lambda: results.__setitem__(
            "ours", permutations_from_correlations(
                model_a, model_b, collect_correlations(model_a, model_b, batches, spec), spec)),
        "ours float64 (previous), default spec": lambda: results.__setitem__(
            "float64", permutations_from_correlations(
                model_a, model_b, float64_correlations(model_a, model_b, batches, spec), spec)),
        "the original (act_matching_resnet20.py)": lambda: results.__setitem__(
            "original", original_matching(orig_a, orig_b, xs)),
        "forward of A and B only (no statistics)": forward_only,
    }
    # untimed warm-up on one batch (first-call costs: oneDNN primitives, MKL), then full rounds: a whole
    # warm-up round would cost a minute for the original alone
    collect_correlations(model_a, model_b, batches[:1], spec)
    float64_correlations(model_a, model_b, batches[:1], spec)
    original_matching(orig_a, orig_b, xs[:1])
    times = interleaved(variants, rounds=rounds, warmup=0)
    t = {names[k]: v for k, v in times.items()}
    vs_original = paired_ratio(t["original"], t["ours_orig"])
    vs_original_default = paired_ratio(t["original"], t["ours"])
    vs_float64 = paired_ratio(t["float64"], t["ours"])
    same_original = {g: torch.equal(results["ours_orig"][g], results["original"][g]) for g in results["original"]}
    same_float64 = {g: torch.equal(results["ours"][g], results["float64"][g]) for g in results["float64"]}
    moved = sum(int((q != torch.arange(len(q))).sum()) for q in results["original"].values())
    prefix, full = original_flops(orig_a, xs[0][:2])
    stats_t = max(median(t["ours_orig"]) - median(t["forward"]), 0.0)
    cap = median(t["original"]) / median(t["forward"])  # ours could be no faster than its forward passes
    random_cmp = compare_statistics(model_a, model_b, batches, spec)
    trained_name, trained_a, trained_b, trained_batches = trained
    trained_cmp = compare_statistics(trained_a, trained_b, trained_batches, trained_a.permutation_spec())
    profile_rows = profile_ours(model_a, model_b, batches[: max(1, n_batches // 4)], spec_orig)

    section = new_section("activation_matching", f"3. Activation matching: ResNet20x{args.width}, "
                          f"{n_batches} batches of {batch}, {args.threads} thread(s)")
    add_table(section, f"Seconds, median of {rounds} interleaved rounds",
              ["variant", "s", "speed vs the original", "speed vs ours float64"],
              [[name, median(v), paired_ratio(t["original"], v), paired_ratio(t["float64"], v)]
               for name, v in times.items()])
    add_table(section, "Permutations: ours against the original (same activations) and against ours float64 "
              "(default spec)", ["group", "units", "identical to the original", "identical to float64"],
              [[g, len(results["original"][g]), same_original[g], same_float64.get(g, "—")]
               for g in results["original"]])
    add_table(section, "Float32-product statistics against float64 ones (same batches)",
              ["models", "max abs difference of correlations", "dead units (A+B)", "same dead units",
               "identical permutations"],
              [[f"ResNet20x{args.width}, random init, BN calibrated (the timed pair)",
                f"{random_cmp['max_abs_diff']:.1e}", random_cmp["dead"], random_cmp["dead_same"],
                random_cmp["identical"]],
               [trained_name, f"{trained_cmp['max_abs_diff']:.1e}", trained_cmp["dead"], trained_cmp["dead_same"],
                trained_cmp["identical"]]])
    add_table(section, f"Where ours spends its time (torch.profiler, self CPU time, the original's activations, "
              f"{max(1, n_batches // 4)} batches)", ["part", "s", "share"], profile_rows)
    add_table(section, "Bounds", ["quantity", "value"], [
        ["groups (one prefix pass each in the original)", len(spec_orig.activations)],
        ["the original's prefix passes per batch and model, in full forwards (by FLOPs)", prefix / full],
        ["statistics time in ours (ours, the original's activations - forward only), s", stats_t],
        ["largest speed-up against the original if ours' statistics were free (original / forward only)", cap],
    ])
    all_same = all(same_original.values()) and all(same_float64.values())
    add_check(section, "activation matching, the original / ours (time, side by side)", vs_original,
              f">= {TARGET:.0f}", vs_original >= TARGET, unit="x",
              note=f"same activations as the original; {vs_original_default:.1f}x with our default spec (every block "
                   "output pooled)" + ("" if vs_original >= TARGET else
                                       f"; even free statistics would cap it at {cap:.1f}x"))
    add_check(section, "activation matching, ours float64 (previous) / ours float32 (time, side by side)", vs_float64,
              "", None, unit="x", note="default spec")
    add_check(section, "activation matching, permutations identical to the original and to float64",
              float(all_same), "all groups", all_same, note=f"{moved} units moved in total")
    add_check(section, "activation matching, max abs difference of correlations, float32 products / float64",
              max(random_cmp["max_abs_diff"], trained_cmp["max_abs_diff"]) * 1e6, "", None, unit="x 1e-6",
              note=f"random pair {random_cmp['max_abs_diff']:.1e}, trained pair {trained_cmp['max_abs_diff']:.1e}; "
                   f"permutations identical: {random_cmp['identical'] and trained_cmp['identical']}")
    section["notes"].append(
        "All variants see the same in-memory batches (no augmentation) and the same models; the original's models "
        "are NCHW with out-of-place ReLUs, as it ran them, and its tqdm progress bar is left out. Ours computes "
        "per-batch statistics from float32 products of activations shifted by their first-batch means and adds "
        "them up in float64; the previous version copied every activation to float64.")
    section["data"] = {"times": times, "identical": {**{f"original:{g}": v for g, v in same_original.items()},
                                                     **{f"float64:{g}": v for g, v in same_float64.items()}},
                       "prefix_flops_ratio": prefix / full, "vs_original": vs_original, "vs_float64": vs_float64,
                       "random": random_cmp, "trained": trained_cmp}
    emit(section, args.json)
    if not all_same:
        raise SystemExit(f"permutations differ: original {[g for g, s in same_original.items() if not s]}, "
                         f"float64 {[g for g, s in same_float64.items() if not s]}")
    return section


if __name__ == "__main__":
    main()

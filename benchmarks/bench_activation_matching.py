"""Activation matching: our one pass over the data versus the original's layer-by-layer passes.

Ours (``matching.activation_matching``) hooks every group's modules in both
models and collects all groups' statistics in one forward of A and one of B
per batch. The original code matched layer by layer: for each group it ran the
two models over the data again, only as far as that group (a prefix of the
network), collected that group's activations, and solved its assignment.
That baseline is written here (``layer_by_layer_matching``), with the same
correlation statistics (float64 sums; every spatial position a sample) and
the same assignment solver, so both must give the same permutations: the
benchmark asserts it.

Models: two ResNet20s from different seeds, their BatchNorm statistics set
on the data (so no unit is dead, where ours would break ties by weights and
the baseline could not), prepared for the device as the pipeline prepares
them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

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
from data import build_data
from matching import activation_matching
from matching.assignment import solve_assignment
from matching.spec import PermutationSpec
from models import create
from tests.fake_cifar import write_fake_cifar
from training.device import prepare_model

CPU = torch.device("cpu")
ORIGINAL_SECONDS = 131.0  # the original code, ResNet20x1, 20 batches of 128, one thread (the figure)


class _Stop(Exception):
    """Raised by a hook once a group's last module has run: the rest of the network is skipped."""


def _units(z: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C) float64, every position a sample."""
    z = z.detach()
    if z.dim() > 2:
        z = z.movedim(1, -1)
    return z.to(torch.float64, memory_format=torch.contiguous_format).reshape(-1, z.shape[-1])


def prefix_activations(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` only until every module in ``names`` has run; their outputs in run order."""
    modules = dict(model.named_modules())
    got: dict[str, torch.Tensor] = {}

    def make(name: str):
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            got[name] = _units(out)
            if len(got) == len(names):
                raise _Stop

        return hook

    handles = [modules[n].register_forward_hook(make(n)) for n in names]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return got


def correlation(stats: list[torch.Tensor], count: int) -> torch.Tensor:
    """[B unit, A unit] correlation from float64 sums (population statistics)."""
    sum_a, sum_b, sq_a, sq_b, cross = stats
    mean_a, mean_b = sum_a / count, sum_b / count
    std_a = (sq_a / count - mean_a**2).clamp_min(0).sqrt()
    std_b = (sq_b / count - mean_b**2).clamp_min(0).sqrt()
    cov = cross / count - torch.outer(mean_a, mean_b)
    return (cov / torch.outer(std_a, std_b)).T.contiguous()


def layer_by_layer_matching(
    model_a: nn.Module, model_b: nn.Module, batches: list[torch.Tensor], spec: PermutationSpec
) -> dict[str, torch.Tensor]:
    """The original's way: per group, fresh prefix passes of both models over all the data, then solve."""
    model_a.eval()
    model_b.eval()
    perms = {}
    with torch.no_grad():
        for group, names in spec.activations.items():
            stats: list[torch.Tensor] | None = None
            count = 0
            for x in batches:
                acts_a = prefix_activations(model_a, x, names)
                acts_b = prefix_activations(model_b, x, names)
                for name, zb in acts_b.items():
                    za = acts_a[name]
                    parts = [za.sum(0), zb.sum(0), (za * za).sum(0), (zb * zb).sum(0), za.T @ zb]
                    stats = parts if stats is None else [s + p for s, p in zip(stats, parts, strict=True)]
                    count += za.shape[0]
            perms[group] = solve_assignment(correlation(stats, count))
    return perms


def prefix_flops(model: nn.Module, spec: PermutationSpec, x: torch.Tensor) -> tuple[float, float]:
    """(FLOPs of all the baseline's prefix passes, FLOPs of one full forward) for one model and batch."""
    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as full:
            model(x)
        total = 0.0
        for names in spec.activations.values():
            with FlopCounterMode(display=False) as part:
                prefix_activations(model, x, names)
            total += part.get_total_flops()
    return total, float(full.get_total_flops())


def calibrated_model(width: int, seed: int, batches: list[torch.Tensor]) -> nn.Module:
    """A fresh ResNet20 whose BatchNorm running statistics are those of ``batches`` (no dead units)."""
    torch.manual_seed(seed)
    model = prepare_model(create("ResNet", num_classes=10, in_channels=3, width=width), CPU)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    return model.eval()


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=20, help="batches of 128 (default 20, the original's figure)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--width", type=int, default=1)
    args = p.parse_args(argv)
    set_threads(args.threads)
    batch = 16 if args.tiny else 128
    n_batches = 2 if args.tiny else args.batches
    rounds = 1 if args.tiny else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar(tmp, "cifar10", n_train=n_batches * batch, n_test=batch, seed=0)
        bundle = build_data("cifar10", tmp, batch_size=batch, device=CPU)
        xs = [x.clone() for x, _ in bundle.eval_train_batches(n_batches)]
    model_a = calibrated_model(args.width, 0, xs[:5])
    model_b = calibrated_model(args.width, 1, xs[:5])
    spec = model_a.permutation_spec()
    batches = [(x, torch.zeros(x.shape[0], dtype=torch.long)) for x in xs]
    results: dict[str, dict[str, torch.Tensor]] = {}

    def ours() -> None:
        results["ours"] = activation_matching(model_a, model_b, batches, spec)

    def baseline() -> None:
        results["baseline"] = layer_by_layer_matching(model_a, model_b, xs, spec)

    def forward_only() -> None:
        with torch.no_grad():
            for x in xs:
                model_a(x)
                model_b(x)

    variants: dict[str, Callable[[], object]] = {"ours (one pass)": ours, "layer by layer (original's way)":
                                                 baseline, "forward of A and B only (no statistics)": forward_only}
    times = interleaved(variants, rounds=rounds, warmup=0)
    ours_t, base_t = times["ours (one pass)"], times["layer by layer (original's way)"]
    fwd_t = times["forward of A and B only (no statistics)"]
    identical = {g: torch.equal(results["ours"][g], results["baseline"][g]) for g in results["baseline"]}
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in results["ours"].values())
    prefix, full = prefix_flops(model_a, spec, xs[0][:2])
    speedup = paired_ratio(base_t, ours_t)
    stats_t = max(median(ours_t) - median(fwd_t), 0.0)
    bound = (prefix / full * median(fwd_t) + stats_t) / median(ours_t)

    section = new_section("activation_matching", f"3. Activation matching: ResNet20x{args.width}, "
                          f"{n_batches} batches of {batch}, {args.threads} thread(s)")
    add_table(section, f"Seconds, median of {rounds} interleaved rounds",
              ["variant", "s", "speed vs layer by layer"],
              [[name, median(t), paired_ratio(base_t, t)] for name, t in times.items()])
    add_table(section, "Permutations: ours versus layer by layer", ["group", "units", "identical"],
              [[g, len(results["baseline"][g]), identical[g]] for g in results["baseline"]])
    add_table(section, "Where the time goes", ["quantity", "value"], [
        ["groups (one prefix pass each in the baseline)", len(spec.activations)],
        ["baseline prefix passes per batch and model, in full forwards (by FLOPs)", prefix / full],
        ["statistics time in ours (ours - forward only), s", stats_t],
        ["largest speed-up against this baseline if statistics were free", prefix / full],
        ["largest speed-up against this baseline at ours' statistics cost", bound],
    ])
    all_same = all(identical.values())
    add_check(section, "activation matching, layer by layer / ours (time, side by side)", speedup, ">= 8",
              speedup >= 8, unit="x", note="" if speedup >= 8 else
              f"unreachable against this baseline: it runs {prefix / full:.1f} forwards' worth of prefix passes "
              f"per batch where ours runs 1, so even free statistics would cap the ratio at {prefix / full:.1f}x; "
              f"ours spends {stats_t:.1f} s of {median(ours_t):.1f} s on statistics (float64 copies and products "
              f"of every activation), which caps it at {bound:.1f}x")
    versus_original = ORIGINAL_SECONDS / median(ours_t)
    if not args.tiny and n_batches == 20 and args.width == 1 and args.threads == 1:
        add_check(section, f"activation matching, the original's {ORIGINAL_SECONDS:.0f} s / ours (not side by side)",
                  versus_original, ">= 8", versus_original >= 8, unit="x",
                  note=f"the issue's figure for the original code (ResNet20x1, 20 x 128, one thread); ours "
                       f"{median(ours_t):.1f} s here")
    add_check(section, "activation matching, permutations identical to layer by layer", float(all_same),
              "all groups", all_same, note=f"{moved} units moved in total")
    section["notes"].append(
        "Both variants see the same in-memory batches (no augmentation, as the pipeline matches) and the same "
        "models; the baseline's statistics are a copy of ours, so the speed-up measured is the pass structure.")
    section["data"] = {"times": times, "identical": identical, "prefix_flops_ratio": prefix / full}
    emit(section, args.json)
    if not all_same:
        raise SystemExit(f"permutations differ from the layer-by-layer baseline in groups "
                         f"{[g for g, same in identical.items() if not same]}")
    return section


if __name__ == "__main__":
    main()

"""Training throughput and masked-training overhead, ResNet20, batch 128, all side by side.

Variants, each run once per round in interleaved rounds, in one process:

- ``ours dense`` / ``ours masked``: ``training.loop.train`` for one epoch on a
  device-resident CIFAR-format bundle (``data.build_data``), the model made by
  ``training.device.prepare_model``, test evaluation after the epoch;
- ``ours dense + torch.compile``: the same with ``step_fn=torch.compile(model)``
  (config ``compile: true``); its compile time is reported apart;
- ``original dense`` / ``original masked``: the original pipeline
  (``benchmarks/original.py``): per-sample PIL transforms in a DataLoader,
  NCHW model, prune hooks for the masks, test evaluation after every epoch;
- the machine: forward + backward + SGD step alone on batches already in
  memory, for the original's model (NCHW, "plain eager") and for ours; and,
  where the CPU has native bf16, ours under bf16 autocast (an option, not on).

Achieved FLOP/s use the model's FLOPs counted by ``torch.utils.flop_counter``
(forward + backward per training image, forward per test image), set against
the CPU's theoretical fp32 peak (``common.peak_gflops``) and a measured sgemm.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import (
    add_check,
    add_table,
    base_parser,
    cpuinfo,
    emit,
    interleaved,
    median,
    new_section,
    paired_ratio,
    peak_gflops,
    set_threads,
    sgemm_gflops,
)
from benchmarks.original import CifarLike, OriginalPipeline, as_original_model, test_transform, train_transform
from data import build_data
from data.cifar import load_cifar
from models import create
from pruning.magnitude import prune_global_magnitude
from pruning.masks import full_masks
from tests.fake_cifar import write_fake_cifar
from training.device import prepare_model
from training.loop import TrainSpec, train

CPU = torch.device("cpu")


def new_model(width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create("ResNet", num_classes=10, in_channels=3, width=width)


def count_flops(model: nn.Module) -> tuple[float, float]:
    """(forward+backward FLOPs per training image, forward FLOPs per test image)."""
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    was = model.training
    model.train()
    with FlopCounterMode(display=False) as train_counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as eval_counter:
        model(x)
    model.train(was)
    return train_counter.get_total_flops() / 2, eval_counter.get_total_flops() / 2


def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in model.prunable_parameters()}
    return prune_global_magnitude(weights, full_masks(weights), sparsity)


def raw_steps(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
              amp: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> Callable[[], None]:
    """Forward + backward + SGD step over in-memory batches: no data pipeline, no evaluation."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def run() -> None:
        model.train()
        for x, y in batches:
            with amp():
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def has_native_bf16() -> bool:
    flags = set(cpuinfo().get("flags", "").split())
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8, help="training batches per epoch (default 8)")
    p.add_argument("--rounds", type=int, default=4, help="timed rounds (default 4, after 1 warm-up round)")
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--sparsity", type=float, default=0.97)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variant")
    args = p.parse_args(argv)
    set_threads(args.threads)
    batch = 16 if args.tiny else 128
    n_batches = 2 if args.tiny else args.batches
    rounds = 1 if args.tiny else args.rounds
    n_train = n_batches * batch
    n_test = max(batch, n_train // 5)  # CIFAR's 50000:10000, so evaluation weighs what it weighs there

    section = new_section("training", f"1-2. Training throughput and masked overhead: ResNet20x{args.width}, "
                          f"batch {batch}")
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar(tmp, "cifar10", n_train=n_train, n_test=n_test, seed=0)
        bundle = build_data("cifar10", tmp, batch_size=batch, device=CPU)
        splits = load_cifar("cifar10", tmp)
        train_set = CifarLike(splits.train_x, splits.train_y, train_transform())
        test_set = CifarLike(splits.test_x, splits.test_y, test_transform())

        masks = magnitude_masks(new_model(args.width, 0), args.sparsity)
        ours_dense = prepare_model(new_model(args.width, 1), CPU)
        ours_masked = prepare_model(new_model(args.width, 1), CPU)
        orig_dense = OriginalPipeline(new_model(args.width, 1), train_set, test_set, batch_size=batch)
        orig_masked = OriginalPipeline(new_model(args.width, 1), train_set, test_set, batch_size=batch,
                                       masks=masks)
        in_memory = [(x.clone(), y.clone()) for x, y in bundle.train_batches(0, 0)]
        nchw_batches = [(x.contiguous(), y) for x, y in in_memory]
        cl_batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in in_memory]
        train_flops, eval_flops = count_flops(as_original_model(new_model(args.width, 0)))

        epoch_no = {"n": 0}

        def ours(model: nn.Module, use_masks=None, step_fn=None) -> Callable[[], None]:
            def run() -> None:
                epoch_no["n"] += 1
                spec = TrainSpec(epochs=1, lr=0.08, seed=epoch_no["n"])
                train(model, bundle, spec, name="bench", device=CPU, masks=use_masks, step_fn=step_fn,
                      progress=False)
            return run

        variants: dict[str, Callable[[], object]] = {
            "ours dense": ours(ours_dense),
            "ours masked": ours(ours_masked, masks),
            "original dense": orig_dense.epoch,
            "original masked": orig_masked.epoch,
            "plain eager fwd+bwd (original's model, NCHW)":
                raw_steps(as_original_model(new_model(args.width, 2)), nchw_batches),
            "our model fwd+bwd (channels_last)": raw_steps(prepare_model(new_model(args.width, 2), CPU),
                                                           cl_batches),
        }
        bf16 = has_native_bf16()
        if bf16:
            variants["our model fwd+bwd, bf16 autocast (option)"] = raw_steps(
                prepare_model(new_model(args.width, 2), CPU), cl_batches,
                lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        compile_seconds = None
        if args.compile:
            # A fresh inductor cache, so the compile time is what a first run pays.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
            compiled_model = prepare_model(new_model(args.width, 1), CPU)
            compiled = ours(compiled_model, step_fn=torch.compile(compiled_model))
            began = time.perf_counter()
            compiled()  # the first epoch compiles
            first_epoch = time.perf_counter() - began
            variants["ours dense + torch.compile"] = compiled
        times = interleaved(variants, rounds=rounds, warmup=0 if args.tiny else 1)
        if args.compile:
            compile_seconds = max(0.0, first_epoch - median(times["ours dense + torch.compile"]))

    threads = args.threads
    info = cpuinfo()
    peak = peak_gflops(threads, info)
    sgemm_size = 512 if args.tiny else 2048
    sgemm = sgemm_gflops(threads, size=sgemm_size)
    epoch_flops = n_train * train_flops + n_test * eval_flops
    step_flops = n_train * train_flops
    orig = times["original dense"]
    rows = []
    for name, t in times.items():
        is_epoch = not name.startswith(("plain", "our model"))
        flops = epoch_flops if is_epoch else step_flops
        gflops = flops / median(t) / 1e9
        rows.append([name, "epoch + test eval" if is_epoch else "steps only", median(t), n_train / median(t),
                     paired_ratio(orig, t), gflops, gflops / peak if peak else float("nan"), gflops / sgemm])
    add_table(section, f"Throughput ({n_batches} batches of {batch} = {n_train} training images, "
              f"{n_test} test images per epoch; median of {rounds} interleaved rounds; {threads} thread(s))",
              ["variant", "what", "s", "train images/s", "speed vs original dense", "GFLOP/s",
               "of fp32 peak", "of sgemm"], rows)

    speedup = paired_ratio(orig, times["ours dense"])
    speedup_masked = paired_ratio(times["original masked"], times["ours masked"])
    overhead = paired_ratio(times["ours masked"], times["ours dense"])
    orig_overhead = paired_ratio(times["original masked"], times["original dense"])
    plain = times["plain eager fwd+bwd (original's model, NCHW)"]
    ours_raw = times["our model fwd+bwd (channels_last)"]
    add_table(section, "Masked training overhead (masked epoch time / dense epoch time, same model)",
              ["pipeline", "masked / dense", "target"],
              [["ours (MaskEnforcer: grads and weights multiplied by the mask, 2 fused ops per step)", overhead,
                "<= 1.05"],
               ["original (torch.nn.utils.prune forward pre-hooks)", orig_overhead, "—"]])
    add_table(section, "Ratios", ["ratio", "value"], [
        ["ours dense / original dense (speed)", speedup],
        ["ours masked / original masked (speed)", speedup_masked],
        ["original dense epoch / plain eager fwd+bwd (speed, per training image)",
         paired_ratio(plain, orig)],
        ["ours dense epoch / our model fwd+bwd (speed, per training image)", paired_ratio(ours_raw,
                                                                                         times["ours dense"])],
        ["our model fwd+bwd / plain eager fwd+bwd (speed)", paired_ratio(plain, ours_raw)],
    ] + ([["our model fwd+bwd bf16 autocast / fp32 (speed)",
           paired_ratio(ours_raw, times["our model fwd+bwd, bf16 autocast (option)"])]] if bf16 else [])
      + ([["ours + torch.compile / ours eager (speed, per epoch)",
           paired_ratio(times["ours dense"], times["ours dense + torch.compile"])]] if args.compile else []))
    add_check(section, "training speed, ours / original (dense)", speedup, ">= 1.25", speedup >= 1.25, unit="x")
    add_check(section, "training speed, ours / original (masked)", speedup_masked, ">= 1.25",
              speedup_masked >= 1.25, unit="x")
    add_check(section, "masked / dense epoch time (ours)", overhead, "<= 1.05", overhead <= 1.05, unit="x")
    frac = step_flops / median(ours_raw) / 1e9 / peak if peak else float("nan")
    add_check(section, "our fwd+bwd, fraction of fp32 peak", frac, "", None,
              note=f"{step_flops / median(ours_raw) / 1e9:.1f} of {peak:.1f} GFLOP/s theoretical; "
                   f"sgemm reaches {sgemm:.1f}")
    if args.compile and compile_seconds is not None:
        gain = median(times["ours dense"]) - median(times["ours dense + torch.compile"])
        per_full_epoch = gain * 50000 / n_train
        pays_after = compile_seconds / per_full_epoch if per_full_epoch > 0 else float("inf")
        add_check(section, "torch.compile on CPU: compile time", compile_seconds, "", None, unit="s",
                  note=f"saves {per_full_epoch:.1f} s per 50k-image epoch: pays back after {pays_after:.1f} "
                       "epochs (cold inductor cache)")
    section["notes"] += [
        f"Model FLOPs (torch.utils.flop_counter): {train_flops / 1e6:.1f} MFLOP per training image "
        f"(forward + backward), {eval_flops / 1e6:.1f} MFLOP per test image.",
        f"fp32 peak for {threads} core(s): {peak:.1f} GFLOP/s = cores x {info.get('cpu MHz', '?')} MHz "
        "(the clock /proc/cpuinfo reports; a turbo clock would lower every fraction) x FLOP/cycle (see the "
        f"machine description). Measured sgemm ({sgemm_size}^3, MKL): {sgemm:.1f} GFLOP/s.",
        "The original pipeline runs its DataLoader with num_workers=0: on 2 shared cores worker processes "
        "would compete with the compute thread, and in-line loading is what it costs (about 1% here).",
        f"Masks: global magnitude pruning to {100 * args.sparsity:.0f}% of the prunable weights; the dense "
        "compute is the same at any sparsity.",
    ]
    section["data"] = {"times": times, "n_train": n_train, "n_test": n_test, "train_flops": train_flops,
                       "eval_flops": eval_flops, "peak_gflops": peak, "sgemm_gflops": sgemm,
                       "compile_seconds": compile_seconds}
    return emit(section, args.json)


if __name__ == "__main__":
    main()

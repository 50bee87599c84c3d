"""GPU benchmark: ResNet20 epoch time at widths 1 and 16 on CIFAR-shaped data, and a tiny end-to-end run.

Run by ``benchmarks/gpu.sh`` on a CUDA machine (``--device cuda``): fake CIFAR-10
with 50000/10000 images (``tests.fake_cifar.write_fake_cifar``, the real file
format), our training loop on the device-resident bundle (bf16 autocast,
channels_last, batched augmentation), eager and with ``torch.compile``; then
both phases of a tiny config (``device: cuda``) through ``experiment.py``.
``--device cpu --tiny`` runs the same code in seconds on a CPU (the test's
smoke run). Items that would start after ``--budget-s`` are skipped, so the
whole run stays inside its time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_demo import run_experiment, tiny_config, write_config
from benchmarks.common import md_table
from data import build_data
from models import create
from tests.fake_cifar import write_fake_cifar
from training.device import prepare_model, resolve_device
from training.loop import TrainSpec, train


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(width: int, bundle, device: torch.device, epochs: int, compile_model: bool) -> dict:
    """Seconds of the first epoch (warm-up: cuDNN autotuning, compilation) and of each timed epoch after it."""
    torch.manual_seed(0)
    model = prepare_model(create("ResNet", num_classes=10, in_channels=3, width=width), device)
    step_fn = torch.compile(model) if compile_model else None
    seconds = []
    for e in range(epochs + 1):
        sync(device)
        began = time.perf_counter()
        train(model, bundle, TrainSpec(epochs=1, lr=0.08, seed=e), name=f"w{width}", device=device,
              step_fn=step_fn, progress=False)
        sync(device)
        seconds.append(time.perf_counter() - began)
    timed = sorted(seconds[1:])
    epoch = timed[len(timed) // 2]
    return {"first_epoch_s": seconds[0], "epoch_s": epoch, "train_images_per_s": bundle.num_train / epoch,
            "epochs_timed": epochs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="small data and width 1 only (CPU smoke test)")
    p.add_argument("--widths", type=int, nargs="+", default=[1, 16])
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per variant, after one warm-up epoch")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="also time torch.compile (default: on, except with --tiny)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--budget-s", type=float, default=400.0, help="start no item after this many seconds")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on CPU, torch's default with a GPU)")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    threads = args.threads or (1 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    do_compile = (not args.tiny) if args.compile is None else args.compile
    widths = [1] if args.tiny else args.widths
    n_train, n_test, batch = (128, 32, 32) if args.tiny else (50000, 10000, 128)
    epochs = 1 if args.tiny else args.epochs
    began = time.perf_counter()
    rows, skipped, results = [], [], {}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu_bench: device {device} ({name}), torch {torch.__version__}, {threads} CPU thread(s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        write_fake_cifar(tmp_path / "data", "cifar10", n_train=n_train, n_test=n_test, seed=0)
        print(f"wrote fake CIFAR-10 ({n_train}/{n_test}) in {time.perf_counter() - began:.0f} s", flush=True)
        bundle = build_data("cifar10", tmp_path / "data", batch_size=batch, device=device)
        for width in widths:
            for compiled in ([False, True] if do_compile else [False]):
                label = f"ResNet20x{width} {'torch.compile' if compiled else 'eager'}"
                if time.perf_counter() - began > args.budget_s:
                    skipped.append(label)
                    continue
                r = time_epochs(width, bundle, device, epochs, compiled)
                results[label] = r
                rows.append([label, r["first_epoch_s"], r["epoch_s"], r["train_images_per_s"]])
                print(f"{label}: first epoch {r['first_epoch_s']:.1f} s, epoch {r['epoch_s']:.2f} s, "
                      f"{r['train_images_per_s']:.0f} images/s", flush=True)
        e2e = None
        if time.perf_counter() - began <= args.budget_s:
            cfg = tiny_config(tmp_path / "data", args.device, tmp_path / "runs", model="ResNet",
                              n_train=n_train if args.tiny else 2048, batch_size=batch)
            config = write_config(tmp_path / "tiny.yaml", cfg)
            e2e, _ = run_experiment(["-config", str(config), "--no-progress"], threads=threads)
            results["end_to_end_s"] = e2e
        else:
            skipped.append("tiny end-to-end run")
    print(f"\n## GPU benchmark: {name}, {n_train}/{n_test} images, batch {batch}\n")
    print(md_table(["variant", "first epoch s (warm-up/compile)", "epoch s (train + test eval)",
                    "train images/s"], rows))
    if e2e is not None:
        print(f"\nTiny end-to-end run of both phases (ResNet20x1, device {args.device}): {e2e:.1f} s")
    if skipped:
        print(f"\nSkipped (over the {args.budget_s:.0f} s budget): {', '.join(skipped)}")
    print(f"\nTotal {time.perf_counter() - began:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "results": results, "skipped": skipped}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

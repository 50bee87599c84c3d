"""REPAIR and the interpolation barrier on trained pairs (issue 12; numbers in benchmarks/RESULTS.md §8).

    python -m benchmarks.repair_barrier                       # MLP 784-512-512-512-10 on Fashion-MNIST, CPU
    python -m benchmarks.repair_barrier --model VGG11 --epochs 10 --device cuda
    python -m benchmarks.repair_barrier --model ResNet --epochs 10 --device cuda

Trains pairs (A, B) from different seeds, matches A to B by activation matching,
and measures the 0-1 test-error barrier and the test-loss barrier along the
straight path, before and after matching, without and with REPAIR (BatchNorm
statistics reset at every alpha in both cases). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from data import build_data
from matching import activation_matching, error_barrier, interpolation_curve, loss_barrier, permute
from models import create
from training.evaluate import evaluate
from training.loop import TrainSpec, train

FMNIST = "/usr/share/datasets/fashion-mnist"


def measure(model_type: str, hidden: list[int], epochs: int, subset: int | None, pairs: int, device: torch.device,
            root: str, batches: int) -> list[dict[str, float]]:
    data = build_data("fashion-mnist", root, batch_size=128, device=device, train_subset=subset)
    out = []
    for p in range(pairs):
        models = []
        for seed in (2 * p + 1, 2 * p + 2):
            torch.manual_seed(seed)
            m = create(model_type, num_classes=10, in_channels=1, image_size=28, mlp_hidden=hidden).to(device)
            train(m, data, TrainSpec(epochs=epochs, lr=0.05, seed=seed), name=f"{model_type}-{seed}", device=device,
                  progress=False)
            models.append(m)
        a, b = models
        sd_a, sd_b = a.state_dict(), b.state_dict()
        sd_ap = permute(a.permutation_spec(), sd_a, activation_matching(a, b, data.eval_train_batches(50)))
        alphas = [i / 10 for i in range(11)]
        row: dict[str, float] = {}
        for side, sd in (("unmatched", sd_a), ("matched", sd_ap)):
            for repair in (False, True):
                began = time.perf_counter()
                c = interpolation_curve(b, sd, sd_b, alphas, lambda: data.eval_train_batches(batches),
                                        data.test_batches, repair=repair, evaluate=evaluate)
                tag = f"{side}{'+repair' if repair else ''}"
                row[f"{tag} error"] = error_barrier(c)
                row[f"{tag} loss"] = loss_barrier(c)
                row[f"{tag} mid"] = c[5]["test_accuracy"]
                row[f"{tag} s"] = time.perf_counter() - began
        row["A"], row["B"] = (c[0]["test_accuracy"], c[-1]["test_accuracy"])
        out.append(row)
        print(f"pair {p}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr, flush=True)
    return out


def table(rows: list[dict[str, float]]) -> str:
    def cell(key: str, digits: int) -> str:
        vals = [r[key] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.fmean(vals):.{digits}f} ± {sd:.{digits}f}"

    lines = ["| path | REPAIR | test error barrier (points) | test loss barrier | midpoint accuracy (%) |",
             "|---|---|---|---|---|"]
    for side in ("unmatched", "matched"):
        for repair in (False, True):
            tag = f"{side}{'+repair' if repair else ''}"
            lines.append(f"| {side} | {'yes' if repair else 'no'} | {cell(tag + ' error', 2)} | "
                         f"{cell(tag + ' loss', 3)} | {cell(tag + ' mid', 2)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="MLP", help="MLP, VGG11 or ResNet (ResNet20)")
    p.add_argument("--hidden", default="512,512,512", help="MLP hidden widths")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--batches", type=int, default=20, help="training batches for BN reset and REPAIR statistics")
    p.add_argument("--device", default="cpu")
    p.add_argument("--root", default=FMNIST)
    args = p.parse_args(argv)
    torch.set_num_threads(1) if args.device == "cpu" else None
    began = time.perf_counter()
    rows = measure(args.model, [int(h) for h in args.hidden.split(",")], args.epochs, args.subset, args.pairs,
                   torch.device(args.device), args.root, args.batches)
    print(f"{args.model}, {args.epochs} epochs, {args.pairs} pairs, {time.perf_counter() - began:.0f} s; dense A "
          f"{statistics.fmean(r['A'] for r in rows):.2f}%, B {statistics.fmean(r['B'] for r in rows):.2f}%")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The paper's tables from finished runs: mean ± std over seeds, per config, rewind point and run.

    python -m analysis.table runs/                         # every config under runs/, markdown
    python -m analysis.table runs/ --csv out.csv           # also one CSV row per (config, seed, k, run)
    python -m analysis.table runs/ --summary-csv sum.csv   # also one CSV row per (config, k, run): mean, std
    python -m analysis.table runs/ --provenance            # also which commit, packages, device made each seed
    python -m analysis.table runs/ --study ensemble        # a study's table (analysis/studies.py), over seeds

Reads ``<save_path>/<config>-<hash>/seed_<N>/results.json`` as the runner writes
them and groups seeds by the config hash they record, so two different configs
with the same name are never averaged together as "seeds" (the table says when
one name holds several configs). Configs with no finished sparse run are
listed with their phase-1 numbers only (and have no row in the long CSV).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.provenance import differing, provenance_table
from analysis.runs import SeedRun, find_runs, mean_std
from analysis.studies import print_study
from models.registry import config_width, display_name
from utils.errors import run_command

RUN_ORDER = ("lth", "naive", "permuted", "random")
RUN_ORDER += tuple(r + "+rescale" for r in RUN_ORDER)  # rescaled initialization (sparse.rescale_init)
BARRIERS = ("test_loss_barrier_before", "test_loss_barrier_after",
            "train_loss_barrier_before", "train_loss_barrier_after")
LONG_COLUMNS = ("config", "config_hash", "seed", "rewind_convention", "k", "run", "accuracy", "loss",
                "weight_sparsity", *BARRIERS)


@dataclass(frozen=True)
class Setting:
    """What a config computes, in the paper's terms: the model, its width, the data and the target sparsity."""

    model: str | None  # "ResNet20", "VGG11", "ResNet50", "MLP"; None without config.yaml
    dataset: str | None  # as the config spells it: "cifar10", "fashion-mnist", ...
    width: int | None  # what the model's registry row calls its width (width_multiplier, an MLP's first hidden)
    sparsity: float | None  # the target fraction of pruned weights (IMP's reached sparsity without config.yaml)


def setting_of(run: SeedRun) -> Setting:
    """The setting of one seed's config; fields stay None where config.yaml does not say."""
    cfg = run.config
    sparsity = (cfg.get("pruning") or {}).get("sparsity") or run.results.get("imp", {}).get("sparsity")
    if not cfg:
        return Setting(None, None, None, sparsity)
    model_type = cfg.get("model_type", "ResNet")
    return Setting(display_name(model_type), cfg.get("dataset"), config_width(model_type, cfg), sparsity)


def find_results(save_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Display label -> the results.json of each seed of one config (one config hash)."""
    return {label: [run.results for run in runs] for label, runs in find_runs(save_path).items()}


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def summarize(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rewind point and run, the test accuracies over seeds (and perm - naive per seed)."""
    by_k: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for res in seeds:
        for k, runs in res.get("sparse", {}).items():
            for run, entry in runs.items():
                by_k[int(k)][run].append(entry["accuracy"])
            if "permuted" in runs and "naive" in runs:
                by_k[int(k)]["perm - naive"].append(runs["permuted"]["accuracy"] - runs["naive"]["accuracy"])
    dense = defaultdict(list)
    for res in seeds:
        for who, entry in res.get("dense", {}).items():
            dense[who].append(entry["accuracy"])
        if "imp" in res:
            dense["IMP"].append(res["imp"]["accuracy"])
        if "matching" in res:
            dense["midpoint before"].append(res["matching"]["midpoint_accuracy_before"])
            dense["midpoint after"].append(res["matching"]["midpoint_accuracy_after"])
    return {"seeds": len(seeds), "sparse": {k: dict(v) for k, v in sorted(by_k.items())}, "phase1": dict(dense)}


def markdown(label: str, summary: dict[str, Any]) -> str:
    lines = [f"### {label} ({summary['seeds']} seed{'s' if summary['seeds'] != 1 else ''})", ""]
    p1 = summary["phase1"]
    if p1:
        lines += ["| " + " | ".join(p1) + " |", "|" + "---|" * len(p1),
                  "| " + " | ".join(fmt(v) for v in p1.values()) + " |", ""]
    if summary["sparse"]:
        runs = [r for r in (*RUN_ORDER, "perm - naive") if any(r in v for v in summary["sparse"].values())]
        lines += ["| k | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
        for k, v in summary["sparse"].items():
            lines.append(f"| {k} | " + " | ".join(fmt(v.get(r, [])) for r in runs) + " |")
        lines.append("")
    return "\n".join(lines)


def csv_rows(label: str, summary: dict[str, Any]) -> list[list[Any]]:
    """The summary CSV: one row per (k, run) with mean and std over seeds."""
    rows = []
    for k, v in summary["sparse"].items():
        for run, values in v.items():
            m, s = mean_std(values)
            rows.append([label, k, run, len(values), round(m, 4), round(s, 4)])
    return rows


def long_rows(label: str, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The long CSV: one row per (seed, k, run), numbers as recorded (not rounded), phase-1 barriers repeated.

    Repeating the seed's barriers on each of its rows lets a plotting tool relate a run's accuracy to how well
    A and B were matched without a join.
    """
    rows = []
    for res in sorted(seeds, key=lambda r: r.get("seed", -1)):
        matching = res.get("matching", {})
        common = {"config": label, "config_hash": res.get("config_hash", ""), "seed": res.get("seed", ""),
                  "rewind_convention": res.get("rewind_convention", "epochs"),
                  **{b: matching.get(b, "") for b in BARRIERS}}
        for k in sorted(res.get("sparse", {}), key=int):
            runs = res["sparse"][k]
            for run in sorted(runs, key=lambda r: (RUN_ORDER.index(r) if r in RUN_ORDER else len(RUN_ORDER), r)):
                entry = runs[run]
                rows.append({**common, "k": int(k), "run": run, "accuracy": entry["accuracy"],
                             "loss": entry.get("loss", ""), "weight_sparsity": entry.get("weight_sparsity", "")})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.table", description=__doc__.splitlines()[0])
    p.add_argument("save_path", type=Path, nargs="?", default=Path("runs"),
                   help="the save_path of the runs (holds <config>/seed_<N>/; default: runs)")
    p.add_argument("--csv", type=Path,
                   help="also write one row per (config, seed, k, run) here: accuracy, loss and the loss barriers")
    p.add_argument("--summary-csv", type=Path, help="also write one row per (config, k, run): mean and std over seeds")
    p.add_argument("--provenance", action="store_true",
                   help="also show, per config, the commit, package versions and device of each seed (without it, "
                   "a note names the fields that differ)")
    p.add_argument("--study", metavar="NAME",
                   help="instead, a study's table (run_dir/studies/NAME.json) per config: mean ± std over seeds "
                   "(with --summary-csv, its rows go there)")
    args = p.parse_args(argv)
    if args.study:
        return print_study(args.save_path, args.study, args.summary_csv)
    found = find_results(args.save_path)
    if not found:
        print(f"error: no <config>/seed_<N>/results.json under {args.save_path}", file=sys.stderr)
        return 2
    rows, long = [], []
    for label, seeds in found.items():
        summary = summarize(seeds)
        print(markdown(label, summary))
        if args.provenance:
            print(provenance_table(label, seeds))
        elif differs := differing(seeds):
            print(f"note: the seeds of {label!r} were made with different {', '.join(differs)} "
                  "(--provenance shows them)", file=sys.stderr)
        rows += csv_rows(label, summary)
        long += long_rows(label, seeds)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LONG_COLUMNS)
            writer.writeheader()
            writer.writerows(long)
    if args.summary_csv:
        with open(args.summary_csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["config", "k", "run", "seeds", "mean_accuracy", "std_accuracy"])
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "nothing was written"))

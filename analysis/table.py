"""The paper's tables from finished runs: mean ± std over seeds, per config, rewind point and run.

    python -m analysis.table runs/                 # every config under runs/, markdown
    python -m analysis.table runs/ --csv out.csv   # also one CSV row per (config, k, run)

Reads ``<save_path>/<config>-<hash>/seed_<N>/results.json`` as the runner writes
them and groups seeds by the config hash they record, so two different configs
with the same name are never averaged together as "seeds" (the table says when
one name holds several configs). Configs with no finished sparse run are
listed with their phase-1 numbers only.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

RUN_ORDER = ("lth", "naive", "permuted", "random")


def find_results(save_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Display label -> the results.json of each seed of one config (one config hash)."""
    by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for path in sorted(save_path.glob("*/seed_*/results.json")):
        try:
            res = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            print(f"skipping unreadable {path}", file=sys.stderr)
            continue
        # Results written before run directories carried the hash: the folder name stands in for it.
        h = res.get("config_hash") or path.parent.parent.name
        by_hash[h].append(res)
        labels.setdefault(h, res.get("config") or path.parent.parent.name)
    names: dict[str, list[str]] = defaultdict(list)
    for h, label in labels.items():
        names[label].append(h)
    found = {}
    for label, hashes in sorted(names.items()):
        if len(hashes) > 1:
            print(f"note: {label!r} names {len(hashes)} different configs (config hashes {', '.join(hashes)}); "
                  "they are shown apart", file=sys.stderr)
        for h in hashes:
            found[f"{label} [{h}]" if len(hashes) > 1 else label] = by_hash[h]
    return found


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


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
    rows = []
    for k, v in summary["sparse"].items():
        for run, values in v.items():
            m, s = mean_std(values)
            rows.append([label, k, run, len(values), round(m, 4), round(s, 4)])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.table", description=__doc__.splitlines()[0])
    p.add_argument("save_path", type=Path, help="the save_path of the runs (holds <config>/seed_<N>/)")
    p.add_argument("--csv", type=Path, help="also write one row per (config, k, run) here")
    args = p.parse_args(argv)
    found = find_results(args.save_path)
    if not found:
        print(f"error: no <config>/seed_<N>/results.json under {args.save_path}", file=sys.stderr)
        return 2
    rows = []
    for label, seeds in found.items():
        summary = summarize(seeds)
        print(markdown(label, summary))
        rows += csv_rows(label, summary)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["config", "k", "run", "seeds", "mean_accuracy", "std_accuracy"])
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The finished runs under a save_path: each config's seeds (grouped by config hash), their results and config.

Shared by ``analysis.table`` (the paper's tables) and ``analysis.studies`` (a study's table), so neither imports
the other for it.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analysis.results_file import read_results


@dataclass
class SeedRun:
    """One seed of one config: its results.json and the config.yaml the runner wrote beside it."""

    path: Path  # the seed's run directory
    results: dict[str, Any]
    config: dict[str, Any]  # the resolved config as written; {} when config.yaml is missing or unreadable


def _read_config(run_dir: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def find_runs(save_path: Path) -> dict[str, list[SeedRun]]:
    """Display label -> every seed of one config (one config hash), with its config.yaml."""
    by_hash: dict[str, list[SeedRun]] = defaultdict(list)
    labels: dict[str, str] = {}
    # A damaged file stops the table: skipping it would silently drop a seed.
    found_results = [(path, read_results(path)) for path in sorted(save_path.glob("*/seed_*/results.json"))]
    renamed = _renamed_hashes([res for _, res in found_results])
    for path, res in found_results:
        # Results written before run directories carried the hash: the folder name stands in for it.
        h = res.get("config_hash") or path.parent.parent.name
        h = renamed.get(h, h)
        if res.get("config_hash"):
            res["config_hash"] = h  # one config, one hash in every table row
        by_hash[h].append(SeedRun(path.parent, res, _read_config(path.parent)))
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


def _renamed_hashes(results: list[dict[str, Any]]) -> dict[str, str]:
    """Old config hash -> new one, from results.json files that record both (``legacy_config_hash``).

    Run directories were renamed when their hash came to be derived from artifact keys; a seed whose
    results.json was written before that still holds the old hash, and belongs with the seeds holding the new.
    """
    return {res["legacy_config_hash"]: res["config_hash"] for res in results
            if isinstance(res.get("legacy_config_hash"), str) and isinstance(res.get("config_hash"), str)}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

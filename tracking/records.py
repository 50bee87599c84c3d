"""What every tracking backend logs: a run's description and its numbers as scalars and tables.

Shared by ``tracking/tracker.py`` and the backends, so that neither imports the other's module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROJECT = "sparse-rebasin"


@dataclass
class RunInfo:
    """What a backend needs to name, group and describe the runs of one (config, seed)."""

    run_dir: Path
    group: str
    seed: int
    project: str = DEFAULT_PROJECT
    entity: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record, without its name and step (what a backend plots)."""
    return {k: float(v) for k, v in record.items()
            if k not in ("run", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def results_tables(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``results.json`` as the tables a dashboard shows: phase 1, phase 2 and the interpolation curves."""
    phase1 = [{"model": who, "accuracy": entry["accuracy"], "loss": entry.get("loss")}
              for who, entry in results.get("dense", {}).items()]
    if "imp" in results:
        imp = results["imp"]
        phase1.append({"model": f"IMP A ({100 * imp['sparsity']:.2f}% sparse)", "accuracy": imp["accuracy"],
                       "loss": imp.get("loss")})
    phase2 = [{"k": int(k), "run": run, "accuracy": e["accuracy"], "loss": e.get("loss"),
               "weight_sparsity": e.get("weight_sparsity")}
              for k, runs in sorted(results.get("sparse", {}).items(), key=lambda kv: int(kv[0]))
              for run, e in runs.items()]
    curves = [{"matching": side.removeprefix("curve_"), **point}
              for side in ("curve_before", "curve_after") for point in results.get("matching", {}).get(side, [])]
    return {name: rows for name, rows in (("phase1", phase1), ("phase2", phase2), ("interpolation", curves)) if rows}


def flat_numbers(results: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number of ``results.json`` (curves left out) under a dotted key: ``sparse.1.permuted.accuracy``."""
    out: dict[str, float] = {}
    for key, value in results.items():
        if key in ("curve_before", "curve_after", "provenance", "artifacts"):
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_numbers(value, dotted + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[dotted] = value
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)

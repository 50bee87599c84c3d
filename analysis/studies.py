"""A study's table across seeds: ``python -m analysis.table SAVE_PATH --study NAME``.

Reads ``<save_path>/<config>-<hash>/seed_<N>/studies/<name>.json`` (written by
``phases.studies.write_report``: ``rows`` and the ``key`` columns naming them),
groups seeds by config as ``analysis.table`` does, and gives, per config and
row key, the mean ± std over seeds of every numeric column.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from analysis.runs import find_runs, mean_std


def study_reports(save_path: Path, name: str) -> dict[str, list[dict[str, Any]]]:
    """Config label -> the ``name`` report of each of its seeds that has one."""
    out = {}
    for label, runs in find_runs(save_path).items():
        reports = []
        for run in runs:
            path = run.path / "studies" / f"{name}.json"
            try:
                reports.append(json.loads(path.read_text()))
            except FileNotFoundError:
                continue
            except (json.JSONDecodeError, UnicodeDecodeError):
                print(f"skipping unreadable {path}", file=sys.stderr)
        if reports:
            out[label] = reports
    return out


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregate(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key (first-seen order): the key columns, ``seeds``, and ``<col>_mean``/``<col>_std`` per number."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for report in reports:
        key = report.get("key", [])
        for row in report["rows"]:
            groups.setdefault(tuple((k, row.get(k)) for k in key), []).append(row)
    out = []
    for key, rows in groups.items():
        entry: dict[str, Any] = {**dict(key), "seeds": len(rows)}
        columns = [c for c in dict.fromkeys(c for r in rows for c in r) if c not in entry]
        for col in columns:
            values = [r[col] for r in rows if _numeric(r.get(col))]
            if values:
                entry[f"{col}_mean"], entry[f"{col}_std"] = mean_std(values)
        out.append(entry)
    return out


def markdown(label: str, name: str, rows: list[dict[str, Any]]) -> str:
    """A markdown table: the key columns, seeds, then mean ± std of each numeric column."""
    if not rows:
        return f"### {label}: study {name}\n\n(no rows)\n"
    numbers = list(dict.fromkeys(c[: -len("_mean")] for r in rows for c in r if c.endswith("_mean")))
    keys = [c for c in rows[0] if c != "seeds" and not c.endswith(("_mean", "_std"))]
    head = [*keys, "seeds", *numbers]
    lines = [f"### {label}: study {name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k, "")) for k in keys] + [str(r["seeds"])]
        for col in numbers:
            m, s = r.get(f"{col}_mean"), r.get(f"{col}_std")
            cells.append(_cell(m, s, r["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(mean: float | None, std: float | None, seeds: int) -> str:
    """``mean ± std`` to 3 decimals; a count the same in every seed (members, rounds) as the integer it is."""
    if mean is None:
        return "–"
    if float(mean).is_integer() and not std:
        return str(int(mean))
    return f"{mean:.3f} ± {std:.3f}" if seeds > 1 else f"{mean:.3f}"


def print_study(save_path: Path, name: str, summary_csv: Path | None = None) -> int:
    """Print study ``name``'s table per config (and write the aggregated rows to ``summary_csv``); exit status."""
    import csv

    found = study_reports(save_path, name)
    if not found:
        print(f"error: no <config>/seed_<N>/studies/{name}.json under {save_path} (run the study with "
              f"`python experiment.py -config FILE -seed N --study {name}`)", file=sys.stderr)
        return 2
    all_rows = []
    for label, reports in found.items():
        rows = aggregate(reports)
        print(markdown(label, name, rows))
        all_rows += [{"config": label, **r} for r in rows]
    if summary_csv:
        columns = list(dict.fromkeys(c for r in all_rows for c in r))
        with open(summary_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(all_rows)
    return 0

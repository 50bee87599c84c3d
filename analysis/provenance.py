"""Which code, packages and devices made each seed of a config, and where the seeds differ.

Reads the ``provenance`` that ``results.json`` records: the writer's, and
each artifact's (from its manifest). A seed whose artifacts came from several
commits or devices shows every value, joined by ``, ``. Results written before
provenance was recorded show ``unrecorded``.
"""

from __future__ import annotations

from typing import Any

from utils.provenance import COMPARED

UNRECORDED = "unrecorded"


def _show(field: str, value: Any) -> str:
    if value is None:
        return "none"
    if field == "commit":
        return str(value)[:12]
    return str(value)


def seed_values(results: dict[str, Any]) -> dict[str, str]:
    """Field -> what made this seed: the writer's and every artifact's values, distinct and sorted."""
    prov = results.get("provenance")
    if not isinstance(prov, dict):
        return {f: UNRECORDED for f in COMPARED}
    records = [prov, *(prov.get("artifacts") or {}).values()]
    return {f: ", ".join(sorted({_show(f, r.get(f)) for r in records if f in r})) or UNRECORDED for f in COMPARED}


def differing(seeds: list[dict[str, Any]]) -> list[str]:
    """The fields not the same for every seed, or mixed within one (unrecorded seeds are not compared)."""
    values = [seed_values(res) for res in seeds]
    out = []
    for f in COMPARED:
        seen = {v[f] for v in values if v[f] != UNRECORDED}
        if len(seen) > 1 or any(", " in v for v in seen):  # or one seed made by several
            out.append(f)
    return out


def provenance_table(label: str, seeds: list[dict[str, Any]]) -> str:
    """A markdown table: one row per field, one column per seed; differing fields marked with ``*``."""
    ordered = sorted(seeds, key=lambda r: r.get("seed", -1))
    values = [seed_values(res) for res in ordered]
    diff = set(differing(ordered))
    lines = [f"#### provenance of {label}", "",
             "| field | " + " | ".join(f"seed {r.get('seed', '?')}" for r in ordered) + " |",
             "|---|" + "---|" * len(ordered)]
    for f in COMPARED:
        lines.append(f"| {f}{' *' if f in diff else ''} | " + " | ".join(v[f] for v in values) + " |")
    lines.append("")
    lines.append("`*` differs across seeds" if diff else "the same for every seed")
    return "\n".join(lines) + "\n"

"""Reading one seed's ``results.json`` for the analysis commands, its shape checked before any table uses it.

The runner writes the file atomically from the artifacts (``phases/results.py``), so a file that does not
have that shape was damaged or edited by hand: the analysis stops with one line naming the file and what is
wrong, instead of a traceback deep in a table, or a table silently short of a seed. Rerunning the seed's
command rebuilds the file from its finished artifacts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from utils.errors import UserError

RUNNER_KEYS = {"config", "config_hash", "seed", "dense", "imp", "matching", "sparse"}


class DamagedResults(UserError):
    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}; delete it and rerun that seed's experiment.py command to rebuild it "
                         "from the finished artifacts")


def _number(value: Any, finite: bool = True) -> bool:
    """An int or float (not a bool); finite unless ``finite`` is False (a diverged loss is written as NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (not finite or math.isfinite(value))


def _problem(res: Any) -> str | None:
    """What makes ``res`` not a results.json the runner could have written, or None."""
    if not isinstance(res, dict):
        return f"expected a JSON object, got {type(res).__name__}"
    if not RUNNER_KEYS & res.keys():  # the runner always writes config, config_hash and seed
        return f"holds no results (none of {', '.join(sorted(RUNNER_KEYS))})"
    for key in ("config_hash", "config", "rewind_convention"):
        if res.get(key) is not None and not isinstance(res[key], str):
            return f"'{key}' is {type(res[key]).__name__}, not a string"
    dense = res.get("dense", {})
    if not isinstance(dense, dict):
        return f"'dense' is {type(dense).__name__}, not a mapping"
    for role, entry in dense.items():
        if not isinstance(entry, dict) or not _number(entry.get("accuracy")):
            return f"dense.{role} has no finite accuracy"
    if res.get("imp") is not None:
        imp = res["imp"]
        if not isinstance(imp, dict) or not all(_number(imp.get(k)) for k in ("accuracy", "sparsity")):
            return "'imp' has no finite accuracy and sparsity"
    if res.get("matching") is not None and not isinstance(res["matching"], dict):
        return f"'matching' is {type(res['matching']).__name__}, not a mapping"
    for side in ("curve_before", "curve_after"):
        curve = (res.get("matching") or {}).get(side)
        if curve is not None and not (isinstance(curve, list) and all(
                isinstance(p, dict) and all(_number(v, finite=False) for v in p.values()) for p in curve)):
            return f"matching.{side} is not a list of points of numbers"
    return _sparse_problem(res.get("sparse"))


def _sparse_problem(sparse: Any) -> str | None:
    if sparse is None:
        return None
    if not isinstance(sparse, dict):
        return f"'sparse' is {type(sparse).__name__}, not a mapping of rewind points"
    for k, runs in sparse.items():
        if not k.lstrip("-").isdigit():
            return f"sparse: {k[:40]!r} is not a rewind point"
        if not isinstance(runs, dict):
            return f"sparse.{k} is {type(runs).__name__}, not a mapping of runs"
        for run, entry in runs.items():
            if not isinstance(entry, dict) or not _number(entry.get("accuracy")):
                return f"sparse.{k}.{run[:40]} has no finite accuracy"
    return None


def read_results(path: Path) -> dict[str, Any]:
    """The parsed ``results.json`` at ``path``; DamagedResults (one line) when it is unreadable or misshapen."""
    try:
        res = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedResults(path, "not a text file") from None
    except json.JSONDecodeError as err:
        raise DamagedResults(path, f"not valid JSON ({err.msg} at line {err.lineno})") from None
    problem = _problem(res)
    if problem is not None:
        raise DamagedResults(path, problem)
    return res

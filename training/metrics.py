"""``metrics.jsonl``: one JSON object per evaluated epoch of every training run."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utils import distributed
from utils.atomic import atomic_write_text


class MetricsLog:
    """Appends lines; on resume, drops lines of a run past the epoch it restarts from.

    ``mirror`` is called with every record written (experiment tracking, see
    ``tracking/``): every training logs through here, so one hook covers them
    all. It runs after the line is on disk, and an error in it is a warning.
    """

    def __init__(self, path: str | os.PathLike | None, mirror: Callable[[dict[str, Any]], None] | None = None):
        self.path = Path(path) if path is not None else None
        self.mirror = mirror

    def log(self, record: dict[str, Any]) -> None:
        if self.path is None or not distributed.is_main():  # under torchrun, rank 0 keeps the record
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.mirror is not None:
            try:
                self.mirror(record)
            except Exception as err:  # noqa: BLE001 - a tracking backend never fails a training
                warnings.warn(f"tracking: could not log {record.get('run')} epoch {record.get('epoch')}: {err}",
                              stacklevel=2)

    def truncate_run(self, run: str, after_epoch: int) -> None:
        """Remove this run's records with epoch > ``after_epoch`` (they will be redone)."""
        if self.path is None or not self.path.exists() or not distributed.is_main():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if rec.get("run") == run and rec.get("epoch", 0) > after_epoch:
                continue
            kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics file, skipping a truncated last line."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out

"""TensorBoard: ``<run dir>/tensorboard/<training>/`` per training, plus ``interpolation/`` and ``results/``.

``tensorboard --logdir <run dir>/tensorboard`` (or ``<save_path>`` for every
run) shows each training's curves by epoch under the names of
``metrics.jsonl``. A training that logs again after a kill opens its writer
with ``purge_step`` at its first epoch, so TensorBoard drops the events the
killed process logged from there on and every step appears once, with the
values ``metrics.jsonl`` holds. The interpolation curves (step = 100 alpha)
before and after matching are two runs with the same tags, so one chart
overlays them; ``results/`` holds the config and the tables as text.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tracking.records import RunInfo, markdown_table, results_tables, scalars

CURVE_KEYS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")


class TensorBoardBackend:
    name = "tensorboard"

    def __init__(self, info: RunInfo):
        from torch.utils.tensorboard import SummaryWriter

        self.SummaryWriter = SummaryWriter
        self.root = info.run_dir / "tensorboard"
        self.info = info
        self.training: str | None = None
        self.writer: Any = None

    def start_line(self) -> str:
        return f"tensorboard: event files under {self.root}; view them with: tensorboard --logdir {self.root}"

    def log_epoch(self, training: str, stage: str, record: dict[str, Any], artifact_dir: Path) -> None:
        step = int(record["epoch"])
        if training != self.training:
            self._close_writer()
            self.training = training
            self.writer = self.SummaryWriter(str(self.root / training), purge_step=step)
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a kill loses at most the epoch being trained, as metrics.jsonl

    def _close_writer(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
        self.training = None

    def log_results(self, results: dict[str, Any] | None, tables: dict[str, list[dict[str, Any]]]) -> None:
        self._close_writer()
        matching = (results or {}).get("matching", {})
        if matching.get("curve_before") or matching.get("curve_after"):
            # Rewritten whole: the curves are those of one finished artifact, never a continuation.
            shutil.rmtree(self.root / "interpolation", ignore_errors=True)
            for side in ("before", "after"):
                with self.SummaryWriter(str(self.root / "interpolation" / side)) as writer:
                    for point in matching.get(f"curve_{side}", []):
                        for key in CURVE_KEYS:
                            if point.get(key) is not None:
                                writer.add_scalar(f"interpolation/{key}", point[key], round(100 * point["alpha"]))
        folder = self.root / "results"
        # One step per writing process, so the text plugin shows the latest results first and keeps the older.
        revision = len(list(folder.glob("events.out.tfevents.*"))) if folder.is_dir() else 0
        with self.SummaryWriter(str(folder)) as writer:
            writer.add_text("config", "```yaml\n" + yaml.safe_dump(self.info.config, sort_keys=False) + "```",
                            revision)
            for name, rows in {**results_tables(results or {}), **tables}.items():
                if name != "interpolation":  # plotted above
                    writer.add_text(f"tables/{name}", markdown_table(rows), revision)

    def close(self) -> None:
        self._close_writer()

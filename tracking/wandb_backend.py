"""Weights & Biases: one wandb run per training, grouped by run directory; ``results`` holds the tables.

Offline (``WANDB_MODE=offline``) runs are folders ``<run dir>/wandb/offline-run-*``
(or under ``WANDB_DIR``) that ``wandb sync`` uploads later. A training that is
resumed after a kill resumes its wandb run: the id and the last step logged
sit in the artifact's ``tracking_state.json`` while it is being made (the
artifact drops it when finished), and epochs up to that step are not logged
again, so a curve never has a step twice. The ``results`` run's id is kept in
``<run dir>/tracking.json``, so phase 1 and phase 2 fill the same run.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
from pathlib import Path
from typing import Any

from tracking.records import RunInfo, flat_numbers, results_tables, scalars
from utils.artifacts import TRACKING_STATE
from utils.atomic import atomic_write_json

RUN_DIR_STATE = "tracking.json"


def new_run_id() -> str:
    """A fresh wandb run id (8 lowercase hex characters, as wandb's own)."""
    return secrets.token_hex(4)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class WandbBackend:
    name = "wandb"

    def __init__(self, info: RunInfo):
        import wandb

        self.wandb = wandb
        self.info = info
        self.run: Any = None
        self.training: str | None = None
        self._state_path: Path | None = None
        self._state: dict[str, Any] = {}

    def start_line(self) -> str:
        """What the log says when wandb starts: mode, project, group, and for offline runs where and how to sync."""
        mode = (os.environ.get("WANDB_MODE") or "online").lower()
        where = f"project {self.info.project}" + (f", entity {self.info.entity}" if self.info.entity else "")
        where += f", group {self.info.group}"
        if mode == "offline":
            runs = Path(os.environ.get("WANDB_DIR") or self.info.run_dir) / "wandb" / "offline-run-*"
            return (f"wandb offline ({where}): runs are written to {runs}; upload them later from a machine "
                    f"that is online with: wandb sync {runs}")
        if mode in ("disabled", "dryrun"):
            return f"wandb {mode} ({where}): nothing is logged or written by wandb"
        return f"wandb online ({where}): each training is a run of that group, logged as it trains"

    def _dir(self) -> str:
        folder = Path(os.environ.get("WANDB_DIR") or self.info.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def _init(self, *, name: str, job_type: str, run_id: str, config: dict[str, Any]) -> Any:
        run = self.wandb.init(
            project=self.info.project, entity=self.info.entity, group=self.info.group, job_type=job_type, name=name,
            id=run_id, resume="allow", dir=self._dir(), config=config, tags=[f"seed_{self.info.seed}"],
            # Our own lines are the console record; wandb capturing them would mix every training of the process.
            settings=self.wandb.Settings(silent=True, console="off"))
        # After wandb's own exit hooks (atexit runs the last registered first): a process that ends without
        # closing its tracker, e.g. on an error, still finishes its runs cleanly.
        atexit.unregister(self.close)
        atexit.register(self.close)
        return run

    def log_epoch(self, training: str, stage: str, record: dict[str, Any], artifact_dir: Path) -> None:
        if training != self.training:
            self._finish_run()
            self.training = training
            self._state_path = artifact_dir / TRACKING_STATE
            self._state = _read_json(self._state_path)
        step = int(record["epoch"])
        entry = self._state.get(training)
        if entry is not None and step <= entry.get("step", 0):
            return  # logged by the run this one resumes (e.g. an epoch redone after a kill)
        if self.run is None:
            run_id = entry["id"] if entry else new_run_id()
            entry = self._state[training] = {"id": run_id, "step": entry["step"] if entry else 0}
            self.run = self._init(name=training, job_type=stage, run_id=run_id,
                                  config={**self.info.config, "training": training, "artifact": artifact_dir.name})
        # Recorded before logging: a kill in between loses this epoch from the curve rather than doubling it.
        self._state[training] = {**entry, "step": step}
        atomic_write_json(self._state_path, self._state)
        self.run.log({**scalars(record), "epoch": step}, step=step)

    def _finish_run(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish()
        self.training = None

    def log_results(self, results: dict[str, Any] | None, tables: dict[str, list[dict[str, Any]]]) -> None:
        self._finish_run()
        path = self.info.run_dir / RUN_DIR_STATE
        state = _read_json(path)
        run_id = state.get("wandb_results_id") or new_run_id()
        if state.get("wandb_results_id") != run_id:
            self.info.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {**state, "wandb_results_id": run_id})
        run = self._init(name="results", job_type="results", run_id=run_id, config=self.info.config)
        try:
            logged = {name: self._table(rows) for name, rows in {**results_tables(results or {}), **tables}.items()}
            curves = (results or {}).get("matching", {})
            if curves.get("curve_before") and curves.get("curve_after"):
                logged["interpolation_plot"] = self.wandb.plot.line_series(
                    xs=[p["alpha"] for p in curves["curve_before"]],
                    ys=[[p["test_accuracy"] for p in curves[side]] for side in ("curve_before", "curve_after")],
                    keys=["before matching", "after matching"], title="interpolation A-B: test accuracy",
                    xname="alpha")
            if logged:
                run.log(logged)
            if results:
                run.summary.update(flat_numbers(results))
        finally:
            run.finish()

    def _table(self, rows: list[dict[str, Any]]) -> Any:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        return self.wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])

    def close(self) -> None:
        atexit.unregister(self.close)
        self._finish_run()

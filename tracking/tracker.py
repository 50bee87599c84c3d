"""One run's tracking: hands every training epoch, the results and any table to the backends asked for.

Names and grouping (the same in both backends): every training (``dense_A``,
``imp_round_3``, ``sparse_permuted_k1``, ...) is one tracked run named as in
``metrics.jsonl``; its stage (``dense``, ``imp``, ``sparse``) is the wandb
``job_type``; all runs of one config and seed share the wandb ``group`` named
after the run directory, and TensorBoard writes under that run directory.
A sweep's jobs each log their own trainings into the same group.

A backend that raises is dropped for the rest of the process with one warning:
tracking never fails a training and never changes what it computes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tracking.preflight import check_tracking
from tracking.records import DEFAULT_PROJECT, RunInfo
from utils import distributed

MAX_GROUP = 128  # wandb's limit on a group name
_open: list[Tracker] = []  # active trackers of this process, for close_all


class Backend(Protocol):
    name: str

    def log_epoch(self, training: str, stage: str, record: dict[str, Any], artifact_dir: Path) -> None: ...

    def log_results(self, results: dict[str, Any] | None, tables: dict[str, list[dict[str, Any]]]) -> None: ...

    def close(self) -> None: ...


def stage_of(training: str) -> str:
    """``dense_A`` -> ``dense``, ``imp_round_3`` -> ``imp``, ``sparse_lth_k0`` -> ``sparse``."""
    return training.split("_", 1)[0]


def group_name(run_dir: Path) -> str:
    """``<config>-<hash>-seed_<N>``: one group per run directory, cut to wandb's length from the middle."""
    name = f"{run_dir.parent.name}-{run_dir.name}"
    if len(name) <= MAX_GROUP:
        return name
    half = (MAX_GROUP - 3) // 2
    return f"{name[:half]}...{name[-half:]}"


class Tracker:
    """The backends of one run context; inactive (and free) without ``tracking``."""

    def __init__(self, backends: Sequence[str], info: RunInfo):
        self.wanted = list(backends)
        self.info = info
        self._live: dict[str, Backend] | None = None  # made on first use: a run that trains nothing imports nothing
        self._results: dict[str, Any] | None = None
        self._tables: dict[str, list[dict[str, Any]]] = {}
        self._closed = False
        if self.wanted:
            _open.append(self)

    @classmethod
    def for_run(cls, cfg: Any, seed: int, run_dir: Path) -> Tracker:
        """The tracker a config asks for; raises a one-line error first if a backend could not log."""
        backends = list(getattr(cfg, "tracking", None) or [])
        if backends:
            check_tracking(backends)
        info = RunInfo(run_dir=run_dir, group=group_name(run_dir), seed=seed,
                       project=getattr(cfg, "project", None) or DEFAULT_PROJECT, entity=getattr(cfg, "entity", None),
                       config={**cfg.to_dict(), "seed": seed})
        return cls(backends, info)

    @property
    def active(self) -> bool:
        return bool(self.wanted) and distributed.is_main()

    def _backends(self) -> dict[str, Backend]:
        if self._live is None:
            self._live = {}
            for name in self.wanted:
                self._guard(name, lambda name=name: self._live.__setitem__(name, make_backend(name, self.info)))
            for backend in self._live.values():
                # Say where the curves go, once per run directory and process: a user should not have to guess
                # whether tracking is on, where offline runs landed, or how to see or upload them.
                start = getattr(backend, "start_line", None)
                if start is not None:
                    print(f"[tracking] {start()}", flush=True)
        return self._live

    def _guard(self, name: str, action: Callable[[], None]) -> None:
        """Run a backend's action; an error drops that backend with one warning instead of failing the run."""
        try:
            action()
        except Exception as err:  # noqa: BLE001 - whatever a backend raises, training goes on
            warnings.warn(f"tracking: {name} failed ({type(err).__name__}: {err}); it logs nothing more in this "
                          "process (metrics.jsonl and results are unaffected)", stacklevel=3)
            if self._live is not None:
                self._live.pop(name, None)

    def mirror(self, artifact_dir: Path) -> Callable[[dict[str, Any]], None] | None:
        """What ``MetricsLog`` calls with each record it writes for a training in ``artifact_dir``."""
        if not self.active:
            return None
        return lambda record: self.log_epoch(record, artifact_dir)

    def log_epoch(self, record: dict[str, Any], artifact_dir: Path) -> None:
        training = str(record.get("run", "training"))
        for name, backend in list(self._backends().items()):
            self._guard(name, lambda b=backend: b.log_epoch(training, stage_of(training), record, artifact_dir))

    def set_results(self, results: dict[str, Any]) -> None:
        """The run directory's latest results; logged (with the config and curves) when the tracker closes."""
        self._results = results

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """A table (rows of column -> value) logged with the results when the tracker closes."""
        self._tables[name] = [dict(r) for r in rows]

    def close(self) -> None:
        """Log the results and tables, then finish every backend; safe to call twice."""
        if self._closed or not self.active:
            return
        self._closed = True
        if self._live is None and self._results is None and not self._tables:
            return  # nothing was trained or written: no backend to start
        for name, backend in list(self._backends().items()):
            if self._results is not None or self._tables:
                self._guard(name, lambda b=backend: b.log_results(self._results, self._tables))
            self._guard(name, backend.close)


def close_all() -> None:
    """Close every tracker of this process, oldest first (the entry points call it when they end, however)."""
    while _open:
        _open.pop(0).close()


def make_backend(name: str, info: RunInfo) -> Backend:
    if name == "wandb":
        from tracking.wandb_backend import WandbBackend

        return WandbBackend(info)
    if name == "tensorboard":
        from tracking.tensorboard_backend import TensorBoardBackend

        return TensorBoardBackend(info)
    raise ValueError(f"unknown tracking backend {name!r}")


def log_table(ctx: Any, name: str, rows: list[dict[str, Any]]) -> None:
    """Log a table of a run context (e.g. a study's) to its tracking backends; nothing without ``tracking``."""
    tracker = getattr(ctx, "tracker", None)
    if tracker is not None:
        tracker.log_table(name, rows)

"""Long-lived local worker processes: each runs sweep jobs one after another, paying Python and torch start-up once.

A local sweep used to start a fresh interpreter per job (one per artifact), so
a small study spent most of its time importing torch. Here N workers start
once (spawned, not forked: the planner has torch loaded) and each takes the
next job whose dependencies are done. A job is still one artifact, made by the
same ``run_step`` as a Slurm job, under the same artifact locks as
``experiment.py``, so a concurrent ``experiment.py`` on the same save_path
waits or reuses rather than making anything twice. Each job's output (Python
and C level) goes to its own log file. A worker that dies (killed, out of
memory) fails only the job it was running; a new one takes its place.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any


def _serve(conn: Connection, gpu: int | None) -> None:
    """A worker's loop: (spec, log path) in, (name, ok, last error line) out; None stops it."""
    if gpu is not None:  # before torch is imported in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        while True:
            message = conn.recv()
            if message is None:
                return
            spec, log = message
            ok, last = run_logged(spec, Path(log))
            conn.send((spec["name"], ok, last))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # interrupted, or the sweep is gone: the artifact's saved state lets a rerun resume


def run_logged(spec: dict[str, Any], log: Path) -> tuple[bool, str]:
    """Run one job with stdout and stderr (file descriptors 1 and 2, so C code's output too) in ``log``."""
    from sweep.job import StepJob

    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", buffering=1) as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            StepJob(spec)()
            return True, ""
        except Exception as err:  # noqa: BLE001 - any failure of a job is that job's, reported with its log
            traceback.print_exc()
            return False, (str(err).strip().splitlines() or [type(err).__name__])[-1]
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class Worker:
    def __init__(self, gpu: int | None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.gpu = gpu
        self.process = ctx.Process(target=_serve, args=(child, gpu), daemon=True)
        self.process.start()
        child.close()
        self.job: str | None = None

    def start(self, spec: dict[str, Any], log: Path) -> None:
        self.job = spec["name"]
        self.conn.send((spec, str(log)))

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


class Pool:
    """N workers, each optionally pinned to one GPU; ``finished()`` waits for the next job to end."""

    def __init__(self, slots: int, gpus: list[int]):
        self.workers = [Worker(gpus[i] if gpus else None) for i in range(slots)]

    def idle(self) -> Worker | None:
        return next((w for w in self.workers if w.job is None), None)

    def busy(self) -> bool:
        return any(w.job is not None for w in self.workers)

    def finished(self) -> list[tuple[str, bool, str]]:
        """(job name, succeeded, last error line) of each job that ended; blocks until at least one has."""
        busy = [w for w in self.workers if w.job is not None]
        ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
        out = []
        for i, worker in enumerate(self.workers):
            if worker.job is None or (worker.conn not in ready and worker.process.sentinel not in ready):
                continue
            try:
                name, ok, last = worker.conn.recv()
            except (EOFError, OSError):  # the process died mid-job: that job failed, a new worker replaces it
                name, ok = worker.job, False
                last = f"its worker process died (exit code {worker.process.exitcode}; out of memory or killed?)"
                worker.process.join()
                self.workers[i] = worker = Worker(worker.gpu)
            worker.job = None
            out.append((name, ok, last))
        return out

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()

"""submitit against a real Slurm: a job array, and the timeout -> checkpoint -> requeue -> resume path
that sweeps and studies rely on. Needs the single-node cluster of scripts/slurm-local.sh."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

pytestmark = pytest.mark.skipif(
    shutil.which("sbatch") is None,
    reason="no sbatch on PATH: start a local Slurm with scripts/slurm-local.sh (as root)",
)


@pytest.fixture(autouse=True)
def _ship_this_module_by_value():
    # The job's interpreter need not be able to import `tests` (its cwd and sys.path are Slurm's
    # business), so the callables travel by value instead of by module reference.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def _square(x: int) -> tuple[int, str, str]:
    return x * x, os.environ.get("SLURM_ARRAY_TASK_ID", ""), socket.gethostname()


class _Counter(submitit.helpers.Checkpointable):
    """Counts steps of 0.2 s, appending to a log, until it has been requeued once; then a few more and returns.

    Looping until the requeue (instead of for a fixed time) makes the test independent of when,
    within Slurm's coarse timer, the warning signal arrives. Short steps: on a loaded machine the job can start
    only a moment before the signal, and the first run must still finish a step for the resume to show."""

    def __init__(self, log: Path, extra_steps: int = 3, max_steps: int = 750) -> None:
        self.log = log
        self.extra_steps = extra_steps
        self.max_steps = max_steps
        # (steps done, sum of step indices): one attribute so that a signal arriving between two
        # updates cannot checkpoint a half-updated state.
        self.state = (0, 0)
        self.runs = 0

    def __call__(self) -> dict:
        self.runs += 1
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        self._write(f"start run={self.runs} restarts={restarts} step={self.state[0]}")
        stop_at = self.state[0] + self.extra_steps if restarts else self.max_steps
        while self.state[0] < stop_at:
            time.sleep(0.2)
            step, total = self.state
            self.state = (step + 1, total + step)
            self._write(f"step {step + 1}")
        steps, total = self.state
        return {"steps": steps, "total": total, "runs": self.runs, "restarts": restarts}

    def _write(self, line: str) -> None:
        with open(self.log, "a") as f:
            f.write(line + "\n")


def _wait(jobs: list, timeout_s: float) -> None:
    """Waits for results, cancelling on timeout: with accounting off, a job that died without a
    result would otherwise keep submitit waiting forever."""
    deadline = time.monotonic() + timeout_s
    while not all(j.paths.result_pickle.exists() for j in jobs):
        if time.monotonic() > deadline:
            for j in jobs:
                j.cancel(check=False)
            logs = "\n".join(f"--- {j.job_id}\n{j.stdout() or ''}{j.stderr() or ''}" for j in jobs)
            pytest.fail(f"jobs not done within {timeout_s:.0f} s\n{logs}")
        time.sleep(0.5)


def _executor(folder: Path, **params) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(cpus_per_task=1, **params)
    return ex


def test_job_array_results(tmp_path: Path) -> None:
    ex = _executor(tmp_path / "jobs", timeout_min=2, slurm_array_parallelism=3)
    jobs = ex.map_array(_square, [1, 2, 3])
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1, "expected one Slurm array job"
    _wait(jobs, timeout_s=60)
    results = [j.result() for j in jobs]
    assert [r[0] for r in results] == [1, 4, 9]
    assert [r[1] for r in results] == ["0", "1", "2"]
    assert {r[2] for r in results} == {socket.gethostname()}


def test_timeout_checkpoint_requeue_resume(tmp_path: Path) -> None:
    log = tmp_path / "progress.log"
    # Slurm signals USR2 30 s before the 1 min limit; submitit then checkpoints and requeues.
    ex = _executor(tmp_path / "jobs", timeout_min=1, slurm_signal_delay_s=30)
    job = ex.submit(_Counter(log))
    _wait([job], timeout_s=110)
    result = job.result()
    lines = log.read_text().splitlines()
    starts = [line for line in lines if line.startswith("start ")]

    assert result["restarts"] >= 1, f"never requeued:\n{log.read_text()}"
    assert result["runs"] == len(starts) >= 2
    # The second run resumed from the checkpoint, not from scratch.
    start_steps = [int(line.rsplit("step=", 1)[1]) for line in starts]
    assert start_steps[0] == 0 and start_steps[1] > 0, starts
    steps = result["steps"]
    assert steps == start_steps[-1] + 3
    assert result["total"] == steps * (steps - 1) // 2
    assert "Requeued job" in (job.stderr() or "") + (job.stdout() or "")

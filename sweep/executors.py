"""Run a plan: on Slurm through submitit (dependencies as ``afterok``), or locally in N long-lived workers.

Both executors run the same jobs (``sweep/job.py``) with the same specs, so a
plan gives the same artifacts and numbers wherever it runs. Job logs go to
``<save_path>/sweep/logs/`` and every sweep leaves a record in
``<save_path>/sweep/records/`` naming each job's id and log, which
``python -m sweep status`` reads.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from sweep.job import StepJob
from sweep.launcher import Launcher
from sweep.pack import Pack, PackJob, describe, pack_plan
from sweep.plan import Job, Plan
from utils.atomic import atomic_write_json
from utils.errors import UserError


def job_spec(plan: Plan, job: Job) -> dict[str, Any]:
    maker = plan.targets[job.target]
    consumers = [maker] + [plan.targets[t] for t in job.consumers if t != job.target]
    return {"name": job.name, "step": job.step, "what": job.what, "args": job.args,
            "targets": [t.as_dict() for t in consumers],
            "command": " ".join([f"python -m sweep {shlex.quote(maker.config_path)} -seeds {maker.seed}",
                                 *(f"--set {shlex.quote(o)}" for o in maker.grid)])}


REPO = Path(__file__).resolve().parent.parent


def make_importable() -> None:
    """Jobs unpickle ``sweep.job.StepJob`` in a fresh interpreter (on a Slurm node, in another directory):
    put this checkout on the PYTHONPATH they inherit."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in paths if p]])


def logs_folder(save_path: Path) -> Path:
    return save_path / "sweep" / "logs"


class Record:
    """``<save_path>/sweep/records/<time>-<pid>.json``: what a sweep asked for and which job makes what."""

    def __init__(self, save_path: Path, plan: Plan, executor: str):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = save_path / "sweep" / "records" / f"{stamp}-{os.getpid()}.json"
        self.data: dict[str, Any] = {
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv, "executor": executor,
            "targets": [t.as_dict() for t in plan.targets],
            "jobs": {name: {"what": j.what, "deps": j.deps, "epochs": j.epochs, "job_id": None, "log": None,
                            "state": "planned"} for name, j in plan.jobs.items()},
        }
        self.save()

    def update(self, name: str, **fields: Any) -> None:
        self.data["jobs"][name].update(fields)

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def _log_paths(job: submitit.Job, save_path: Path) -> str:
    """The job's log as the record keeps it: relative to the save_path, so a copied save_path finds its own."""
    path = Path(job.paths.stdout)
    try:
        return str(path.absolute().relative_to(save_path.absolute()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ Slurm


def slurm_executor(save_path: Path, launcher: Launcher) -> submitit.SlurmExecutor:
    ex = submitit.SlurmExecutor(folder=logs_folder(save_path) / "%j", max_num_timeout=launcher.max_requeues)
    params: dict[str, Any] = {
        "job_name": "sweep", "time": launcher.time_min, "signal_delay_s": launcher.signal_delay_s,
        "array_parallelism": launcher.array_throttle,
        "additional_parameters": {"kill-on-invalid-dep": "yes", **launcher.sbatch},
    }
    for key, value in (("partition", launcher.partition), ("account", launcher.account), ("qos", launcher.qos),
                       ("cpus_per_task", launcher.cpus_per_job)):
        if value is not None:
            params[key] = value
    if launcher.gpus_per_job:
        params["gpus_per_node"] = launcher.gpus_per_job
    if launcher.mem_gb is not None:
        params["mem"] = f"{int(launcher.mem_gb * 1024)}M"
    ex.update_parameters(**params)
    return ex


def _levels(packs: dict[str, Pack]) -> list[list[str]]:
    depth: dict[str, int] = {}
    for name, pack in packs.items():  # topological order: dependencies first
        depth[name] = 1 + max((depth[d] for d in pack.deps), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, d in depth.items():
        levels[d].append(name)
    return levels


def submit_slurm(plan: Plan, save_path: Path, launcher: Launcher, record: Record, pack: str = "none") -> dict[str, str]:
    """Submit every job (or pack of jobs, ``sweep/pack.py``) with ``afterok`` dependencies; those that share their
    dependencies go as one array."""
    make_importable()
    ex = slurm_executor(save_path, launcher)
    packs = pack_plan(plan, pack)
    ids: dict[str, str] = {}
    for level in _levels(packs):
        groups: dict[tuple[str, ...], list[str]] = {}
        for name in level:
            key = tuple(sorted(ids[d] for d in packs[name].deps))
            groups.setdefault(key, []).append(name)
        for dep_ids, names in groups.items():
            ex.update_parameters(dependency="afterok:" + ":".join(dep_ids) if dep_ids else None)
            with ex.batch():
                submitted = [ex.submit(_slurm_callable(plan, packs[n])) for n in names]
            for name, job in zip(names, submitted, strict=True):
                ids[name] = job.job_id
                for member in packs[name].members:
                    record.update(member, job_id=job.job_id, log=_log_paths(job, save_path), state="submitted")
                print(f"[sweep] submitted {job.job_id:<12} {describe(packs[name], plan):<34} {name}", flush=True)
        record.save()
    _drop_pattern_folder(save_path)
    return ids


def _slurm_callable(plan: Plan, pack: Pack) -> StepJob | PackJob:
    if pack.single:
        return StepJob(job_spec(plan, plan.jobs[pack.members[0]]))
    return PackJob([job_spec(plan, plan.jobs[m]) for m in pack.members])


def _drop_pattern_folder(save_path: Path) -> None:
    """submitit makes its folder pattern (``logs/%j``) as a real, empty folder: not one to leave for people."""
    literal = logs_folder(save_path) / "%j"
    if literal.is_dir() and not any(literal.iterdir()):
        literal.rmdir()


def wait_slurm(record: Record, poll_s: float = 5.0) -> bool:
    """Wait until every submitted job has left the queue; True when all their artifacts are complete."""
    from sweep.status import queued_job_ids

    pending = {j["job_id"] for j in record.data["jobs"].values() if j["job_id"]}
    while pending:
        in_queue = queued_job_ids()
        pending = {j for j in pending if j in in_queue or j.split("_")[0] in in_queue}
        if pending:
            time.sleep(poll_s)
    return True


# ------------------------------------------------------------------ local


def run_local(plan: Plan, save_path: Path, launcher: Launcher, record: Record) -> bool:
    """Run the plan on this machine in ``launcher.jobs`` long-lived workers (``sweep/workers.py``), each on its own
    GPU when ``gpus`` are given; a job starts once every job it needs has finished.

    Returns True when every job succeeded; a failed job's dependents are skipped, and its log is named.
    """
    from sweep.workers import Pool

    logs = logs_folder(save_path) / f"local-{record.path.stem}"
    slots = min(launcher.jobs, len(launcher.gpus)) if launcher.gpus else launcher.jobs
    pending = list(plan.jobs)
    finished: set[str] = set()
    failed: set[str] = set()
    pool = Pool(min(slots, len(pending)), launcher.gpus)
    try:
        while pending or pool.busy():
            for name in _skip_after_failures(plan, pending, failed, record):
                pending.remove(name)
            for name in [n for n in pending if all(d in finished for d in plan.jobs[n].deps)]:
                worker = pool.idle()
                if worker is None:
                    break
                log = logs / f"{name}_log.out"
                spec = {**job_spec(plan, plan.jobs[name]), "gpu": None}  # the worker is pinned already
                worker.start(spec, log)
                pending.remove(name)
                record.update(name, job_id=f"local-{worker.process.pid}", log=str(log.relative_to(save_path)),
                              state="running")
                record.save()
                print(f"[sweep] started {plan.jobs[name].what:<34} {name}  log {log}", flush=True)
            if not pool.busy():
                if pending:  # a planner bug, not a user's: never spin
                    raise RuntimeError(f"sweep jobs {pending} wait for jobs that are not in the plan")
                continue
            for name, ok, last in pool.finished():
                (finished if ok else failed).add(name)
                record.update(name, state="done" if ok else "failed")
                record.save()
                what = plan.jobs[name].what
                print(f"[sweep] done    {what:<34} {name}" if ok else
                      f"[sweep] FAILED  {what:<34} {name}: {last}; log {logs / f'{name}_log.out'}", flush=True)
    finally:
        pool.close()
        record.save()
    return not failed


def _skip_after_failures(plan: Plan, pending: list[str], failed: set[str], record: Record) -> list[str]:
    """Pending jobs that need a failed one (directly or through a skipped one): marked skipped, never run."""
    skipped = []
    for name in pending:  # dependencies come first, so one pass reaches the whole failed subtree
        if any(d in failed for d in plan.jobs[name].deps):
            failed.add(name)
            skipped.append(name)
            record.update(name, state="skipped")
            print(f"[sweep] skipped {plan.jobs[name].what} ({name}): a job it needs failed", flush=True)
    return skipped


def check_slurm_available() -> None:
    import shutil

    if shutil.which("sbatch") is None:
        raise UserError("--executor slurm needs Slurm's sbatch on PATH, and it is not here; run on a Slurm login "
                        "node, or use --executor local")


"""``python -m sweep status SAVE_PATH``: what every (config, seed) a sweep asked for has, and lacks.

Each stage is one of: done (its artifact is complete), running (its lock is
held: by whom), queued (its Slurm job is waiting), failed (its job ended
without it: the last lines of the job's log, and the log's path) or missing.
The answer comes from the artifacts themselves and the sweep records, so it
is right whichever process, job or person made what.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from phases import graph
from phases.context import run_dir_name
from sweep.plan import Target
from utils.config import config_from_dict
from utils.locks import describe_holder, is_locked, read_holder

STATES = ("done", "running", "queued", "failed", "missing")


def queued_job_ids() -> set[str]:
    """Slurm job ids now in the queue (array tasks as ``123_4``, pending arrays also as ``123``)."""
    if shutil.which("squeue") is None:
        return set()
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=False).stdout
    ids = set()
    for token in out.split():
        ids.add(token)
        if "_[" in token:  # a pending array range: its base id stands for every task
            ids.add(token.split("_")[0])
    return ids


def read_records(save_path: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((save_path / "sweep" / "records").glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, OSError):
            continue
    return records


def log_tail(log: str | None, lines: int = 3) -> str:
    if not log:
        return ""
    texts = []
    for path in (Path(log), Path(log).with_suffix(".err")):
        if path.exists():
            texts += [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in texts if line.startswith("error:") or "Error" in line]
    return " | ".join((errors or texts)[-lines:])


def job_failed(info: dict[str, Any]) -> bool:
    if info.get("state") in ("failed", "skipped"):
        return True
    log = info.get("log")
    if not log:
        return False
    result = Path(log).parent / Path(log).name.replace("_log.out", "_result.pkl")
    if result.exists():
        return True  # a job that ended with a result but not the artifact did not make it
    err = Path(log).with_suffix(".err")
    return err.exists() and "Traceback" in err.read_text(errors="replace")


def stage_state(art, info: dict[str, Any] | None, queue: set[str]) -> tuple[str, str]:
    if art.complete:
        return "done", ""
    if is_locked(art.lock_path):
        return "running", f"lock held by {describe_holder(read_holder(art.lock_path))}"
    if info and info.get("job_id"):
        job_id = str(info["job_id"])
        if job_id in queue or job_id.split("_")[0] in queue:
            return "queued", f"Slurm job {job_id}, log {info.get('log')}"
        if job_failed(info):
            return "failed", f"job {job_id}: {log_tail(info.get('log'))} (log {info.get('log')})"
    return "missing", ""


def study_lines(target: Target, cfg, jobs: dict[str, dict[str, Any]], queue: set[str],
                states: dict[str, tuple[str, str]]) -> list[str]:
    """The state of each study's artifacts and report for one target (reports count as artifacts here)."""
    from phases.studies import get_study
    from sweep.plan import report_job_name

    lines = []
    for name in target.studies:
        for n in get_study(name).needs(cfg, target.seed):
            if n.artifact.name not in states:
                states[n.artifact.name] = stage_state(n.artifact, jobs.get(n.artifact.name), queue)
            state, detail = states[n.artifact.name]
            lines.append(f"  {name}: {n.what:<30} {state:<8} {detail}".rstrip())
        report = Path(cfg.save_path) / run_dir_name(target.label, cfg) / f"seed_{target.seed}" / "studies" / \
            f"{name}.json"
        job = report_job_name(target, name)
        state = "done" if report.exists() else "missing"
        info = jobs.get(job)
        if state == "missing" and info and info.get("job_id") and str(info["job_id"]).split("_")[0] in queue:
            state = "queued"
        states[job] = (state, "")
        lines.append(f"  {name}: report{'':<24} {state:<8} {report if state == 'done' else ''}".rstrip())
    return lines


def status(save_path: Path) -> tuple[str, bool]:
    records = read_records(save_path)
    if not records:
        return f"no sweep records under {save_path / 'sweep' / 'records'}: nothing was asked here", False
    jobs: dict[str, dict[str, Any]] = {}
    targets: dict[str, Target] = {}
    for rec in records:  # later records win
        jobs.update(rec.get("jobs", {}))
        for t in rec.get("targets", []):
            target = Target(label=t["label"], config_path=t["config_path"], raw=t["config"], seed=t["seed"],
                            rewinds=t["rewinds"], studies=list(t.get("studies", [])))
            key = json.dumps([t["label"], t["seed"], t["config"]], sort_keys=True)
            if key in targets:
                target.rewinds = sorted(set(targets[key].rewinds) | set(t["rewinds"]))
                target.studies = list(dict.fromkeys([*targets[key].studies, *target.studies]))
            targets[key] = target
    queue = queued_job_ids()
    lines, states = [], {}
    for target in targets.values():
        cfg = config_from_dict(target.raw, check_data=False)
        lines.append(f"{run_dir_name(target.label, cfg)}/seed_{target.seed}")
        for name, art in graph.run_artifacts(cfg, target.seed, target.rewinds).items():
            if art.name not in states:  # shared artifacts are looked at once
                states[art.name] = stage_state(art, jobs.get(art.name), queue)
            state, detail = states[art.name]
            lines.append(f"  {name:<22} {state:<8} {detail}".rstrip())
        lines += study_lines(target, cfg, jobs, queue, states)
    counts = {s: sum(1 for st, _ in states.values() if st == s) for s in STATES}
    total = len(states)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(f"totals over {total} distinct artifacts: {summary}")
    return "\n".join(lines), counts["done"] == total


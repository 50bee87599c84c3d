"""``python -m sweep status SAVE_PATH``: what every (config, seed) under a save_path has, and lacks.

Each stage is one of: done (its artifact is complete), running (its lock is
held: by whom), queued (its Slurm job is waiting), failed (its job ended
without it: the last lines of the job's log, and the log's path) or missing
(not there, and nothing is making it: never made, or deleted after its job
succeeded). The (config, seed) pairs come from the sweep records and from the
run directories, so runs made by ``experiment.py`` have a status too. The
answer comes from the artifacts themselves, always under the SAVE_PATH given:
a copied or moved save_path reports its own state, not the original's.

The default view is one line per (config, seed); ``--details`` adds a line per
artifact, ``--failed`` the failed jobs with the tails of their logs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phases import graph
from phases.run_dir import existing_run_dir, run_dir_name
from sweep.plan import Target
from utils.config import ConfigError, config_from_dict
from utils.errors import UserError
from utils.locks import describe_holder, is_locked, read_holder

STATES = ("done", "running", "queued", "failed", "missing")
LOGS = Path("sweep") / "logs"


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
    """Every sweep record under ``save_path``; a damaged one (binary, truncated, empty, misshapen) is a one-line
    UserError naming it: skipped, its targets would silently vanish from the status."""
    return [read_record(path) for path in sorted((save_path / "sweep" / "records").glob("*.json"))]


def read_record(path: Path) -> dict[str, Any]:
    def damaged(why: str) -> UserError:
        return UserError(f"sweep record {path} is damaged ({why}); delete it and rerun the sweep command that "
                         "wrote it (finished artifacts are kept and reused)")

    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged("not a text file") from None
    except json.JSONDecodeError as err:
        raise damaged("empty" if not err.doc.strip() else f"not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("jobs"), dict) or not isinstance(rec.get("targets"), list):
        raise damaged("not a mapping with 'jobs' and 'targets'")
    for t in rec["targets"]:
        if not (isinstance(t, dict) and isinstance(t.get("label"), str) and isinstance(t.get("config"), dict)
                and isinstance(t.get("seed"), int) and isinstance(t.get("rewinds", []), list)):
            raise damaged("a target lacks its label, config or seed")
    if not all(isinstance(info, dict) for info in rec["jobs"].values()):
        raise damaged("a job entry is not a mapping")
    return rec


def log_path(save_path: Path, log: str | None) -> Path | None:
    """A record's log path under this save_path: relative ones are; old absolute ones are moved under it."""
    if not log:
        return None
    path = Path(log)
    if not path.is_absolute():
        return save_path / path
    parts = path.parts
    for i in range(len(parts) - 1):  # .../sweep/logs/...: the same file in this (maybe copied) save_path
        if parts[i:i + 2] == LOGS.parts:
            moved = save_path.joinpath(*parts[i:])
            if moved.exists() or not path.exists():
                return moved
    return path


def log_lines(log: Path | None) -> list[str]:
    if log is None:
        return []
    texts = []
    for path in (log, log.with_suffix(".err")):
        if path.is_file():
            texts += [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return texts


def log_tail(log: Path | None, lines: int = 3) -> str:
    texts = log_lines(log)
    errors = [line for line in texts if line.startswith("error:") or "Error" in line]
    return " | ".join((errors or texts)[-lines:])


def job_outcome(name: str, info: dict[str, Any], log: Path | None) -> str:
    """``succeeded``, ``failed``, ``skipped`` (a job it needed failed) or ``unknown`` (still to run, or its log is
    gone) for the job that was to make ``name``."""
    state = info.get("state")
    if state in ("failed", "skipped"):
        return state
    if state == "done":
        return "succeeded"
    texts = log_lines(log)
    if any(f"[sweep] job {name} done" in line for line in texts):
        return "succeeded"
    if log is not None and log.parent.joinpath(log.name.replace("_log.out", "_result.pkl")).exists():
        return "failed"  # ended with a result and no "done" line: its error is in the log
    return "failed" if any("Traceback" in line for line in texts) else "unknown"


def stage_state(art, info: dict[str, Any] | None, queue: set[str], save_path: Path) -> tuple[str, str]:
    if art.complete:
        return "done", ""
    if is_locked(art.lock_path):
        return "running", f"lock held by {describe_holder(read_holder(art.lock_path))}"
    if not info:
        return "missing", ""
    log = log_path(save_path, info.get("log"))
    job_id = str(info.get("job_id") or "")
    if job_id and (job_id in queue or job_id.split("_")[0] in queue):
        return "queued", f"Slurm job {job_id}, log {log}"
    outcome = job_outcome(art.name, info, log)
    if outcome == "failed":
        return "failed", f"job {job_id or '?'}: {log_tail(log)} (log {log})"
    if outcome == "skipped":
        return "missing", "skipped: a job it needs failed"
    if outcome == "succeeded":
        return "missing", f"its job {job_id or '?'} succeeded (log {log}); deleted since: rerun the sweep to remake it"
    return "missing", ""


@dataclass
class Line:
    stage: str  # dense_A, sparse_lth_k5, "ensemble: member 2", ...
    artifact: str
    state: str
    detail: str


def _target(t: dict[str, Any], save_path: Path) -> Target:
    raw = dict(t["config"])
    raw["save_path"] = str(save_path)  # this save_path's artifacts, wherever the sweep first wrote them
    return Target(label=t["label"], config_path=t.get("config_path", ""), raw=raw, seed=t["seed"],
                  rewinds=list(t.get("rewinds", [])), studies=list(t.get("studies", [])),
                  grid=list(t.get("grid", [])))


def run_dir_targets(save_path: Path) -> list[Target]:
    """The (config, seed) of every run directory (``<label>-<hash>/seed_N/config.yaml``), all its rewind points."""
    out = []
    for path in sorted(save_path.glob("*/seed_*/config.yaml")):
        try:
            raw = yaml.safe_load(path.read_text())
            raw["save_path"] = str(save_path)
            cfg = config_from_dict(raw, check_data=False)
        except (yaml.YAMLError, ConfigError, OSError, TypeError, UnicodeDecodeError):
            continue  # not a run directory of a config this code can read: nothing to report for it
        seed = int(path.parent.name.removeprefix("seed_")) if path.parent.name[5:].isdigit() else cfg.seed
        label = path.parent.parent.name.rsplit("-", 1)[0]
        studies = sorted(p.stem for p in (path.parent / "studies").glob("*.json"))
        out.append(Target(label=label, config_path="", raw={**raw, "seed": seed}, seed=seed,
                          rewinds=list(cfg.rewind_points), studies=studies))
    return out


def collect(save_path: Path) -> tuple[list[Target], dict[str, dict[str, Any]]]:
    """Every (config, seed) asked for under ``save_path`` (records, then run directories), and the jobs by artifact."""
    jobs: dict[str, dict[str, Any]] = {}
    found: dict[tuple[str, int], Target] = {}
    records = read_records(save_path)
    candidates = []
    for rec in records:  # later records win
        jobs.update({k: v for k, v in (rec.get("jobs") or {}).items() if isinstance(v, dict)})
        for t in rec.get("targets") or []:
            try:
                candidates.append(_target(t, save_path))
            except (KeyError, TypeError):
                continue
    from_records = len(candidates)
    for i, target in enumerate(candidates + run_dir_targets(save_path)):
        try:
            key = (run_dir_name(target.label, target.cfg), target.seed)
        except ConfigError:
            continue
        if key in found and i >= from_records:
            continue  # the sweep's own rewinds (a sweep of --rewind 5 asks for that one), not all the config's
        if key in found:
            old = found[key]
            old.rewinds = sorted(set(old.rewinds) | set(target.rewinds))
            old.studies = list(dict.fromkeys([*old.studies, *target.studies]))
        else:
            found[key] = target
    return list(found.values()), jobs


def target_lines(target: Target, jobs: dict[str, dict[str, Any]], queue: set[str], save_path: Path,
                 states: dict[str, tuple[str, str]]) -> list[Line]:
    """The state of every artifact (and study report) one (config, seed) needs; shared ones looked at once."""
    from phases.studies import get_study
    from sweep.plan import report_job_name

    cfg = target.cfg
    stages = [(name, art) for name, art in graph.run_artifacts(cfg, target.seed, target.rewinds).items()]
    for study in target.studies:
        stages += [(f"{study}: {n.what}", n.artifact) for n in get_study(study).needs(cfg, target.seed)]
    lines = []
    for name, art in stages:
        if art.name not in states:
            states[art.name] = stage_state(art, jobs.get(art.name), queue, save_path)
        lines.append(Line(name, art.name, *states[art.name]))
    for study in target.studies:
        report = existing_run_dir(save_path, target.label, cfg, target.seed) / "studies" / f"{study}.json"
        job = report_job_name(target, study)
        info = jobs.get(job) or {}
        state = "done" if report.exists() else "missing"
        if state == "missing" and str(info.get("job_id") or "").split("_")[0] in queue:
            state = "queued"
        states[job] = (state, "")
        lines.append(Line(f"{study}: report", job, state, str(report) if state == "done" else ""))
    return lines


def counts_text(states: list[str]) -> str:
    done = states.count("done")
    rest = [f"{states.count(s)} {s}" for s in STATES[1:] if states.count(s)]
    return "  ".join([f"{f'{done}/{len(states)}':>7} done", *rest])


def status(save_path: Path, details: bool = False, failed: bool = False, tail: int = 10) -> tuple[str, bool]:
    """The report for people, and whether everything asked for under ``save_path`` is done."""
    if not save_path.is_dir():
        raise UserError(f"{save_path} is not a directory: give the save_path of a sweep or of experiment.py runs")
    targets, jobs = collect(save_path)
    if not targets:
        return (f"nothing asked for under {save_path}: no sweep records (sweep/records/) and no run directories "
                "(<config>-<hash>/seed_N/config.yaml)"), False
    queue = queued_job_ids()
    states: dict[str, tuple[str, str]] = {}
    per_target = [(t, target_lines(t, jobs, queue, save_path, states)) for t in targets]
    width = max(len(f"{run_dir_name(t.label, t.cfg)}/seed_{t.seed}") for t in targets)
    out = [f"{len(targets)} (config, seed) pairs under {save_path}"]
    for target, lines in per_target:
        name = f"{run_dir_name(target.label, target.cfg)}/seed_{target.seed}"
        out.append(f"{name:<{width}}  {counts_text([line.state for line in lines])}")
        if details:
            out += [f"  {line.stage:<28} {line.state:<8} {line.detail}".rstrip() for line in lines]
    all_states = [s for s, _ in states.values()]
    out.append(f"totals over {len(states)} distinct artifacts: "
               + ", ".join(f"{all_states.count(s)} {s}" for s in STATES if all_states.count(s)))
    if failed:
        out += failed_section(per_target, jobs, save_path, tail)
    elif "failed" in all_states:
        out.append(f"the failed jobs and their logs: python -m sweep status {save_path} --failed")
    return "\n".join(out), all_states.count("done") == len(states)


def failed_section(per_target: list[tuple[Target, list[Line]]], jobs: dict[str, dict[str, Any]], save_path: Path,
                   tail: int) -> list[str]:
    out, seen = [], set()
    for target, lines in per_target:
        for line in lines:
            if line.state != "failed" or line.artifact in seen:
                continue
            seen.add(line.artifact)
            info = jobs.get(line.artifact) or {}
            log = log_path(save_path, info.get("log"))
            out.append(f"FAILED {line.stage} ({line.artifact}) of {target.label}/seed_{target.seed}: "
                       f"job {info.get('job_id') or '?'}, log {log}")
            out += [f"    {text}" for text in log_lines(log)[-tail:]]
    return ["", *out] if out else ["no failed jobs"]

"""Plan a study: configs x seeds x rewind points -> a graph of jobs, one per artifact to make.

Every (config, seed) expands into the artifacts the stage table asks for
(``phases/stages.py``) and its studies need. Artifacts are named by their key,
so the same artifact needed by several configs (dense A and B for the four
sparsities of a width, the permutation, IMP rounds) is one job; complete
artifacts are dropped. A job depends on the jobs that make its parents
(``Artifact.parents``, the one list of edges), so everything independent (e.g.
all sparse runs of all rewind points) can run at once. Jobs of one serial group
(IMP targets that share a round chain) run one after another, smallest target
first, so that each trains only the rounds the previous one did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phases import graph
from phases.dense import saved_epochs
from phases.imp_step import imp_schedule
from phases.mask_source import mask_owner
from phases.stages import closure, describe, main_artifacts, requested_checkpoints, stage_of
from utils.artifacts import Artifact
from utils.config import Config, config_from_dict

PHASE1_TRAINING = ("dense", "imp")  # the kinds whose training the plan's totals count as "dense and IMP"


@dataclass
class Target:
    """One (config, seed) the sweep asks for: what a single ``experiment.py`` command would run."""

    label: str  # run directory label (the config path as experiment.py names it)
    config_path: str
    raw: dict[str, Any]  # the resolved config (overrides applied), as recorded in config.yaml
    seed: int
    rewinds: list[int]
    studies: list[str] = field(default_factory=list)  # --study NAME: phases/studies
    grid: list[str] = field(default_factory=list)  # this grid point's KEY=VALUE overrides (sweep/grid.py)

    @property
    def cfg(self) -> Config:
        return config_from_dict(self.raw, check_data=False)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "config_path": self.config_path, "config": self.raw, "seed": self.seed,
                "rewinds": self.rewinds, "studies": self.studies, "grid": self.grid}


@dataclass
class Job:
    name: str  # the artifact it makes, e.g. "dense-1a2b3c4d5e6f"
    step: str  # the artifact's kind (phases/stages.py), or study-report
    what: str  # for people: "dense A", "sparse k=5 lth"
    target: int  # index of the first target that needs it: its config makes the artifact
    args: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    epochs: int = 0  # training epochs this job will run (for the plan; 0 for matching and the like)
    consumers: list[int] = field(default_factory=list)  # targets whose run directories it updates

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "step": self.step, "what": self.what, "target": self.target,
                "args": self.args, "deps": self.deps, "epochs": self.epochs, "consumers": self.consumers}


@dataclass
class Plan:
    targets: list[Target]
    jobs: dict[str, Job]  # in an order where every job comes after its dependencies
    done: set[str]  # artifacts needed and already complete
    separate_epochs: int  # what launching each (config, seed) on its own would train, sharing nothing
    separate_phase1: int = 0  # of which dense training and IMP
    separate_jobs: int = 0  # jobs if each (config, seed) were planned on its own

    @property
    def total_epochs(self) -> int:
        return sum(j.epochs for j in self.jobs.values())


def target_artifacts(target: Target) -> list[Artifact]:
    """What ``target`` asks for: the main experiment's artifacts at its rewind points, then its studies'."""
    from phases.studies import get_study

    cfg = target.cfg
    arts = main_artifacts(cfg, target.seed, target.rewinds)
    for name in target.studies:
        arts += [n.artifact for n in get_study(name).needs(cfg, target.seed)]
    return arts


def _separate_cost(target: Target, cache: dict[str, int]) -> tuple[int, int, int]:
    """(epochs, of which dense and IMP, jobs) of ``target`` launched on its own with nothing shared."""
    cfg, seed = target.cfg, target.seed
    owner = mask_owner(cfg, seed)[0]  # under pruning.mask_from, dense A and IMP are the source config's
    rounds = len(imp_schedule(graph.imp(cfg, seed), cache))
    phase1 = owner.epochs + cfg.b_epochs + rounds * owner.pruning.train_epochs_per_prune
    runs = len(graph.sparse_runs(cfg))
    epochs = phase1 + runs * sum(cfg.total_sparse_epochs - k for k in target.rewinds)
    memo: dict[str, Any] = {"prunable": cache}
    for name in target.studies:  # a study's training, planned on its own
        from phases.studies import get_study

        for art in closure(n.artifact for n in get_study(name).needs(cfg, seed)).values():
            estimate = stage_of(art).plan_epochs
            if estimate is not None and art.kind != "dense" and not art.complete:
                epochs += estimate(art, [], memo)
    return epochs, phase1, len(graph.run_artifacts(cfg, seed, sorted(target.rewinds)))


def build_plan(targets: list[Target]) -> Plan:
    """One job per artifact to make (or dense checkpoints to add), after the jobs of its parents."""
    arts: dict[str, Artifact] = {}
    users: dict[str, list[int]] = {}  # artifact -> targets whose run directories it updates
    whats: dict[str, str] = {}  # a study's own artifacts, for people: "ensemble: member 2 naive k=1"
    wanted: dict[str, set[int]] = {}  # dense artifact -> checkpoints (epochs) its consumers read
    cache: dict[str, int] = {}
    separate = separate_phase1 = separate_jobs = 0
    for t, target in enumerate(targets):
        asked = target_artifacts(target)
        for name, art in closure(asked).items():
            arts.setdefault(name, art)
            users.setdefault(name, []).append(t)
        consumers = asked + [a for s in target.studies for a in _study_consumers(target, s)]
        for name, epochs in requested_checkpoints(consumers).items():
            wanted.setdefault(name, set()).update(epochs)
        cost = _separate_cost(target, cache)
        separate, separate_phase1, separate_jobs = separate + cost[0], separate_phase1 + cost[1], \
            separate_jobs + cost[2]
    jobs, done = _jobs(arts, users, wanted, {"prunable": cache})
    main = {n for t in targets for n in closure(main_artifacts(t.cfg, t.seed, t.rewinds))}
    for target in targets:
        whats.update(_study_whats(target, main | whats.keys()))
    for name, job in jobs.items():
        job.what = whats.get(name, job.what)
    for t, target in enumerate(targets):
        for name in target.studies:
            _plan_report(target, t, name, jobs)
    return Plan(targets=targets, jobs=_topological(jobs), done=done, separate_epochs=separate,
                separate_phase1=separate_phase1, separate_jobs=separate_jobs)


def _study_whats(target: Target, known: set[str]) -> dict[str, str]:
    """Names for people of the artifacts that only a study of ``target`` asks for (none of ``known``): the need's
    own line, or the stage's description, after the study's name."""
    from phases.studies import get_study

    out: dict[str, str] = {}
    for study in target.studies:
        needs = get_study(study).needs(target.cfg, target.seed)
        lines = {n.artifact.name: n.what for n in needs}
        for name, art in closure(n.artifact for n in needs).items():
            if name not in known and name not in out:
                out[name] = f"{study}: {lines.get(name) or describe(art)}"
    return out


def _study_consumers(target: Target, study: str) -> list[Artifact]:
    from phases.studies import get_study, study_consumers

    return study_consumers(get_study(study).needs(target.cfg, target.seed))


def _jobs(arts: dict[str, Artifact], users: dict[str, list[int]], wanted: dict[str, set[int]],
          memo: dict[str, Any]) -> tuple[dict[str, Job], set[str]]:
    """The jobs: every incomplete artifact (but those made by their child's job) and every dense one lacking
    a checkpoint; each depends on the jobs of its nearest ancestors that are jobs."""
    jobs: dict[str, Job] = {}
    done: set[str] = set()
    for name, art in arts.items():  # parents before children
        stage = stage_of(art)
        if stage.made_by_child:
            continue
        checkpoints = sorted(wanted.get(name, ())) if stage.keeps_checkpoints else []
        missing = sorted(set(checkpoints) - set(saved_epochs(art))) if art.complete else []
        if art.complete and not missing:
            done.add(name)
            continue
        what = describe(art) + (f" (add checkpoints {missing})" if missing else "")
        args = {"checkpoints": checkpoints} if stage.keeps_checkpoints else {}
        args.update(stage.plan_args(art) if stage.plan_args is not None else {})
        jobs[name] = Job(name, art.kind, what, users[name][0], args, consumers=list(users[name]))
    for name, job in jobs.items():
        job.deps = sorted(_nearest_jobs(arts[name], jobs))
    _serialise(jobs, arts)
    for name in sorted(jobs, key=lambda n: _serial_order(arts[n])):
        estimate = stage_of(arts[name]).plan_epochs
        missing = sorted(set(jobs[name].args.get("checkpoints", [])) - set(saved_epochs(arts[name])))
        jobs[name].epochs = estimate(arts[name], missing, memo) if estimate is not None else 0
    return jobs, done


def _nearest_jobs(art: Artifact, jobs: dict[str, Job]) -> set[str]:
    """The jobs among ``art``'s parents, looking through parents that no job makes and are not complete."""
    out: set[str] = set()
    for parent in art.parents.values():
        if parent.name in jobs:
            out.add(parent.name)
        elif not parent.complete:
            out |= _nearest_jobs(parent, jobs)
    return out


def _serial_order(art: Artifact) -> tuple:
    serial = stage_of(art).serial
    return ("",) if serial is None else serial(art)


def _serialise(jobs: dict[str, Job], arts: dict[str, Artifact]) -> None:
    """Jobs of one serial group (IMP targets sharing a round chain) run one after another, in the stage's order,
    so that each trains only the rounds the previous one did not."""
    groups: dict[str, list[tuple[Any, str]]] = {}
    for name in jobs:
        serial = stage_of(arts[name]).serial
        if serial is not None:
            group, order = serial(arts[name])
            groups.setdefault(group, []).append((order, name))
    for entries in groups.values():
        ordered = [name for _, name in sorted(entries)]
        for before, after in zip(ordered, ordered[1:], strict=False):
            jobs[after].deps.append(before)


def report_job_name(target: Target, study: str) -> str:
    """The name of the job that writes ``study``'s report for ``target`` (it makes no artifact)."""
    from phases.identity import config_hash
    from utils.hashing import stable_hash

    return f"report-{stable_hash([study, target.label, config_hash(target.cfg), target.seed], 12)}"


def _plan_report(target: Target, t: int, name: str, jobs: dict[str, Job]) -> None:
    """The job writing study ``name``'s report for ``target``, after the jobs of its artifacts (none when its
    artifacts and report exist)."""
    from phases.run_dir import existing_run_dir
    from phases.studies import get_study

    cfg, seed = target.cfg, target.seed
    planned = sorted(closure(n.artifact for n in get_study(name).needs(cfg, seed)).keys() & jobs.keys())
    report = existing_run_dir(Path(cfg.save_path), target.label, cfg, seed) / "studies" / f"{name}.json"
    if planned or not report.exists():
        job_name = report_job_name(target, name)
        job = jobs.setdefault(job_name, Job(job_name, "study-report", f"{name}: report", t, {"study": name}))
        job.deps = sorted(set(job.deps) | set(planned))
        if t not in job.consumers:
            job.consumers.append(t)


def _topological(jobs: dict[str, Job]) -> dict[str, Job]:
    out: dict[str, Job] = {}

    def visit(name: str) -> None:
        if name in out:
            return
        for dep in jobs[name].deps:
            visit(dep)
        out[name] = jobs[name]

    for name in jobs:
        visit(name)
    return out


def format_plan(plan: Plan) -> str:
    """The plan as people read it: one line per job, its dependencies and epochs, then the totals."""
    index = {name: i for i, name in enumerate(plan.jobs)}
    lines = [f"{'#':>4}  {'job':<34} {'artifact':<22} {'epochs':>7}  {'after':<16} configs"]
    for name, job in plan.jobs.items():
        after = ",".join(str(index[d]) for d in job.deps) or "-"
        configs = ", ".join(f"{plan.targets[t].label}/seed_{plan.targets[t].seed}" for t in job.consumers[:2])
        if len(job.consumers) > 2:
            configs += f" +{len(job.consumers) - 2}"
        lines.append(f"{index[name]:>4}  {job.what:<34} {name:<22} {job.epochs:>7}  {after:<16} {configs}")
    lines.append("")
    lines.append(f"{len(plan.jobs)} jobs for {len(plan.targets)} (config, seed) pairs ({plan.separate_jobs} if each "
                 f"were planned on its own); {len(plan.done)} needed artifacts already complete")
    ratio = f" ({plan.separate_epochs / plan.total_epochs:.2f}x)" if plan.total_epochs else ""
    lines.append(f"training epochs: {plan.total_epochs} in this plan; {plan.separate_epochs} when each (config, seed) "
                 f"is launched separately with nothing shared{ratio}")
    phase1 = sum(j.epochs for j in plan.jobs.values() if j.step in PHASE1_TRAINING)
    ratio1 = f" ({plan.separate_phase1 / phase1:.2f}x)" if phase1 else ""
    lines.append(f"  of which dense training and IMP: {phase1} here, {plan.separate_phase1} separately{ratio1}; "
                 f"sparse runs: {plan.total_epochs - phase1} here, {plan.separate_epochs - plan.separate_phase1} "
                 "separately")
    return "\n".join(lines)

"""Plan a study: configs x seeds x rewind points -> a graph of jobs, one per artifact to make.

Every (config, seed) expands into the artifacts it needs (``phases/graph.py``).
Artifacts are named by their key, so the same artifact needed by several
configs (dense A and B for the four sparsities of a width, the permutation,
IMP rounds) is one job; complete artifacts are dropped. A job depends on the
jobs that make its parents, so everything independent (e.g. all sparse runs
of all rewind points) can run at once. IMP targets that share a round chain
run one after another, smallest target first, so that each trains only the
rounds the previous one did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phases import graph
from phases.dense import epochs_needed_for, saved_epochs
from phases.imp_step import round_file
from phases.mask_source import mask_owner
from pruning.imp import PruningStalled, planned_schedule
from utils.artifacts import Artifact
from utils.config import Config, config_from_dict


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
    step: str  # dense | imp | perm | pmask | interp | sparse
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


def _count_prunable(cfg: Config, cache: dict[str, int]) -> int:
    from models import build_model, model_settings  # building models is the slow part of planning: only when needed

    # The architecture as the artifact keys name it (the registry knows which fields each model reads).
    key = repr((model_settings(cfg), cfg.dataset, cfg.prune_exclude))
    if key not in cache:
        model = build_model(cfg)
        cache[key] = sum(model.get_parameter(n).numel() for n in model.prunable_parameters())
    return cache[key]


def imp_schedule(cfg: Config, cache: dict[str, int]) -> list[float]:
    """The amounts of every IMP round of this config, exactly as IMP will compute them."""
    p = cfg.pruning
    try:
        return [a for a, _ in planned_schedule(_count_prunable(cfg, cache), p.sparsity, p.prune_perc,
                                               p.tolerance_for(cfg.model_type), p.prune_epochs)]
    except PruningStalled:
        return []  # the IMP job itself will stop with the error that explains it


def build_plan(targets: list[Target]) -> Plan:
    jobs: dict[str, Job] = {}
    done: set[str] = set()
    dense_needs: dict[str, set[int]] = {}
    chain_targets: dict[str, list[tuple[float, str]]] = {}  # chain -> (sparsity, imp job) to order
    rounds_to_train: dict[str, set[tuple[float, ...]]] = {}  # chain -> rounds (amount prefixes) to train
    cache: dict[str, int] = {}
    separate = separate_phase1 = separate_jobs = 0

    def need(art: Artifact, t: int, step: str, what: str, args: dict[str, Any], deps: list[str],
             epochs: int = 0) -> str | None:
        """Register the job that makes ``art`` (once), or None when it is complete."""
        if art.complete:
            done.add(art.name)
            return None
        job = jobs.get(art.name)
        if job is None:
            job = jobs[art.name] = Job(art.name, step, what, t, args, [d for d in deps if d], epochs)
        if t not in job.consumers:
            job.consumers.append(t)
        return art.name

    for t, target in enumerate(targets):
        cfg, seed = target.cfg, target.seed
        rewinds = set(target.rewinds)
        runs = graph.sparse_runs(cfg)
        owner = mask_owner(cfg, seed)[0]  # under pruning.mask_from, dense A and IMP are the source config's
        imp_amounts = imp_schedule(owner, cache)
        p = owner.pruning
        separate_jobs += len(graph.run_artifacts(cfg, seed, sorted(rewinds)))
        phase1 = owner.epochs + cfg.b_epochs + len(imp_amounts) * p.train_epochs_per_prune
        separate_phase1 += phase1
        separate += phase1 + len(runs) * sum(cfg.total_sparse_epochs - k for k in rewinds)

        dense_jobs = {}
        for role in ("A", "B"):
            art = graph.dense(cfg, seed, role)
            epochs_needed = set(epochs_needed_for(cfg, role, rewinds))  # rewind points as epochs, by convention
            dense_needs.setdefault(art.name, set()).update(epochs_needed)
            missing = sorted(dense_needs[art.name] - set(saved_epochs(art))) if art.complete else []
            if art.complete and not missing:
                done.add(art.name)
                dense_jobs[role] = None
                continue
            job = jobs.get(art.name)
            if job is None:
                job = jobs[art.name] = Job(art.name, "dense", f"dense {role}", t, {"role": role}, [])
            if t not in job.consumers:
                job.consumers.append(t)
            job.args["epochs_needed"] = sorted(dense_needs[art.name])
            total = owner.epochs if role == "A" else cfg.b_epochs
            job.epochs = max(missing) if art.complete else total
            job.what = f"dense {role}" + (f" (add checkpoints {missing})" if art.complete else "")
            dense_jobs[role] = art.name

        imp_art = graph.imp(cfg, seed)
        imp_job = need(imp_art, t, "imp", f"IMP to {100 * p.sparsity:g}%", {}, [dense_jobs["A"]])
        if imp_job and imp_job in jobs and jobs[imp_job].target == t:
            chain = imp_art.parents["chain"]
            chain_targets.setdefault(chain.name, []).append((p.sparsity, imp_job))
            todo = rounds_to_train.setdefault(chain.name, set())
            new = 0
            for r in range(1, len(imp_amounts) + 1):
                prefix = tuple(imp_amounts[:r])
                if prefix not in todo and not chain.path(round_file(r, list(prefix))).exists():
                    todo.add(prefix)
                    new += 1
            jobs[imp_job].epochs = new * p.train_epochs_per_prune
        perm = need(graph.permutation(cfg, seed), t, "perm", "permutation", {}, [dense_jobs["A"], dense_jobs["B"]])
        need(graph.interpolation(cfg, seed), t, "interp", "interpolation", {},
             [dense_jobs["A"], dense_jobs["B"], perm])
        # Phase 1 always makes pi(M_A) (cheap; its accuracy is a check of pi), so the sweep does too.
        pmask = need(graph.permuted_mask(cfg, seed), t, "pmask", "permuted mask", {}, [perm, imp_job])
        for k in sorted(rewinds):
            for run in runs:
                role, mask = graph.SOURCES[run]
                mask_job = pmask if mask == "permuted_mask" else imp_job
                need(graph.sparse(cfg, seed, k, run), t, "sparse", f"sparse k={k} {run}", {"k": k, "run": run},
                     [dense_jobs[role], mask_job], epochs=cfg.total_sparse_epochs - k)

    # Studies after every target's main jobs, so a study's need that is also a main job (a dense B of another
    # seed, a main sparse run) is that job, whichever target asks first.
    for t, target in enumerate(targets):
        for name in target.studies:
            separate += _plan_study(target, t, name, jobs, need)
    # IMP targets sharing a chain: smallest first, each after the previous.
    for entries in chain_targets.values():
        ordered = [name for _, name in sorted(entries)]
        for before, after in zip(ordered, ordered[1:], strict=False):
            jobs[after].deps.append(before)
    return Plan(targets=targets, jobs=_topological(jobs), done=done, separate_epochs=separate,
                separate_phase1=separate_phase1, separate_jobs=separate_jobs)


def report_job_name(target: Target, study: str) -> str:
    """The name of the job that writes ``study``'s report for ``target`` (it makes no artifact)."""
    from phases.keys import config_hash
    from utils.hashing import stable_hash

    return f"report-{stable_hash([study, target.label, config_hash(target.cfg), target.seed], 12)}"


def _plan_study(target: Target, t: int, name: str, jobs: dict[str, Job], need) -> int:
    """Add the jobs of study ``name`` for ``target``: one per need, then its report; returns the needs' epochs.

    A need is a job like any other (skipped when its artifact is complete, shared
    when another target or the main plan needs the same artifact); a dense need
    that is already a job adds its checkpoints to that job's.
    """
    from phases.context import run_dir_name
    from phases.studies import get_study

    cfg, seed = target.cfg, target.seed
    needs = get_study(name).needs(cfg, seed)
    planned: list[str] = []
    for n in needs:
        deps = [d.name if d.name in jobs else None for d in n.deps]
        existing = jobs.get(n.artifact.name)
        if existing is not None and "epochs_needed" in existing.args and "epochs_needed" in n.args:
            existing.args["epochs_needed"] = sorted({*existing.args["epochs_needed"], *n.args["epochs_needed"]})
        job = need(n.artifact, t, "study", f"{name}: {n.what}", {"study": name, "step": n.step, **n.args}, deps,
                   epochs=n.epochs)
        if job:
            planned.append(job)
    report = Path(cfg.save_path) / run_dir_name(target.label, cfg) / f"seed_{seed}" / "studies" / f"{name}.json"
    if planned or not report.exists():
        job_name = report_job_name(target, name)
        job = jobs.setdefault(job_name, Job(job_name, "study-report", f"{name}: report", t, {"study": name}))
        job.deps = sorted(set(job.deps) | set(planned))
        if t not in job.consumers:
            job.consumers.append(t)
    return sum(n.epochs for n in needs)


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
    phase1 = sum(j.epochs for j in plan.jobs.values() if j.step in ("dense", "imp"))
    ratio1 = f" ({plan.separate_phase1 / phase1:.2f}x)" if phase1 else ""
    lines.append(f"  of which dense training and IMP: {phase1} here, {plan.separate_phase1} separately{ratio1}; "
                 f"sparse runs: {plan.total_epochs - phase1} here, {plan.separate_epochs - plan.separate_phase1} "
                 "separately")
    return "\n".join(lines)

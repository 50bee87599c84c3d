"""``--pack rewind|seed|none``: fewer, bigger Slurm jobs, each running several of the plan's jobs in a row.

A pack is a grouping of the plan's nodes, never another plan: the jobs, their
artifacts and their dependencies are the plan's (``sweep/plan.py``), and a
pack depends on the packs holding its members' dependencies. Every member is
still its own artifact with its own lock and record entry, so resuming,
requeueing and ``status`` work per artifact as before; a requeued pack skips
the members it finished.

    none    one Slurm job per artifact (the default)
    rewind  the sparse runs of one (config, seed) at one rewind point in one job
    seed    per (config, seed): its permuted mask and all its sparse runs in one job,
            and the permutation with the interpolation in another; dense models, IMP
            and studies keep a job each (long, and shared or needed early)

Grouping can never join jobs into a cycle (a pack waiting for itself through
another pack): packs that would are split back into single jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import submitit

from sweep.plan import Job, Plan

PACKINGS = ("none", "rewind", "seed")

# mode -> step -> the key that puts jobs of that step into one pack (with the maker target's index)
_KEYS: dict[str, dict[str, Callable[[Job], Any]]] = {
    "none": {},
    "rewind": {"sparse": lambda job: ("sparse", job.args["k"])},
    "seed": {"perm": lambda job: "matching", "interp": lambda job: "matching",
             "pmask": lambda job: "sparse", "sparse": lambda job: "sparse"},
}


@dataclass
class Pack:
    name: str  # the first member's name, or "pack-<first member>" for a pack of several
    members: list[str]  # plan job names, in the plan's (dependency) order
    deps: list[str] = field(default_factory=list)  # names of the packs it waits for

    @property
    def single(self) -> bool:
        return len(self.members) == 1


def pack_plan(plan: Plan, mode: str) -> dict[str, Pack]:
    """The plan's jobs grouped by ``mode``, as packs in an order where every pack comes after its dependencies."""
    keys = _KEYS[mode]
    group_of: dict[str, Any] = {}
    for name, job in plan.jobs.items():
        key = keys.get(job.step)
        group_of[name] = (job.target, key(job)) if key else name
    while True:
        packs = _packs(plan, group_of)
        order = _topological(packs)
        if order is not None:
            return order
        # A cycle: split every multi-member pack on it back into single jobs, then try again.
        for pack in _on_cycles(packs):
            for member in pack.members:
                group_of[member] = member


def _packs(plan: Plan, group_of: dict[str, Any]) -> dict[str, Pack]:
    by_group: dict[Any, list[str]] = {}
    for name in plan.jobs:
        by_group.setdefault(group_of[name], []).append(name)
    pack_of: dict[str, str] = {}
    packs: dict[str, Pack] = {}
    for members in by_group.values():
        name = members[0] if len(members) == 1 else f"pack-{members[0]}"
        packs[name] = Pack(name, members)
        pack_of.update({m: name for m in members})
    for pack in packs.values():
        deps = {pack_of[d] for m in pack.members for d in plan.jobs[m].deps}
        pack.deps = sorted(deps - {pack.name})
    return packs


def _topological(packs: dict[str, Pack]) -> dict[str, Pack] | None:
    """Kahn's order of the packs (stable), or None when they have a cycle."""
    waiting = {name: set(p.deps) for name, p in packs.items()}
    order: dict[str, Pack] = {}
    while waiting:
        ready = [n for n, deps in waiting.items() if not deps]
        if not ready:
            return None
        for name in ready:
            order[name] = packs[name]
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(ready)
    return order


def _on_cycles(packs: dict[str, Pack]) -> list[Pack]:
    """Multi-member packs that are part of a cycle (those left once every pack that can be ordered is removed)."""
    waiting = {name: set(p.deps) for name, p in packs.items()}
    changed = True
    while changed:
        changed = False
        for name in [n for n, deps in waiting.items() if not deps]:
            del waiting[name]
            for deps in waiting.values():
                deps.discard(name)
            changed = True
    multi = [packs[n] for n in waiting if not packs[n].single]
    if not multi:  # single jobs in a cycle: the plan itself has one, which build_plan never makes
        raise RuntimeError(f"the sweep plan has a dependency cycle through {sorted(waiting)}")
    return multi


def describe(pack: Pack, plan: Plan) -> str:
    """For people: ``dense A`` for a single job, ``3 jobs: sparse k=5 lth, ...`` for a pack."""
    whats = [plan.jobs[m].what for m in pack.members]
    return whats[0] if pack.single else f"{len(whats)} jobs: {', '.join(whats[:2])}{', ...' if len(whats) > 2 else ''}"


class PackJob(submitit.helpers.Checkpointable):
    """One Slurm job running its members' jobs in order; requeued on a time limit, it skips the finished ones."""

    def __init__(self, specs: list[dict[str, Any]]):
        self.specs = specs

    def __call__(self) -> list[dict[str, Any]]:
        from sweep.job import StepJob

        return [StepJob(spec)() for spec in self.specs]  # each artifact already complete is reused at once

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        print(f"[sweep] pack of {len(self.specs)} jobs: time limit or preemption, requeueing", flush=True)
        return submitit.helpers.DelayedSubmission(PackJob(self.specs))

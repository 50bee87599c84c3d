"""``--pack``: the plan's jobs grouped into fewer Slurm jobs, dependencies kept (the paper grid; a real Slurm run
of a packed sweep is in test_sweep.py, beside the unpacked one)."""

from __future__ import annotations

from collections import Counter

from sweep.pack import pack_plan
from sweep.plan import Job, Plan
from tests.test_sweep_plan_edges import paper_plan


def check_packing(plan: Plan, mode: str) -> dict:
    """Every job in exactly one pack; a job's dependency is earlier in its own pack or in a pack it waits for."""
    packs = pack_plan(plan, mode)
    pack_of = {m: name for name, p in packs.items() for m in p.members}
    assert Counter(m for p in packs.values() for m in p.members) == Counter(list(plan.jobs))  # each job once
    seen: set[str] = set()
    for name, pack in packs.items():  # packs in dependency order
        assert set(pack.deps) <= seen
        for i, member in enumerate(pack.members):
            for dep in plan.jobs[member].deps:
                assert dep in pack.members[:i] or pack_of[dep] in pack.deps
        seen.add(name)
    return packs


def test_packs_of_the_paper_grid_keep_every_dependency(tmp_path):
    plan = paper_plan(tmp_path / "runs")  # width 1, four sparsities, seeds 0 and 1, with the ensemble study
    sizes = {mode: len(check_packing(plan, mode)) for mode in ("none", "rewind", "seed")}
    assert sizes["none"] == len(plan.jobs) > sizes["rewind"] > sizes["seed"]
    sparse = [j for j in plan.jobs.values() if j.step == "sparse"]
    by_point = Counter((j.target, j.args["k"]) for j in sparse)
    assert sizes["rewind"] == len(plan.jobs) - len(sparse) + len(by_point)
    seed_packs = pack_plan(plan, "seed")
    for pack in seed_packs.values():  # one (config, seed)'s matching or sparse stage, never a dense or IMP job
        steps = {plan.jobs[m].step for m in pack.members}
        targets = {plan.jobs[m].target for m in pack.members}
        assert len(targets) == 1 and (pack.single or steps <= {"perm", "interp"} or steps <= {"pmask", "sparse"})


def test_a_grouping_that_would_wait_for_itself_is_split():
    # a and c would share a pack ("rewind": same target and k), but c needs b, which needs a: a cycle of packs.
    jobs = {"a": Job("a", "sparse", "a", 0, {"k": 1, "run": "lth"}),
            "b": Job("b", "study", "b", 0, {}, deps=["a"]),
            "c": Job("c", "sparse", "c", 0, {"k": 1, "run": "naive"}, deps=["b"]),
            "d": Job("d", "sparse", "d", 1, {"k": 1, "run": "lth"}),
            "e": Job("e", "sparse", "e", 1, {"k": 1, "run": "naive"}, deps=["d"])}
    plan = Plan(targets=[], jobs=jobs, done=set(), separate_epochs=0)
    packs = check_packing(plan, "rewind")
    assert sorted(p.members for p in packs.values()) == [["a"], ["b"], ["c"], ["d", "e"]]

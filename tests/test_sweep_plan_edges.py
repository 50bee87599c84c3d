"""The sweep plan's dependencies are the artifacts' parents: no second list of edges to drift from the keys.

Built for the paper's CIFAR-10 grid (one width, its four sparsities, two seeds)
with the ensemble study, from the configs as ``python -m sweep`` reads them.
A job that lost a dependency (the permuted mask without IMP) would start
before its parent is made: only a timing race in a parallel sweep shows that
otherwise.
"""

from __future__ import annotations

from pathlib import Path

from phases import graph
from phases.studies import get_study
from sweep.cli import build_parser, expand_configs
from sweep.plan import Plan, build_plan
from sweep.targets import make_targets
from utils.artifacts import Artifact

REPO = Path(__file__).resolve().parent.parent


def paper_plan(save: Path, study: str = "ensemble") -> Plan:
    args = build_parser().parse_args([str(REPO / "configs" / "config_1_*.yaml"), "-seeds", "0,1", "--study", study,
                                      "-save_path", str(save)])
    targets, _ = make_targets(expand_configs(args.configs), [0, 1], args)
    for t in targets:
        t.studies = [study]
    return build_plan(targets)


def every_artifact(plan: Plan) -> dict[str, Artifact]:
    """Every artifact the targets use (main, studies' and all their ancestors), by name."""
    out: dict[str, Artifact] = {}

    def visit(art: Artifact) -> None:
        if art.name not in out:
            out[art.name] = art
            for parent in art.parents.values():
                visit(parent)

    for t in plan.targets:
        cfg = t.cfg
        for art in graph.run_artifacts(cfg, t.seed, t.rewinds).values():
            visit(art)
        for study in t.studies:
            for need in get_study(study).needs(cfg, t.seed):
                visit(need.artifact)
    return out


def nearest_jobs(art: Artifact, plan: Plan) -> set[str]:
    """The jobs among ``art``'s ancestors reached through parents that no job makes and are not complete
    (the IMP round chain, which its IMP target's job extends)."""
    out: set[str] = set()
    for parent in art.parents.values():
        if parent.name in plan.jobs:
            out.add(parent.name)
        elif not parent.complete:
            out |= nearest_jobs(parent, plan)
    return out


def check_edges(plan: Plan) -> None:
    arts = every_artifact(plan)
    order = list(plan.jobs)
    for name, job in plan.jobs.items():
        assert all(order.index(d) < order.index(name) for d in job.deps), f"{job.what}: after its dependencies"
        if job.step == "study-report":
            continue
        expected = nearest_jobs(arts[name], plan)
        extra = set(job.deps) - expected
        assert expected <= set(job.deps), f"{job.what} ({name}) lacks dependencies {expected - set(job.deps)}"
        # The one edge that is not a parent: IMP targets sharing a round chain run smallest first.
        for dep in extra:
            assert arts[dep].kind == arts[name].kind == "imp", f"{job.what} ({name}) depends on {dep}: no parent"
            assert arts[dep].parents["chain"].name == arts[name].parents["chain"].name
            assert arts[dep].settings["sparsity"] < arts[name].settings["sparsity"]


def test_plan_dependencies_equal_the_artifacts_parents(tmp_path):
    plan = paper_plan(tmp_path / "runs")
    arts = every_artifact(plan)
    assert {arts[n].kind for n in plan.jobs if n in arts} == {"dense", "imp", "perm", "pmask", "interp", "sparse"}
    check_edges(plan)
    # Every artifact the targets use is a job (nothing is complete yet), but the round chain its IMP job extends.
    assert {n for n, a in arts.items() if a.kind != "impchain"} == \
        {n for n, j in plan.jobs.items() if j.step != "study-report"}


def test_the_permuted_mask_job_depends_on_imp_and_the_permutation(tmp_path):
    plan = paper_plan(tmp_path / "runs")
    arts = every_artifact(plan)
    pmasks = [n for n in plan.jobs if arts.get(n) is not None and arts[n].kind == "pmask"]
    assert pmasks
    for name in pmasks:
        assert set(plan.jobs[name].deps) == {arts[name].parents["imp"].name, arts[name].parents["perm"].name}

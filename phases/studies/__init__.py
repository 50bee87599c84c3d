"""The paper's further studies: more artifacts in the same graph, never a second pipeline (DESIGN §6).

A study says which artifacts it needs made (``Need``: the artifact, the step of
the study that makes it, and the artifacts that must be complete first), and
how to report on them once they are. ``experiment.py --study NAME`` makes the
needs in order, in this process; ``python -m sweep ... --study NAME`` plans one
job per need (``sweep/plan.py``) and one report job after them. Both skip a
need whose artifact is complete, so a study reuses every artifact the main
experiment (or another study) already made.

Each study is a module ``phases/studies/<name>.py`` that calls ``register`` at
import, under the module's name; its settings are the config section ``studies.<name>``. Its report goes
through ``write_report``: ``run_dir/studies/<name>.json`` holds ``rows`` (flat
dicts) and ``key`` (the columns that name a row, e.g. ``["group"]``); every
other numeric column is what ``python -m analysis.table SAVE_PATH --study NAME``
averages over seeds (mean ± std per config and key).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from phases.context import RunContext
from tracking import log_table
from utils.artifacts import Artifact
from utils.config import Config, ConfigError
from utils.errors import UserError


@dataclass
class Need:
    """One artifact a study needs made."""

    artifact: Artifact  # from phases.graph or the study's own graph functions
    step: str  # a key of the study's STEPS
    what: str  # for people, e.g. "ensemble member 2 naive"
    args: dict[str, Any]  # JSON-able, passed to the step function
    deps: list[Artifact] = field(default_factory=list)  # complete first (phase-1 ones too, e.g. dense A)
    epochs: int = 0  # training epochs (for the sweep's plan)


class Study(Protocol):
    name: str
    STEPS: dict[str, Callable[[RunContext, dict[str, Any]], Artifact]]  # step -> ensure function (make_once)

    def needs(self, cfg: Config, seed: int) -> list[Need]:
        """Every artifact of the study for (cfg, seed), dependencies first."""
        ...

    def report(self, ctx: RunContext) -> Path:
        """Reads the finished artifacts; writes run_dir/studies/<name>.json, .csv and .txt; returns the json."""
        ...


STUDIES: dict[str, Study] = {}


@dataclass(frozen=True)
class ModuleStudy:
    """A study made of a module's functions: what each study module registers."""

    name: str
    STEPS: dict[str, Callable[[RunContext, dict[str, Any]], Artifact]]
    needs_of: Callable[[Config, int], list[Need]]
    report_of: Callable[[RunContext], Path]

    def needs(self, cfg: Config, seed: int) -> list[Need]:
        return self.needs_of(cfg, seed)

    def report(self, ctx: RunContext) -> Path:
        return self.report_of(ctx)


def register(study: Study) -> Study:
    STUDIES[study.name] = study
    return study


def study_names() -> list[str]:
    """The studies there are: the modules of this package (a study registers under its module's name)."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def get_study(name: str) -> Study:
    """The study ``name``, importing only its own module (one study's import cannot break another's)."""
    if name not in STUDIES and name in study_names():
        importlib.import_module(f"{__name__}.{name}")
    if name not in STUDIES:
        raise UserError(f"--study: unknown study {name!r}; choose one of {', '.join(study_names()) or 'none'}")
    return STUDIES[name]


def study_settings(cfg: Config, name: str, default: Callable[[], Any] | None = None) -> Any:
    """``cfg.studies.<name>``; its defaults when the section is absent and ``default`` is given, else one line."""
    section = getattr(cfg.studies, name, None)
    if section is not None:
        return section
    if default is None:
        raise ConfigError(f"studies.{name}: the study needs this config section (see docs/studies.md)")
    return default()


def study_dir(ctx: RunContext) -> Path:
    """run_dir/studies: where reports go."""
    path = ctx.run_dir / "studies"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_report(ctx: RunContext, name: str, rows: list[dict[str, Any]], key: list[str], text: str,
                 extra: dict[str, Any] | None = None) -> Path:
    """run_dir/studies/<name>.json (rows, key, extra), <name>.csv (the rows) and <name>.txt (the table as printed).

    ``text`` is the table in the paper's layout; the csv has one line per row, its
    columns in the first row's order (later rows' extra columns appended).
    """
    import csv
    import io

    from utils.atomic import atomic_write_json, atomic_write_text

    folder = study_dir(ctx)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / f"{name}.csv", out.getvalue())
    atomic_write_text(folder / f"{name}.txt", text if text.endswith("\n") else text + "\n")
    path = folder / f"{name}.json"
    atomic_write_json(path, {"study": name, "seed": ctx.seed, "key": key, "rows": rows, **(extra or {})})
    log_table(ctx, f"study_{name}", rows)  # to wandb / TensorBoard when the config tracks
    return path


def aligned_table(header: str, head: list[str], lines: list[list[str]]) -> str:
    """``header``, then ``head`` and ``lines`` as left-aligned columns two spaces apart (a study's printed table)."""
    widths = [max(len(row[c]) for row in [head, *lines]) for c in range(len(head))]
    out = [header] + ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                      for row in [head, *lines]]
    return "\n".join(out) + "\n"


def require_complete(ctx: RunContext, name: str, dirs: list[Path]) -> None:
    """A report needs its artifacts made: one line naming how many are missing and the command that makes them."""
    if dirs:
        rerun = ctx.command.replace("-pretrain True", f"--study {name}")
        raise UserError(f"study {name}: {len(dirs)} artifact(s) not made yet (e.g. {dirs[0]}); run: {rerun}")


def for_seed(ctx: RunContext, seed: int) -> RunContext:
    """The same run with another run seed (the data, loaded once, is shared: it does not depend on the seed).

    What the context derived from its seed (the mask owner's context) is derived again, not copied.
    """
    sub = replace(ctx, seed=seed, _owner=None)
    sub._data = ctx._data
    return sub


def main_makers(ctx: RunContext, rewinds: list[int]) -> dict[str, Callable[[], Artifact]]:
    """artifact name -> the main experiment's function that makes it, for this run seed."""
    from phases import graph
    from phases.dense import ensure_dense
    from phases.imp_step import ensure_imp
    from phases.match_step import ensure_interpolation, ensure_permutation, ensure_permuted_mask
    from phases.sparse_step import ensure_sparse

    cfg, seed = ctx.cfg, ctx.seed
    makers: dict[str, Callable[[], Artifact]] = {
        graph.dense(cfg, seed, "A").name: lambda: ensure_dense(ctx, "A"),
        graph.dense(cfg, seed, "B").name: lambda: ensure_dense(ctx, "B"),
        graph.imp(cfg, seed).name: lambda: ensure_imp(ctx),
        graph.permutation(cfg, seed).name: lambda: ensure_permutation(ctx),
        graph.permuted_mask(cfg, seed).name: lambda: ensure_permuted_mask(ctx),
        graph.interpolation(cfg, seed).name: lambda: ensure_interpolation(ctx),
    }
    for k in rewinds:
        for run in graph.SOURCES:
            makers[graph.sparse(cfg, seed, k, run).name] = lambda k=k, run=run: ensure_sparse(ctx, k, run)
    return makers


def run_need(ctx: RunContext, study: str, step: str, args: dict[str, Any]) -> Artifact:
    """One need, by its study and step (what a sweep job runs), after the main artifacts it depends on.

    The sweep plans a need after the jobs of its dependencies; a main artifact it
    did not plan (a sparse run at a rewind point the sweep left out) is made here.
    """
    s = get_study(study)
    if step not in s.STEPS:
        raise ValueError(f"study {study!r} has no step {step!r}")
    needs = s.needs(ctx.cfg, ctx.seed)
    for need in needs:
        if need.step == step and need.args == args:
            ensure_main_deps(ctx, study, need, needs)
    return s.STEPS[step](ctx, args)


def ensure_main_deps(ctx: RunContext, study: str, need: Need, needs: list[Need]) -> None:
    """Make the incomplete dependencies of ``need`` that no need of the study makes: main-experiment artifacts."""
    from phases.results import write_run_dir

    made = {n.artifact.name for n in needs}
    missing = incomplete_ancestry(need.deps, skip=made)
    if not missing:
        return
    ks = {n.args["k"] for n in needs if isinstance(n.args.get("k"), int)}  # a study's own rewind points
    makers = main_makers(ctx, sorted({*ctx.cfg.rewind_points, *ks}))
    direct = {d.name for d in need.deps}
    for dep in missing:
        if dep.name not in makers and dep.name not in direct:
            continue  # an ancestor its child's maker makes (the IMP round chain: ensure_imp)
        if dep.name not in makers:
            raise RuntimeError(f"study {study}: {need.what} depends on {dep.dir}, which nothing makes")
        makers[dep.name]()
        write_run_dir(ctx)


def incomplete_ancestry(deps: list[Artifact], skip: set[str]) -> list[Artifact]:
    """The incomplete artifacts among ``deps`` and their ancestors, parents before children.

    The main experiment's ``ensure_*`` functions make one artifact from complete
    parents (pi(M_A) does not make pi), so a study depending on pi(M_A) alone
    needs pi made first. Artifacts named in ``skip`` (the study's own needs) are
    left to the study, and their ancestry with them.
    """
    out: dict[str, Artifact] = {}

    def visit(art: Artifact) -> None:
        if art.name in out or art.name in skip or art.complete:
            return
        for parent in art.parents.values():
            visit(parent)
        out[art.name] = art

    for dep in deps:
        visit(dep)
    return list(out.values())


def run_study(ctx: RunContext, name: str) -> Path:
    """Make every need of study ``name`` for this (config, seed) that is not complete, then report on it.

    A dependency that no need makes is a main-experiment artifact: it is made
    first, as ``-pretrain True`` (or phase 2, for a sparse run) would.
    """
    from phases.results import write_run_dir

    study = get_study(name)
    needs = study.needs(ctx.cfg, ctx.seed)
    for need in needs:
        ensure_main_deps(ctx, name, need, needs)
        if not need.artifact.complete:
            print(f"[study {name}] {need.what}", flush=True)
        study.STEPS[need.step](ctx, need.args)
    write_run_dir(ctx)
    return report_study(ctx, name)


def report_study(ctx: RunContext, name: str) -> Path:
    """Write study ``name``'s report from its finished artifacts and print its table; returns the json path."""
    path = get_study(name).report(ctx)
    table = path.with_suffix(".txt")
    if table.exists():
        print(table.read_text(), end="")
    print(f"[study {name}] report in {path}")
    return path

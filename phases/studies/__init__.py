"""The paper's further studies: more artifacts in the same graph, never a second pipeline (DESIGN §6).

A study says which artifacts it needs made (``Need``: an artifact of the graph,
built by ``phases/graph.py``'s functions or the study's own, and a line for
people), and how to report on them once they are. Its artifacts are made by the
stage table (``phases/stages.py``) like any other, their ancestry first: a
study adds targets, and a study with a kind of its own registers its stage.
``experiment.py --study NAME`` makes them in this process; ``python -m sweep
... --study NAME`` plans one job per artifact (``sweep/plan.py``) and one
report job after them. Both skip a complete artifact, so a study reuses every
artifact the main experiment (or another study) already made.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from phases.context import RunContext
from tracking import log_table
from utils.artifacts import Artifact
from utils.config import Config, ConfigError
from utils.errors import UserError


@dataclass
class Need:
    """One artifact a study needs made (its parents, main-experiment ones too, are made first)."""

    artifact: Artifact  # from phases.graph or the study's own graph functions
    what: str  # for people, e.g. "ensemble member 2 naive"


class Study(Protocol):
    name: str

    def needs(self, cfg: Config, seed: int) -> list[Need]:
        """Every artifact of the study for (cfg, seed)."""
        ...

    def report(self, ctx: RunContext) -> Path:
        """Reads the finished artifacts; writes run_dir/studies/<name>.json, .csv and .txt; returns the json."""
        ...


STUDIES: dict[str, Study] = {}


@dataclass(frozen=True)
class ModuleStudy:
    """A study made of a module's functions: what each study module registers."""

    name: str
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


def study_consumers(needs: list[Need]) -> list[Artifact]:
    """The needs, and the main experiment of every (config, run seed) their graph comes from: a dense model a
    study trains keeps every checkpoint its own main experiment reads (an ensemble member seed's runs)."""
    from phases.stages import closure, main_artifacts

    origins = {}
    for art in closure(n.artifact for n in needs).values():
        if art.origin is not None:
            origins.setdefault((id(art.origin[0]), art.origin[1]), art.origin)
    return [n.artifact for n in needs] + [a for cfg, seed in origins.values() for a in main_artifacts(cfg, seed)]


def run_study(ctx: RunContext, name: str) -> Path:
    """Make every artifact study ``name`` needs for this (config, seed), with its missing ancestry, then report.

    An ancestor no need names is a main-experiment artifact: it is made first,
    as ``-pretrain True`` (or phase 2, for a sparse run) would.
    """
    from phases.results import write_run_dir
    from phases.stages import ensure

    needs = get_study(name).needs(ctx.cfg, ctx.seed)
    consumers = study_consumers(needs)
    for need in needs:
        if not need.artifact.complete:
            print(f"[study {name}] {need.what}", flush=True)
        ensure(ctx, [need.artifact], consumers=consumers)
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

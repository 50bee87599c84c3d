"""Imports go one way: down the floors, never round a circle.

Floors, lowest first (a module may import its own floor and the ones below, never one above):

    0 utils   1 data, tracking   2 matching, pruning, training   3 models   4 analysis
    5 phases   6 sweep   7 experiment.py

``matching`` also never imports ``training`` or ``models`` (it knows no model class and no training loop,
although ``training`` shares its floor), and ``models`` use only its spec type and spec derivation. No two
files import each other, through any chain. Every import counts: at the top, inside a function, under
``TYPE_CHECKING``. ``scripts/``, ``benchmarks/``, ``tests/`` and ``examples/`` (a user's plug-in model) stand
outside and may import anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"utils": 0, "data": 1, "tracking": 1, "matching": 2, "pruning": 2, "training": 2, "models": 3,
          "analysis": 4, "phases": 5, "sweep": 6, "experiment": 7}
OUTSIDE = {"scripts", "benchmarks", "tests", "examples", "docs", ".venv", "site"}
# Packages on one floor that still must not import each other: importer -> what it may not import.
FORBIDDEN = {"matching": {"training", "models"}}
# Of matching, models use the spec type and the model-agnostic spec derivation only (never an algorithm).
MODELS_MAY_USE = {"matching.spec", "matching.derive", "matching.derive_report"}


def _module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files(root: Path = ROOT) -> dict[str, Path]:
    """Every project module under the floors (module name -> its file, relative to ``root``)."""
    files = {}
    for path in sorted(p.relative_to(root) for p in root.rglob("*.py")):
        top = path.parts[0]
        if top in OUTSIDE or top.startswith("."):
            continue
        name = _module_name(path)
        if name.split(".")[0] in FLOORS:
            files[name] = path
    return files


def _imported(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> Iterator[str]:
    """The project modules one import statement loads (a ``from pkg import sub`` names the submodule)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: from the importer's package, one level up per extra dot
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in modules else base


def import_edges(files: dict[str, Path], root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(importer, line, imported) for every import of a project module by a project module."""
    modules = set(files)
    edges = []
    for module, path in files.items():
        tree = ast.parse((root / path).read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(node, module, path.name == "__init__.py", modules):
                while target and target not in modules:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != module and (module, node.lineno, target) not in edges:
                    edges.append((module, node.lineno, target))
    return edges


def _where(files: dict[str, Path], module: str, line: int) -> str:
    return f"{files[module].as_posix()}:{line}"


def floor_violations(files: dict[str, Path], edges: list[tuple[str, int, str]]) -> list[str]:
    problems = []
    for src, line, dst in edges:
        top_src, top_dst = src.split(".")[0], dst.split(".")[0]
        if FLOORS[top_dst] > FLOORS[top_src]:
            problems.append(f"{_where(files, src, line)}: {src} -> {dst} imports up a floor "
                            f"({top_src} is on floor {FLOORS[top_src]}, {top_dst} on floor {FLOORS[top_dst]})")
        elif top_dst in FORBIDDEN.get(top_src, ()):
            problems.append(f"{_where(files, src, line)}: {src} -> {dst}: {top_src} never imports {top_dst}")
        elif top_src == "models" and top_dst == "matching" and dst not in MODELS_MAY_USE:
            problems.append(f"{_where(files, src, line)}: {src} -> {dst}: models use only "
                            f"{', '.join(sorted(MODELS_MAY_USE))} of matching")
    return problems


def cycles(edges: list[tuple[str, int, str]]) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan's algorithm, iterative)."""
    graph: dict[str, set[str]] = {}
    for src, _, dst in edges:
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def cycle_messages(files: dict[str, Path], edges: list[tuple[str, int, str]]) -> list[str]:
    problems = []
    for component in cycles(edges):
        inside = set(component)
        arrows = [f"{_where(files, s, line)}: {s} -> {d}" for s, line, d in edges if s in inside and d in inside]
        problems.append(f"import circle between {', '.join(component)}: " + "; ".join(arrows))
    return problems


@pytest.fixture(scope="module")
def scanned() -> tuple[dict[str, Path], list[tuple[str, int, str]]]:
    files = project_files()
    return files, import_edges(files)


def test_the_scan_sees_the_project(scanned: tuple[dict[str, Path], list[tuple[str, int, str]]]) -> None:
    files, edges = scanned
    # Every floor's package is found, and imports of each kind are (experiment.py's are inside its main):
    # a rename would otherwise pass by seeing nothing.
    assert {m.split(".")[0] for m in files} == set(FLOORS)
    pairs = {(s, d) for s, _, d in edges}
    assert ("experiment", "phases.runner") in pairs and ("utils.config", "utils.errors") in pairs


def test_no_import_goes_up_a_floor(scanned: tuple[dict[str, Path], list[tuple[str, int, str]]]) -> None:
    problems = floor_violations(*scanned)
    assert not problems, "imports against the floors:\n" + "\n".join(problems)


def test_no_import_circle(scanned: tuple[dict[str, Path], list[tuple[str, int, str]]]) -> None:
    problems = cycle_messages(*scanned)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_must(tmp_path: Path) -> None:
    """Each kind of wrong import is reported, with its file, line and arrow (function-local and relative ones too).

    The made-up tree reuses the project's file names, so the paths in the messages name real files.
    """
    source = {
        "utils.config": "def f():\n    from models.registry import x\n",
        "models.registry": "import utils.config\nfrom matching import spec, weight_matching\n",
        "matching.weight_matching": "",
        "matching.spec": "from training import loop\n",
        "training.loop": "",
        "data": "from . import info\n",
        "data.info": "if True:\n    from data import f\n",
    }
    for name, text in source.items():
        path = tmp_path / (name.replace(".", "/") + ("/__init__.py" if name == "data" else ".py"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    files = project_files(tmp_path)
    assert set(files) == set(source)
    edges = import_edges(files, tmp_path)
    floors = floor_violations(files, edges)
    circles = cycle_messages(files, edges)
    assert ("data", 1, "data.info") in edges
    assert sorted(floors) == [
        "matching/spec.py:1: matching.spec -> training.loop: matching never imports training",
        "models/registry.py:2: models.registry -> matching.weight_matching: models use only matching.derive, "
        "matching.derive_report, matching.spec of matching",
        "utils/config.py:2: utils.config -> models.registry imports up a floor "
        "(utils is on floor 0, models on floor 3)",
    ]
    assert circles == [
        "import circle between data, data.info: data/__init__.py:1: data -> data.info; "
        "data/info.py:2: data.info -> data",
        "import circle between models.registry, utils.config: models/registry.py:1: models.registry -> utils.config; "
        "utils/config.py:2: utils.config -> models.registry",
    ]

"""No function of the project is longer than 60 lines (benchmarks, tests and docs aside).

A long function does several things under one name; split it into pieces that each say one. The length is the
``def`` line to the last line (``end_lineno - lineno + 1``, decorators not counted); a nested function counts on its
own and as part of the function around it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_docs import ROOT, tracked_files

MAX_LINES = 60
# Top-level folders outside the rule: measurements and examples of use, not the library.
EXEMPT = ("benchmarks", "tests", "docs", ".venv")


def long_functions(source: str, filename: str, limit: int = MAX_LINES) -> list[str]:
    """``file:line name (N lines)`` for every function (method, nested function) of ``source`` over ``limit``."""
    return [f"{filename}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source, filename))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def project_sources() -> list[Path]:
    return sorted(p for p in tracked_files()
                  if p.suffix == ".py" and p.is_file() and p.relative_to(ROOT).parts[0] not in EXEMPT)


def test_no_function_is_longer_than_60_lines() -> None:
    sources = project_sources()
    assert any(p.relative_to(ROOT).as_posix() == "training/loop.py" for p in sources)  # the scan sees the code
    offenders = [hit for path in sources
                 for hit in long_functions(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert not offenders, (f"functions over {MAX_LINES} lines (split each into pieces that say one thing each):\n"
                           + "\n".join(offenders))


def test_the_length_is_def_to_last_line_and_nested_functions_count_twice() -> None:
    def function(name: str, body_lines: int, indent: str = "") -> str:
        return f"{indent}def {name}():\n" + "".join(f"{indent}    x = {i}\n" for i in range(body_lines - 1))

    assert long_functions(function("fits", MAX_LINES), "m.py") == []
    assert long_functions("@decorator\n" + function("fits", MAX_LINES), "m.py") == []  # decorators not counted
    assert long_functions("\n\n" + function("long", MAX_LINES + 1), "m.py") == ["m.py:3 long (61 lines)"]
    # 30 lines of its own around a 40-line inner function: the outer one is 70 lines, the inner one fits.
    nested = "def outer():\n" + function("inner", 40, "    ") + "".join(f"    y = {i}\n" for i in range(29))
    assert long_functions(nested, "m.py") == ["m.py:1 outer (70 lines)"]
    method = "class C:\n" + function("method", MAX_LINES + 5, "    ")
    assert long_functions(method, "m.py") == ["m.py:2 method (65 lines)"]

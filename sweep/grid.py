"""``--grid KEY=V1,V2,...``: a sweep over values of config keys, the cartesian product with configs and seeds.

Each value is read and checked exactly as ``--set KEY=VALUE`` would read and
check it (YAML, the config's own key and type checks), so ``--grid
optimizer.sparse_lr=0.01,0.02`` and ``--grid rewind_points=[0,5],[0,10]``
mean what they would in the file. Commas inside brackets, braces or quotes
belong to the value. A grid point is a list of ``KEY=VALUE`` overrides
applied after ``--set``; its run directory label shows them, so every point
has its own run directory while artifacts the points share (dense models, IMP,
the permutation of a grid over ``optimizer.sparse_lr``) are made once, by
their keys.
"""

from __future__ import annotations

import itertools
import re

from utils.config import ConfigError
from utils.overrides import parse_override

MAX_LABEL = 160  # characters of a run directory label (file systems allow 255 for the whole name)
Point = list[str]  # ["optimizer.sparse_lr=0.01", "pruning.sparsity=0.9"]


def split_values(text: str) -> list[str]:
    """``0.1,0.2`` -> ``["0.1", "0.2"]``; commas inside ``[]``, ``{}`` or quotes stay in their value."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_grid(items: list[str], overrides: list[str]) -> list[tuple[str, list[str]]]:
    """Each ``KEY=V1,V2`` as (key, its values' texts), every value checked like ``--set KEY=VALUE``."""
    from utils.config import validate_setting

    grid: list[tuple[str, list[str]]] = []
    set_keys = {text.partition("=")[0].strip() for text in overrides}
    for item in items:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid optimizer.sparse_lr=0.01,0.02")
        values = split_values(rest)
        if any(not v for v in values):
            raise ConfigError(f"--grid {item}: an empty value (two commas in a row, or one at an end)")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {item}: a value is repeated")
        if key in {k for k, _ in grid}:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid {key}=V1,V2")
        if key in set_keys:
            raise ConfigError(f"--grid {key} and --set {key} both given: the grid sets it at every point")
        for value in values:
            _, parsed = parse_override(f"{key}={value}", source="--grid")
            try:
                validate_setting(key, parsed)
            except ConfigError as err:
                raise ConfigError(f"--grid {key}={value}: {err}") from None
        grid.append((key, values))
    return grid


def grid_points(grid: list[tuple[str, list[str]]]) -> list[Point]:
    """Every combination of the grid's values, the first key varying slowest; ``[[]]`` (one point) without a grid."""
    return [[f"{key}={value}" for (key, _), value in zip(grid, combo, strict=True)]
            for combo in itertools.product(*(values for _, values in grid))]


def point_label(label: str, point: Point) -> str:
    """The run directory label of a config at a grid point: ``s50__optimizer.sparse_lr=0.01``."""
    if not point:
        return label
    text = re.sub(r"[^A-Za-z0-9._+=-]", "_", "__".join([label, *point]))
    if len(text) > MAX_LABEL:  # a folder name must stay short: the overrides' start, then a hash of them all
        from utils.hashing import stable_hash

        text = f"{text[:MAX_LABEL - 14]}__{stable_hash(point, 12)}"
    return text

"""Composed configs: a config file may name a ``base:`` file and override some of its keys.

    # configs/config_16_97.yaml
    base: resnet20_cifar10.yaml      # relative to this file's folder
    width_multiplier: 16
    pruning: {sparsity: 0.97}        # the other pruning keys stay the base's

Mappings merge key by key, at every depth; any other value (a number, a list,
null) replaces the base's. A base may name its own base (a chain); a file
that comes back to one already in its chain is refused with one line. The
result is the plain mapping a flat file with the same values would give, so
composing changes no artifact key and no run directory name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utils.errors import ConfigError
from utils.paths import path_problem

BASE_KEY = "base"


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys on top: mappings merged at every depth, other values replaced (new dicts)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def compose(path: Path, read_one: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The mapping of ``path`` with its ``base:`` chain resolved; ``read_one`` parses one file (no ``base``).

    ``read_one`` is the one YAML loader every config goes through, so each file
    of a chain gets the same checks (and path fixes) as a flat file.
    """
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    current: Path | None = path
    while current is not None:
        resolved = current.resolve()
        if resolved in chain:
            loop = " -> ".join(str(p) for p in [*chain[chain.index(resolved):], resolved])
            raise ConfigError(f"{path}: base configs form a cycle: {loop}")
        chain.append(resolved)
        raw = read_one(current)
        current = _base_of(raw, current)
        layers.append({k: v for k, v in raw.items() if k != BASE_KEY})
    out: dict[str, Any] = {}
    for layer in reversed(layers):  # the deepest base first, each file on top of the one it names
        out = merge(out, layer)
    return out


def _base_of(raw: dict[str, Any], path: Path) -> Path | None:
    if BASE_KEY not in raw:
        return None
    name = raw[BASE_KEY]
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}: base: expected the path of a config file (relative to this file), got {name!r}")
    problem = path_problem(name)
    if problem:
        raise ConfigError(f"{path}: base: {problem}")
    base = Path(os.path.expandvars(os.path.expanduser(name)))
    base = base if base.is_absolute() else path.parent / base
    if not base.is_file():
        raise ConfigError(f"{path}: base: {name!r} not found (looked for {base}; a relative base is relative to "
                           "the folder of the file that names it)")
    return base

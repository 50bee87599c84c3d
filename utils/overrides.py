"""``key=value`` overrides of a config (``experiment.py --set optimizer.lr=0.1``), held to the YAML's rules.

A value is read as YAML, so ``0.1``, ``true``, ``[0, 5]``, ``null`` and
``cifar100`` mean what they would in the file; a key is checked by the same
code that checks a file's keys (``utils.config.validate_setting``), so a typo
gets the same "did you mean" as in a file. Ranges and relations between keys
are left to ``config_from_dict``, which sees the whole merged config.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from utils.config import ConfigError, validate_setting
from utils.safe_yaml import YamlRefused, parse_yaml

EXAMPLE = "optimizer.lr=0.1"


def parse_override(text: str, *, source: str = "--set") -> tuple[str, Any]:
    """``"optimizer.lr=0.1"`` -> ``("optimizer.lr", 0.1)``; the value is parsed as YAML.

    ``source`` names the option the text came from in error messages (another
    command reusing this may spell its option differently).
    """
    key, eq, value_text = text.partition("=")
    key = key.strip()
    if not eq:
        raise ConfigError(f"{source} {text!r}: expected KEY=VALUE, e.g. {source} {EXAMPLE}")
    if not key:
        raise ConfigError(f"{source} {text!r}: the key before '=' is empty; expected KEY=VALUE, "
                          f"e.g. {source} {EXAMPLE}")
    if any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"{source} {text!r}: the key {key!r} has an empty part between dots")
    try:
        value = parse_yaml(value_text)
    except YamlRefused as err:
        raise ConfigError(f"{source} {text}: {err}") from None
    except yaml.YAMLError as err:
        problem = " ".join(str(getattr(err, "problem", None) or "invalid YAML").split())  # keep it one line
        raise ConfigError(f"{source} {text}: the value is not valid YAML: {problem}") from None
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[str], *, source: str = "--set") -> dict[str, Any]:
    """A copy of the config mapping ``raw`` with every ``KEY=VALUE`` of ``overrides`` set, later ones winning.

    Dotted keys reach into sections, creating them when ``raw`` lacks them.
    Each key and the type of its value are checked as a YAML key would be;
    an error (ConfigError, one line) starts with the override it came from.
    ``raw`` itself is never changed (it may be the embedded demo's config).
    """
    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text, source=source)
        try:
            validate_setting(key, value)
            _set(out, key, value)
        except ConfigError as err:
            raise ConfigError(f"{source} {text}: {err}") from None
    return out


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node, where = raw, []
    for part in parents:
        where.append(part)
        child = node.get(part)
        if child is None:  # absent, or an empty section in the YAML (`optimizer:`), which means defaults
            child = node[part] = {}
        elif not isinstance(child, dict):
            # The schema allows a mapping here (dataset_root), but the config holds a plain value.
            raise ConfigError(f"cannot set '{key}': '{'.'.join(where)}' is {child!r} in the config, not a mapping; "
                              f"set '{'.'.join(where)}' itself instead")
        node = child
    node[last] = value

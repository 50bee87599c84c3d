"""Property: whatever a config file holds, loading it gives a Config or one ConfigError line, within a second.

Generated configs start from a valid one and break it: any key (every key of the schema, at every depth, plus
unknown ones) set to a value of any type (huge and non-finite numbers, long and odd strings, empty and nested
lists and mappings), sections nested wrongly or replaced, the whole document not a mapping, or empty. Each is
written as YAML and read by ``load_config``, the loader every command uses. Never a traceback (any other
exception), never a message of several lines or hundreds of characters, never more than a second (of CPU time:
the machine running the tests may be shared).
"""

from __future__ import annotations

import dataclasses
import time
import typing

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_config_cli import VALID
from utils.config import Config, ConfigError, _section_type, load_config
from utils.errors import MAX_MESSAGE


def schema_keys(cls: type = Config, where: str = "") -> list[str]:
    """Every dotted key of the config schema, sections included (``optimizer``, ``optimizer.lr``, ...)."""
    out = []
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        out.append(key)
        section = _section_type(typing.get_type_hints(cls)[f.name])
        if section is not None:
            out += schema_keys(section, key)
    return out


KEYS = [*schema_keys(), "base"]  # base: composes another file (utils/compose.py)
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 30, max_value=10 ** 400), finite,
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324]),
    st.text(max_size=20), st.text(min_size=500, max_size=5000), st.sampled_from(["\0", "a\0b", "$NOT_SET_X"]),
    st.sampled_from(["", " ", "nan", "1e999", "-inf", "~", "$HOME/x", "${NOT_SET_ANYWHERE}/x", "a:b", "torch:nn",
                     "MLP", "cifar10", "cuda:99", "\0", "é" * 3, "weight", "released", "\n\t"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6),
    st.dictionaries(st.one_of(st.text(max_size=12), st.integers(), st.booleans()), inner, max_size=5)),
    max_leaves=30)
big_lists = st.lists(st.integers(min_value=-5, max_value=10 ** 6), min_size=500, max_size=1500)


def set_key(raw: dict, key: str, value: object) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


@st.composite
def configs(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["keys", "keys", "keys", "nested", "document", "empty"]))
    if kind == "document":
        return draw(values)
    if kind == "empty":
        return draw(st.sampled_from([None, {}, [], "", 0]))
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    for key in draw(st.lists(st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12)), min_size=1,
                             max_size=4)):
        set_key(raw, key, draw(st.one_of(values, big_lists)))
    if kind == "nested":  # a valid section one level too deep, or a section's keys at the top
        section = draw(st.sampled_from(["optimizer", "pruning", "matching", "sparse", "studies"]))
        if draw(st.booleans()):
            raw[section] = {section: raw.get(section) or {}}
        else:
            inner = raw.pop(section, None)
            raw.update(inner if isinstance(inner, dict) else {})
    return raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=configs())
def test_any_config_is_accepted_or_refused_in_one_line_within_a_second(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("prop") / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    seconds = load_seconds(path)
    assert seconds < 1.0 or load_seconds(path) < 1.0


NASTY = [None, True, 0, -1, 10 ** 400, -10 ** 400, 1.5, float("nan"), float("inf"), -float("inf"), "", "\0", "a\0b",
         "$NOT_SET_X/y", "x" * 5000, "a:b", "1e999", [], [None], [10 ** 400], [float("nan")], ["\0"],
         list(range(1000)), {}, {"": None}, {"a": {"b": {"c": [1, {"d": float("inf")}]}}}, {1: 2}]


def test_every_key_with_every_kind_of_bad_value(tmp_path):
    """Each key of the schema alone set to each value above: all combinations, not a sample of them."""
    path = tmp_path / "config.yaml"
    slowest = 0.0
    for key in KEYS:
        for value in NASTY:
            raw = yaml.safe_load(yaml.safe_dump(VALID))
            set_key(raw, key, value)
            path.write_text(yaml.safe_dump(raw, allow_unicode=True))
            seconds = load_seconds(path, key)
            slowest = max(slowest, seconds if seconds < 1.0 else load_seconds(path, key))
    assert slowest < 1.0


def load_seconds(path, key: str = "") -> float:
    """CPU seconds ``load_config(path)`` took, checking what it gave; a second call only when the first took a
    second or more (a garbage collection or first import can pause once; a runaway load is slow every time)."""
    began = time.process_time()
    try:
        assert isinstance(load_config(path), Config)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and 0 < len(message) <= MAX_MESSAGE, (key, message)
    return time.process_time() - began

"""YAML as config files use it: PyYAML's safe loader, with the two things it lets through refused first.

* Alias bombs: ``&a [x, x]``, ``&b [*a, *a]``, ... is a few hundred bytes that expand to billions of values;
  PyYAML builds them all (minutes, gigabytes) before any check could run. The composed node graph shares
  each aliased node, so its expanded size is counted here in time linear in the text, and a document whose
  aliases add more than ``MAX_ALIAS_NODES`` values is refused before a single value is built.
* Duplicate keys: YAML says a mapping's keys are unique, PyYAML keeps the last one silently, so ``epochs``
  written twice trained for whichever came second. Refused, naming the key and both lines.

Every config file, and every file a config composes, is read through ``read_yaml_file`` (``parse_yaml`` for
text from elsewhere, such as a ``--set`` value).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from utils.paths import path_problem

# Values that aliases may add beyond those written out. Anchors in a config save repeating a section or a list
# (a few hundred values at most); a bomb needs millions.
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 100  # nesting levels: a config has a handful; deeper is generated or garbage
_MERGE = "tag:yaml.org,2002:merge"


class YamlRefused(ValueError):
    """A document that is valid YAML but not a usable config (alias bomb, duplicate key, nested too deep)."""


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, ScalarNode):
                continue  # `<<: *base` may be overridden by the keys written next to it, as YAML intends
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so below
                continue
            if first is not None:
                lines = f"lines {first} and {line}" if first != line else f"both on line {line}"
                raise YamlRefused(f"key {_short(key)} appears twice in one mapping ({lines}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_size(root: Node) -> None:
    """Refuse a node graph whose aliases expand past ``MAX_ALIAS_NODES`` values, or that is recursive or too deep.

    Each node is measured once (its aliases reuse the measure), so this takes time linear in the text.
    """
    distinct: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in distinct:
            distinct.add(id(node))
            stack.extend(_children(node))
    limit = len(distinct) + MAX_ALIAS_NODES
    # id -> (values, levels) of the node's subtree with every alias copied out
    expanded: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()

    def too_deep(node: Node) -> YamlRefused:
        return YamlRefused(f"nested more than {MAX_DEPTH} levels deep (line {node.start_mark.line + 1})")

    def measure(node: Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:  # checked on the way down too: aliases can chain deeper than the text is indented
            raise too_deep(node)
        if id(node) in expanded:
            if depth + expanded[id(node)][1] - 1 > MAX_DEPTH:
                raise too_deep(node)
            return expanded[id(node)]
        if id(node) in open_nodes:
            raise YamlRefused(f"an alias refers to its own anchor (line {node.start_mark.line + 1}): a recursive "
                              "value cannot be a config")
        open_nodes.add(id(node))
        total, levels = 1, 1
        for child in _children(node):
            values, height = measure(child, depth + 1)
            total, levels = total + values, max(levels, height + 1)
            if total > limit:
                raise YamlRefused(f"its aliases expand to more than {MAX_ALIAS_NODES} values (an alias bomb?); "
                                  "write the values out or use fewer aliases")
        open_nodes.discard(id(node))
        expanded[id(node)] = (total, levels)
        return total, levels

    measure(root, 1)


def parse_yaml(text: str) -> Any:
    """The value of the YAML document ``text``, or None when it is empty.

    Raises ``YamlRefused`` (one line, no position prefix) for an alias bomb, a duplicate key, a recursive
    alias or nesting past ``MAX_DEPTH``, and ``yaml.YAMLError`` for text that is not YAML.
    """
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # PyYAML's composer recurses once per nesting level
            raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep") from None
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_file(path: str | os.PathLike, what: str = "config file") -> Any:
    """``parse_yaml`` of the file at ``path``; every failure is a ``YamlRefused`` of one line naming the file.

    ``what`` names the file's role in the messages ("config file", "launcher file").
    """
    problem = path_problem(str(path))
    if problem:
        raise YamlRefused(f"{what}: {problem}")
    p = Path(path)
    if p.is_dir():
        found = sorted(q.name for q in p.glob("*.y*ml"))[:3]
        hint = f" (it holds {', '.join(found)}{', ...' if len(found) == 3 else ''})" if found else ""
        raise YamlRefused(f"{what} {str(p)!r} is a directory, not a YAML file{hint}")
    if not p.is_file():
        raise YamlRefused(f"{what} {str(p)!r} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlRefused(f"{p}: not a text file (not UTF-8)") from None
    except OSError as err:
        raise YamlRefused(f"{what} {str(p)!r} cannot be read: {err.strerror or err}") from None
    try:
        return parse_yaml(text)
    except YamlRefused as err:
        raise YamlRefused(f"{p}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or "invalid YAML").split())  # one line
        raise YamlRefused(f"{p}: not valid YAML{where}: {problem}") from None

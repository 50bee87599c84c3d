"""YAML that PyYAML accepts but a config must not: alias bombs, duplicate keys, unset variables, a directory.

Each is met by users through the command line, so each runs ``experiment.py`` in a subprocess: one line on
stderr, exit status 2, nothing written. The runaway cases are also timed in-process (the subprocess adds
PyTorch's import time): refused within a second of CPU time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_config_cli import VALID
from utils.config import ConfigError, load_config, read_config_file
from utils.overrides import parse_override
from utils.safe_yaml import MAX_ALIAS_NODES, MAX_DEPTH, YamlRefused, parse_yaml

REPO = Path(__file__).resolve().parent.parent


def bomb(levels: int, width: int = 10) -> str:
    """The "billion laughs": each anchor a list of ``width`` aliases of the one before (width ** levels values)."""
    lines = [f"    l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)


def valid_text(**extra: str) -> str:
    """VALID as YAML text, with each ``key=text`` of ``extra`` appended as a raw YAML block."""
    return yaml.safe_dump(VALID) + "".join(f"{k}:\n{v}\n" for k, v in extra.items())


def run_cli(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "experiment.py"), *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def assert_refused(proc: subprocess.CompletedProcess, expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert len(lines[0]) <= 500  # a value is named, never printed whole
    assert proc.stdout == ""


@pytest.mark.parametrize("key", ["model_kwargs", "dataset_root", "rewind_points", "unknown_key"])
def test_alias_bomb_is_refused_before_anything_is_built(tmp_path, key):
    config = tmp_path / "bomb.yaml"
    text = valid_text(**{key: bomb(8)})
    if key == "dataset_root":  # the bomb is its only value (a second one would be a duplicate key)
        text = text.replace(f"dataset_root: {VALID['dataset_root']}\n", "")
    config.write_text(text)
    began = time.process_time()
    with pytest.raises(ConfigError, match="aliases expand to more than") as err:
        read_config_file(config)
    assert time.process_time() - began < 1.0  # 10 ** 8 values unrefused: minutes and gigabytes
    assert str(err.value).startswith(str(config))
    before = files_under(tmp_path)
    assert_refused(run_cli(tmp_path, "-config", str(config)), "an alias bomb")
    assert files_under(tmp_path) == before


def test_aliases_within_the_bound_still_work():
    """Anchors that repeat a section, and merge keys overriding it, are ordinary YAML and stay accepted."""
    text = "base: &b {lr: 0.1, momentum: 0.9}\nother:\n  <<: *b\n  lr: 0.2\nlists: [&x [1, 2], *x]\n"
    assert parse_yaml(text) == {"base": {"lr": 0.1, "momentum": 0.9}, "other": {"lr": 0.2, "momentum": 0.9},
                                "lists": [[1, 2], [1, 2]]}
    # The bound counts values the aliases add beyond those written: just under it is fine, just over is not.
    under = "a: &a [" + ", ".join(["1"] * (MAX_ALIAS_NODES - 2)) + "]\nb: *a\n"
    assert len(parse_yaml(under)["b"]) == MAX_ALIAS_NODES - 2
    with pytest.raises(YamlRefused, match="alias bomb"):
        parse_yaml(under + "c: *a\n")


def test_recursive_and_deep_documents_are_one_line():
    with pytest.raises(YamlRefused, match="refers to its own anchor"):
        parse_yaml("a: &a [1, *a]")
    with pytest.raises(YamlRefused, match=f"nested more than {MAX_DEPTH} levels"):
        parse_yaml("[" * 5000 + "]" * 5000)  # PyYAML's own composer would hit Python's recursion limit
    chain = "l0: &l0 [1]\n" + "\n".join(f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, 3 * MAX_DEPTH))
    began = time.process_time()
    with pytest.raises(YamlRefused, match=f"nested more than {MAX_DEPTH} levels"):
        parse_yaml(chain)  # few lines, each one level deep, but the aliases nest 300 levels
    assert time.process_time() - began < 1.0


def test_alias_bomb_in_a_set_value_is_refused():
    """``--set`` reads its value as YAML through the same loader."""
    levels = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 6)]
    began = time.process_time()
    with pytest.raises(ConfigError, match=r"^--set model_kwargs=\[&l0 .*alias bomb") as err:
        parse_override(f"model_kwargs=[{', '.join(levels)}]")
    assert time.process_time() - began < 1.0 and len(str(err.value)) <= 400


def test_duplicate_key_names_the_key_and_both_lines(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text("epochs: 3\nmodel_type: MLP\npruning:\n  sparsity: 0.5\n  prune_perc: 0.2\n"
                      "  sparsity: 0.8\n")
    with pytest.raises(ConfigError, match=r"key 'sparsity' appears twice in one mapping \(lines 4 and 6\)"):
        read_config_file(config)
    config.write_text(valid_text().replace("device: cpu\nepochs: 4\n",
                                           "device: cpu\nepochs: 4\nthreads: 1\nepochs: 40\n"))
    before = files_under(tmp_path)
    lines = {line: i for i, line in enumerate(config.read_text().splitlines(), 1) if line.startswith("epochs:")}
    assert_refused(run_cli(tmp_path, "-config", str(config)),
                   f"key 'epochs' appears twice in one mapping (lines {lines['epochs: 4']} and {lines['epochs: 40']})")
    assert files_under(tmp_path) == before
    # A flow mapping on one line, and a merge key overridden next to it (YAML's own override, not a duplicate).
    with pytest.raises(YamlRefused, match=r"key 'lr' appears twice in one mapping \(both on line 1\)"):
        parse_yaml("optimizer: {lr: 0.1, lr: 0.2}")


def test_unset_variable_in_save_path_is_named(tmp_path):
    config = tmp_path / "c.yaml"
    env = {k: v for k, v in os.environ.items() if k != "SRB_NOT_SET"}
    for written in ("$SRB_NOT_SET/runs", "${SRB_NOT_SET}/runs", "runs/$SRB_NOT_SET"):
        config.write_text(yaml.safe_dump({**VALID, "save_path": written}))
        before = files_under(tmp_path)
        proc = subprocess.run([sys.executable, str(REPO / "experiment.py"), "-config", str(config)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=env)
        assert_refused(proc, "save_path: the environment variable $SRB_NOT_SET is not set")
        assert files_under(tmp_path) == before  # no literal `$SRB_NOT_SET` folder
    # The same through -save_path (quoted, so the shell left it alone).
    config.write_text(yaml.safe_dump(VALID))
    proc = subprocess.run([sys.executable, str(REPO / "experiment.py"), "-config", str(config), "-save_path",
                           "$SRB_NOT_SET/x"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert_refused(proc, "$SRB_NOT_SET is not set")


def test_config_naming_a_directory_says_so(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text(yaml.safe_dump(VALID))
    before = files_under(tmp_path)
    assert_refused(run_cli(tmp_path, "-config", "configs"),
                   "config file 'configs' is a directory, not a YAML file (it holds a.yaml)")
    assert files_under(tmp_path) == before
    assert_refused(run_cli(tmp_path, "-config", "nowhere.yaml"), "config file 'nowhere.yaml' not found")


def test_a_huge_value_is_named_in_a_short_line(tmp_path):
    """A megabyte string or list where a number belongs: the error names the key and a cut value."""
    config = tmp_path / "c.yaml"
    for key, value in (("epochs", "x" * 1_000_000), ("model_type", "y" * 1_000_000),
                       ("rewind_points", list(range(100_000)) + ["z"]), ("mlp_hidden", [0] * 100_000)):
        config.write_text(yaml.safe_dump({**VALID, key: value}))
        with pytest.raises(ConfigError) as err:
            load_config(config, check_data=False)
        message = str(err.value)
        assert message.startswith(key) and len(message) <= 400 and "\n" not in message, message[:300]

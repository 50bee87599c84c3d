"""Adding a stage kind is one entry in the stage table: experiment.py makes it, the sweep plans it.

The toy stage is the README's own example (section Development), executed as
written: a typed setting, one named parent (dense A), a maker that reads only
its settings and its parent's files, and the main experiment's target of it in
phase 1. A stale example fails here.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from phases import graph
from phases.stages import STAGES, making_order
from sweep import cli
from tests.test_pipeline import run, tiny_config
from utils.config import config_from_dict

ROOT = Path(__file__).resolve().parent.parent


def documented_stage(path: Path, heading: str) -> str:
    """The Python block that ``path`` shows under ``heading``: the example a user copies."""
    text = path.read_text()
    found = re.search(rf"^{re.escape(heading)}\n.*?```python\n(.*?)```", text, re.S | re.M)
    assert found, f"{path.name}: no python block under {heading!r}"
    return found.group(1)


README_STAGE = documented_stage(ROOT / "README.md", "## Development")


def test_the_readme_and_the_development_page_show_the_same_stage() -> None:
    assert documented_stage(ROOT / "docs" / "development.md", "## Adding a stage") == README_STAGE


@pytest.fixture
def toy_stage():
    """The README's example, run as written: it registers the stage ``wnorm``; its functions are returned."""
    module = types.ModuleType("readme_stage")  # a real module: dataclasses looks its own up in sys.modules
    sys.modules[module.__name__] = module
    try:
        exec(compile(README_STAGE, "README.md#development", "exec"), module.__dict__)
        assert "wnorm" in STAGES
        yield module.__dict__
    finally:
        STAGES.pop("wnorm", None)
        sys.modules.pop(module.__name__)


def test_a_new_stage_is_made_by_experiment_and_planned_by_the_sweep(tmp_path, fake_cifar10, capsys, toy_stage):
    weight_norm = toy_stage["weight_norm"]
    save = tmp_path / "runs"
    raw = tiny_config(fake_cifar10, save, epochs=2, sparse_epochs=2, rewind_points=[1],
                      sparse__random_control=False, sparse__runs=["lth"])
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
        assert cli.main(["cfg.yaml", "-seeds", "0", "--dry-run"]) == 0
    finally:
        os.chdir(old)
    plan = capsys.readouterr().out
    row = re.compile(r"^\s*(\d+)\s+(.+?)\s+([a-z]+-[0-9a-f]{12})\s+(\d+)\s+(\S+)\s+(.*)$")
    jobs = {m.group(2): m.groups() for m in map(row.match, plan.splitlines()) if m}
    cfg = config_from_dict(raw)
    toy = weight_norm(cfg, 0)
    assert jobs["wnorm"][2] == toy.name
    assert jobs["wnorm"][4] == jobs["dense A"][0]  # after dense A's job, and nothing else

    assert run(tmp_path, raw, "-pretrain", "True") == 0
    assert "[wnorm] making" in capsys.readouterr().out
    assert toy.complete
    weights, _ = toy.parents["dense_a"].tensors("final.safetensors")
    expected = 2.0 * torch.sqrt(sum(w.double().pow(2).sum() for w in weights.values()))
    assert toy.result()["scaled_norm"] == pytest.approx(float(expected), rel=1e-12)


def test_the_walk_makes_parents_first_and_walks_through_the_round_chain(tmp_path, fake_cifar10):
    cfg = config_from_dict(tiny_config(fake_cifar10, tmp_path / "runs", rewind_points=[1]))
    order = making_order([graph.sparse(cfg, 0, 1, "permuted")])
    names = [a.name for a in order]
    assert [a.kind for a in order] == ["dense", "dense", "perm", "imp", "pmask", "sparse"]  # no impchain
    for i, art in enumerate(order):
        through = [g for p in art.parents.values() for g in (p.parents.values() if p.kind == "impchain" else [p])]
        parents = {p.name for p in through}
        assert parents <= set(names[:i]), art

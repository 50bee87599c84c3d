"""Adding a stage kind is one entry in the stage table: experiment.py makes it, the sweep plans it.

The toy stage here is what a user adds (README, Development): a typed
setting, one named parent (dense A), a maker that reads only its settings and
its parent's files, and the main experiment's target of it in phase 1.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from phases import graph
from phases.context import RunContext
from phases.keys import as_key
from phases.stages import STAGES, Stage, making_order, register_stage
from sweep import cli
from tests.test_pipeline import run, tiny_config
from utils.artifacts import Artifact
from utils.config import Config, config_from_dict


@dataclasses.dataclass(frozen=True)
class NormSettings:
    scale: float  # the artifact's one setting: its key changes with it


def weight_norm(cfg: Config, seed: int) -> Artifact:
    return Artifact(cfg.save_path, "wnorm", as_key(NormSettings(scale=2.0)), {"dense_a": graph.dense(cfg, seed, "A")},
                    origin=(cfg, seed))


def make_weight_norm(ctx: RunContext, art: Artifact) -> None:
    weights, _ = art.parents["dense_a"].tensors("final.safetensors")
    norm = sum(float(w.double().pow(2).sum()) for w in weights.values()) ** 0.5
    art.finish({"scaled_norm": art.settings["scale"] * norm})


@pytest.fixture
def toy_stage():
    register_stage(Stage("wnorm", make_weight_norm, lambda cfg, seed, rewinds: [weight_norm(cfg, seed)],
                         label=lambda a: "[weight norm]"))
    yield
    STAGES.pop("wnorm")


def test_a_new_stage_is_made_by_experiment_and_planned_by_the_sweep(tmp_path, fake_cifar10, capsys, toy_stage):
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
    assert jobs["weight norm"][2] == toy.name
    assert jobs["weight norm"][4] == jobs["dense A"][0]  # after dense A's job, and nothing else

    assert run(tmp_path, raw, "-pretrain", "True") == 0
    assert "[weight norm] making" in capsys.readouterr().out
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

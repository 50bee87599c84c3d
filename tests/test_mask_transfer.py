"""Mask transfer (``pruning.mask_from``): a CIFAR-10-format mask on an SVHN-format set, as the paper's rebuttal."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

import experiment
from matching import permute
from models import build_model
from phases import graph
from phases.imp_step import load_masks
from phases.match_step import PERMUTED_MASK, load_permutation
from phases.runner import resolved_config
from sweep.plan import Target, build_plan
from tests.fake_svhn import write_fake_svhn
from tests.test_pipeline import artifacts, load, run_dir, tiny_config


@pytest.fixture(scope="module")
def fake_svhn(tmp_path_factory) -> Path:
    return write_fake_svhn(tmp_path_factory.mktemp("svhn"), n_train=1024, n_test=256, seed=3)


def write_pair(tmp_path: Path, cifar: Path, svhn: Path, **target) -> tuple[Path, Path]:
    """sub/src.yaml (CIFAR-10) and sub/tgt.yaml (SVHN, its mask from src.yaml by a relative path)."""
    save = tmp_path / "runs"
    src = tiny_config(cifar, save, sparse={"runs": ["lth", "naive", "permuted"]})
    tgt = tiny_config(svhn, save, dataset="svhn", sparse={"runs": ["lth", "naive", "permuted"]})
    tgt["pruning"] = {"mask_from": {"config": "src.yaml"}}
    for key, value in target.items():
        tgt[key] = value
    (tmp_path / "sub").mkdir(exist_ok=True)
    (tmp_path / "sub" / "src.yaml").write_text(yaml.safe_dump(src))
    (tmp_path / "sub" / "tgt.yaml").write_text(yaml.safe_dump(tgt))
    return tmp_path / "sub" / "src.yaml", tmp_path / "sub" / "tgt.yaml"


def main_in(tmp_path: Path, *args: str) -> int:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        return experiment.main([*args, "--no-progress"])
    finally:
        os.chdir(old)


def test_a_cifar10_mask_trains_on_svhn_and_the_study_compares_it_with_svhns_own(tmp_path, fake_cifar10, fake_svhn,
                                                                                capsys):
    save = tmp_path / "runs"
    src_path, tgt_path = write_pair(tmp_path, fake_cifar10, fake_svhn)
    # Nothing of the source exists yet: the study makes the source's A and IMP (as a sweep would), then the
    # main runs of this config and the own-mask runs; the main command then has everything made.
    assert main_in(tmp_path, "-config", "sub/tgt.yaml", "-seed", "0", "--study", "mask_transfer") == 0
    made = artifacts(save, "sparse")
    assert main_in(tmp_path, "-config", "sub/tgt.yaml", "-seed", "0") == 0
    assert artifacts(save, "sparse") == made
    src, tgt = resolved_config(str(src_path), []), resolved_config(str(tgt_path), [])
    a, b, imp = graph.dense(tgt, 0, "A"), graph.dense(tgt, 0, "B"), graph.imp(tgt, 0)
    assert a.name == graph.dense(src, 0, "A").name and imp.name == graph.imp(src, 0).name
    assert a.settings["data"]["dataset"] == "cifar10" and b.settings["data"]["dataset"] == "svhn"
    # The permutation matches the source's A (where the mask lives) to this config's B.
    perm = graph.permutation(tgt, 0)
    assert perm.parents["dense_a"].name == a.name and perm.parents["dense_b"].name == b.name
    mask = load_masks(imp)
    spec = build_model(tgt).permutation_spec()
    expected = permute(spec, mask, load_permutation(perm))
    permuted = load_masks(graph.permuted_mask(tgt, 0), PERMUTED_MASK)
    assert all(torch.equal(permuted[n], expected[n].bool()) for n in mask)
    assert any(not torch.equal(permuted[n], mask[n]) for n in mask)
    # naive trains B under the source's mask, permuted under pi(mask): exactly zero where each mask is off.
    for run_name, m in (("naive", mask), ("permuted", permuted)):
        final = load(graph.sparse(tgt, 0, 1, run_name).path("final.safetensors"))
        assert all(torch.all(final[n][~m[n]] == 0) for n in m), run_name
    results = json.loads((run_dir(save, "sub__tgt") / "results.json").read_text())
    assert results["mask_from"]["dataset"] == "cifar10" and results["mask_from"]["config"] == str(src_path)
    assert set(results["sparse"]["1"]) == {"lth", "naive", "permuted"}
    assert results["dense"]["A_source_data"]["accuracy"] == a.result()["accuracy"]  # A on its own data...
    assert results["dense"]["A_permuted"]["accuracy"] == pytest.approx(results["dense"]["A"]["accuracy"], abs=0.5)

    # The source config itself then reuses its A and IMP; its own lth (another dataset) is another artifact.
    dense_before, imp_before = artifacts(save, "dense"), artifacts(save, "imp")
    assert main_in(tmp_path, "-config", "sub/src.yaml", "-seed", "0", "-pretrain", "True") == 0
    assert len(artifacts(save, "dense")) == len(dense_before) + 1  # its B only
    assert artifacts(save, "imp") == imp_before
    assert graph.sparse(src, 0, 1, "lth").name != graph.sparse(tgt, 0, 1, "lth").name

    capsys.readouterr()
    assert main_in(tmp_path, "-config", "sub/tgt.yaml", "-seed", "0", "--study", "mask_transfer") == 0
    out = capsys.readouterr().out
    assert "making" not in out  # all reused
    assert "Mask transfer: a cifar10 mask on svhn" in out and "own lth" in out and "transf. permuted" in out
    report = json.loads((run_dir(save, "sub__tgt") / "studies" / "mask_transfer.json").read_text())
    got = {(r["k"], r["mask"], r["run"]): r["accuracy"] for r in report["rows"]}
    assert set(got) == {(k, g, r) for k in (0, 1) for g in ("transferred", "own") for r in ("lth", "naive", "permuted")}
    assert got[(1, "transferred", "naive")] == results["sparse"]["1"]["naive"]["accuracy"]
    assert report["sparsity"]["own"] == pytest.approx(report["sparsity"]["transferred"], abs=0.005)
    # The own mask is the same config without mask_from (the source's pruning recipe): IMP on SVHN itself.
    own_imp = [p for p in artifacts(save, "imp") if p.name != imp.name]
    assert len(own_imp) == 1
    own_a = json.loads((own_imp[0] / "manifest.json").read_text())
    assert own_a["settings"] == imp.settings


def test_the_sweep_plans_the_sources_jobs_as_dependencies_once(tmp_path, fake_cifar10, fake_svhn):
    src_path, tgt_path = write_pair(tmp_path, fake_cifar10, fake_svhn)
    targets = []
    for path in (tgt_path, src_path):
        cfg = resolved_config(str(path), [])
        targets.append(Target(label=path.stem, config_path=str(path), raw=cfg.to_dict(), seed=0, rewinds=[0, 1]))
    plan = build_plan(targets)
    tgt = targets[0].cfg
    a, imp = graph.dense(tgt, 0, "A"), graph.imp(tgt, 0)
    assert a.settings["data"]["dataset"] == "cifar10"
    assert plan.jobs[a.name].consumers == [0, 1]  # one job for both configs: the source's A
    assert plan.jobs[imp.name].deps == [a.name] and plan.jobs[imp.name].consumers == [0, 1]
    assert plan.jobs[a.name].epochs == 3
    perm = plan.jobs[graph.permutation(tgt, 0).name]
    assert set(perm.deps) == {a.name, graph.dense(tgt, 0, "B").name}
    assert plan.jobs[graph.sparse(tgt, 0, 1, "lth").name].deps == [a.name, imp.name]
    assert sum(j.step == "dense" for j in plan.jobs.values()) == 3  # source A, target B, source B


@pytest.mark.parametrize("change,expected", [
    ({"width_multiplier": 2}, r"pruning.mask_from: width_multiplier differs: 1 in the source .*src.yaml, 2 here"),
    ({"mlp_hidden": [48, 24]}, r"mlp_hidden differs: \[48, 48\] in the source .*, \[48, 24\] here"),
    ({"model_type": "VGG11"}, r"model_type differs: 'MLP' in the source .*, 'VGG11' here"),
    ({"dataset": "cifar100"}, r"dataset differs in shape: the source .* has dataset 'cifar10', this config "
                              r"'cifar100' \(classes 10 vs 100\), so weight .* is \[10, 48\] there and \[100, 48\]"),
    ({"dataset": "fashion-mnist"}, r"'fashion-mnist' \(input channels 3 vs 1, image size 32 vs 28\), so weight "
                                   r"fc1.weight is \[48, 3072\] there and \[48, 784\] here"),
    ({"epochs": 5, "sparse_epochs": 5, "rewind_points": [4]},
     r"rewind_points: lth at k=4 needs the source's dense A after 4 epochs, but pruning.mask_from.config "
     r".*src.yaml trains epochs=3"),
])
def test_a_source_that_does_not_fit_is_one_line_naming_the_key_and_both_values(tmp_path, fake_cifar10, change,
                                                                               expected, capsys):
    write_pair(tmp_path, fake_cifar10, fake_cifar10, **change)
    assert main_in(tmp_path, "-config", "sub/tgt.yaml", "-seed", "0") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(expected, err[0]), err
    assert not (tmp_path / "runs" / "artifacts").exists()  # refused before any work


@pytest.mark.parametrize("mask_from,expected", [
    ({"config": "nowhere.yaml"}, r"pruning.mask_from.config: '.*/sub/nowhere.yaml' not found"),
    ({"seed": 1}, r"pruning.mask_from.config: required"),
    ({"config": "src.yaml", "seed": -1}, r"pruning.mask_from.seed: must be >= 0"),
    ({"config": "src.yaml", "sed": 1}, r"unknown config key 'pruning.mask_from.sed'; did you mean "
                                       r"'pruning.mask_from.seed'"),
    ({"config": "tgt.yaml"}, r"takes its own mask from .*src.yaml; name that config instead"),
])
def test_bad_mask_from_is_one_line(tmp_path, fake_cifar10, mask_from, expected, capsys):
    src_path, tgt_path = write_pair(tmp_path, fake_cifar10, fake_cifar10)
    (tmp_path / "sub" / "other.yaml").write_text(yaml.safe_dump(
        {**yaml.safe_load(tgt_path.read_text()), "pruning": {"mask_from": mask_from}}))
    assert main_in(tmp_path, "-config", "sub/other.yaml", "-seed", "0") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(expected, err[0]), err


def test_missing_source_artifacts_in_phase_2_name_the_command_that_makes_them(tmp_path, fake_cifar10, capsys):
    write_pair(tmp_path, fake_cifar10, fake_cifar10)
    assert main_in(tmp_path, "-config", "sub/tgt.yaml", "-seed", "0", "-pretrain", "False") != 0
    err = capsys.readouterr().err
    assert "phase-1 artifacts missing for this config (dense_A, dense_B, imp, perm, pmask)" in err
    assert "python experiment.py -config sub/tgt.yaml -seed 0 -pretrain True" in err


def test_a_different_source_seed_takes_another_a(tmp_path, fake_cifar10):
    src_path, tgt_path = write_pair(tmp_path, fake_cifar10, fake_cifar10)
    raw = yaml.safe_load(tgt_path.read_text())
    raw["pruning"]["mask_from"]["seed"] = 7
    tgt_path.write_text(yaml.safe_dump(raw))
    tgt, src = resolved_config(str(tgt_path), []), resolved_config(str(src_path), [])
    assert graph.dense(tgt, 0, "A").name == graph.dense(src, 7, "A").name
    assert graph.imp(tgt, 2).name == graph.imp(src, 7).name  # whatever the run seed
    assert graph.dense(tgt, 2, "B").name != graph.dense(tgt, 0, "B").name

"""--study early_matching (the paper's Table 15) on a tiny run: B matched at two earlier epochs and at its last."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import torch

from matching import activation_matching, permute
from phases import graph
from phases.context import RunContext
from phases.dense import checkpoint_name
from phases.imp_step import load_masks
from phases.keys import as_key, early_match_settings, match_settings
from phases.match_step import PERMUTATION, PERMUTED_MASK
from phases.studies.early_matching import needs, permuted_run
from tests.test_pipeline import load, run, run_dir, tiny_config
from utils.config import ConfigError, config_from_dict

EPOCHS = [0, 1]  # B at initialisation and after one epoch; B trains 3


@pytest.fixture(scope="module")
def study(tmp_path_factory, fake_cifar10):
    tmp = tmp_path_factory.mktemp("early")
    save = tmp / "runs"
    raw = tiny_config(fake_cifar10, save, rewind_points=[1], sparse=dict(random_control=False))
    raw["studies"] = {"early_matching": {"epochs": EPOCHS}}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(tmp, raw, "--study", "early_matching") == 0
    cfg = config_from_dict(raw)
    report = json.loads((run_dir(save, "cfg") / "studies" / "early_matching.json").read_text())
    return {"tmp": tmp, "raw": raw, "cfg": cfg, "save": save, "out": out.getvalue(), "report": report}


def test_the_table_has_table_15s_layout(study):
    report, cfg = study["report"], study["cfg"]
    rows = report["rows"]
    assert report["key"] == ["sparsity", "method", "i", "k"]
    assert [(r["method"], r["i"]) for r in rows] == [("lth", None), ("naive", None), ("permuted", 0),
                                                     ("permuted", 1), ("permuted", 3)]
    assert {r["k"] for r in rows} == {1} and {r["sparsity"] for r in rows} == {cfg.pruning.sparsity}
    text = (run_dir(study["save"], "cfg") / "studies" / "early_matching.txt").read_text()
    assert text in study["out"]
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["S", "Method", "k=1"]
    assert [re.split(r"\s{2,}", line)[1] for line in lines[2:]] == [
        "LTH", "naive", "permuted (i=0)", "permuted (i=1)", "permuted (i=3, final)"]
    for line, row in zip(lines[2:], rows, strict=True):  # each cell is its artifact's test accuracy
        assert line.split()[-1] == f"{row['accuracy']:.2f}"
    assert (run_dir(study["save"], "cfg") / "studies" / "early_matching.csv").read_text().startswith("sparsity,")


def test_lth_naive_and_the_final_row_are_the_main_experiments_artifacts(study):
    cfg = study["cfg"]
    arts = study["report"]["artifacts"]
    assert arts["lth||1"] == str(graph.sparse(cfg, 0, 1, "lth").dir)
    assert arts["naive||1"] == str(graph.sparse(cfg, 0, 1, "naive").dir)
    assert permuted_run(cfg, 0, 1, None).name == graph.sparse(cfg, 0, 1, "permuted").name
    assert arts["permuted|3|1"] == str(graph.sparse(cfg, 0, 1, "permuted").dir)
    # The main permutation's key is unchanged: no b_epoch in it, whatever the study asks.
    assert graph.permutation(cfg, 0).settings == as_key(match_settings(cfg))
    assert "b_epoch" not in graph.permutation(cfg, 0).settings
    assert early_match_settings(cfg, cfg.b_epochs) == match_settings(cfg)
    assert len({graph.permutation(cfg, 0, b).name for b in (0, 1, None)}) == 3


def test_rerun_makes_nothing(study, capsys):
    assert run(study["tmp"], study["raw"], "--study", "early_matching") == 0
    assert "making" not in capsys.readouterr().out


def test_the_permutation_at_i_is_computed_from_bs_epoch_i_checkpoint(study):
    """If i were ignored (B's final model matched every time), pi_0 and pi_1 would equal pi_3 and this fails."""
    cfg = study["cfg"]
    ctx = RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="cfg", command="")
    model_a = ctx.load_model(graph.dense(cfg, 0, "A"), "final.safetensors")
    perms = {}
    for i in EPOCHS:
        art = graph.permutation(cfg, 0, i)
        assert art.settings["b_epoch"] == i
        model_b = ctx.load_model(graph.dense(cfg, 0, "B"), checkpoint_name(i))
        expected = activation_matching(model_a, model_b, ctx.data.eval_train_batches(cfg.matching.num_batches))
        stored = load(art.dir / PERMUTATION)
        assert all(torch.equal(stored[g], expected[g].cpu()) for g in expected), i
        perms[i] = stored
    final = load(graph.permutation(cfg, 0).dir / PERMUTATION)
    for i in EPOCHS:
        assert any(not torch.equal(perms[i][g], final[g]) for g in final), i
    assert set(study["report"]["agreement_with_final"]) == {"0", "1", "3"}
    assert study["report"]["agreement_with_final"]["3"] == 1.0


def test_each_permuted_run_trains_under_its_own_pi_i_mask(study):
    cfg = study["cfg"]
    spec = RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="", command="").new_model(0) \
        .permutation_spec()
    mask_a = load_masks(graph.imp(cfg, 0))
    masks = {}
    for b in (*EPOCHS, None):
        pi = load(graph.permutation(cfg, 0, b).dir / PERMUTATION)
        expected = {n: v.bool() for n, v in permute(spec, mask_a, pi).items()}
        stored = load(graph.permuted_mask(cfg, 0, b).dir / PERMUTED_MASK)
        assert all(torch.equal(stored[n].bool(), expected[n]) for n in expected)
        trained = load(permuted_run(cfg, 0, 1, b).dir / "final.safetensors")
        for n, m in expected.items():  # masked weights are zero; the kept ones moved off zero
            assert torch.equal(trained[n] != 0, m), (b, n)
        masks[b] = expected
    assert any(not torch.equal(masks[0][n], masks[None][n]) for n in mask_a)


def test_early_epochs_follow_the_rewind_convention_and_are_validated(study):
    raw = dict(study["raw"], rewind_convention="released")
    cfg = config_from_dict(raw)
    runs = [n.artifact for n in needs(cfg, 0) if n.artifact.settings["run"] == "permuted"]
    perms = [r.parents["mask"].parents["perm"] for r in runs if r.settings["rewind"] == cfg.rewind_points[0]]
    # under `released`, i is the checkpoint after i + 1 epochs; i = 2 would be B's last (3 epochs): the main pi
    assert [p.settings.get("b_epoch") for p in perms] == [1, 2, None]
    bad = dict(study["raw"], studies={"early_matching": {"epochs": [7]}})
    with pytest.raises(ConfigError, match="studies.early_matching.epochs"):
        config_from_dict(bad)
    with pytest.raises(ConfigError, match="studies.early_matching.epochs"):
        config_from_dict(dict(study["raw"], studies={"early_matching": {"epochs": []}}))


def test_sweep_plans_the_early_artifacts_beside_the_main_ones(tmp_path, fake_cifar10, capsys):
    import os
    from pathlib import Path

    import yaml

    from sweep import cli

    raw = tiny_config(fake_cifar10, tmp_path / "runs", rewind_points=[0, 1], sparse=dict(random_control=False))
    raw["studies"] = {"early_matching": {"epochs": EPOCHS}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert cli.main(["cfg.yaml", "-seeds", "0", "--study", "early_matching", "--dry-run"]) == 0
    finally:
        os.chdir(old)
    row = re.compile(r"^\s*(\d+)\s+(.+?)\s+([a-z]+-[0-9a-f]{12})\s+(\d+)\s+(\S+)\s+(.*)$")
    jobs = [m.groups() for m in map(row.match, capsys.readouterr().out.splitlines()) if m]
    whats = [j[1] for j in jobs]
    cfg = config_from_dict(raw)
    # the main 9 jobs (dense A, B, IMP, pi, interp, pi(M_A), 3 runs at k = 0 and 1 is 6 runs: 12 in all), then per
    # early i: pi_i, pi_i(M_A) and permuted at both k; LTH, naive and the final row are the main jobs.
    early = [w for w in whats if w.startswith("early_matching:") and w != "early_matching: report"]
    assert len(early) == len(EPOCHS) * (2 + 2)
    assert len(jobs) == 12 + len(early) + 1
    names = {j[2] for j in jobs}
    for i in EPOCHS:
        assert graph.permutation(cfg, 0, i).name in names and graph.permuted_mask(cfg, 0, i).name in names
        assert all(permuted_run(cfg, 0, k, i).name in names for k in (0, 1))
    report = jobs[whats.index("early_matching: report")]
    assert len(report[4].split(",")) == 2 + 1 + 4 + 3 * (2 + 2)  # dense A, B, IMP, lth/naive x2, per row of i

"""--study ensemble (the paper's Table 1) end to end on a tiny MLP on Fashion-MNIST, and through the sweep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import experiment
from matching import permute
from phases import graph
from phases.context import RunContext
from phases.dense import checkpoint_name
from phases.imp_step import load_masks
from phases.match_step import PERMUTATION
from phases.studies import get_study
from phases.studies.ensemble import GROUPS, member_permutation, member_permuted_mask, member_sparse, needs
from sweep import cli
from tests.test_pipeline import load, run_dir
from utils.config import ConfigError, config_from_dict
from utils.errors import UserError

REPO = Path(__file__).resolve().parent.parent
FMNIST = "/usr/share/datasets/fashion-mnist"
MEMBERS = 3
# A tiny sparse learning rate: each member's final weights are still (nearly) the weights it started from, so the
# test can tell whose weights and which mask a run really started from.
TINY_LR = 1e-6

pytestmark = pytest.mark.skipif(not Path(FMNIST).is_dir(), reason=f"no Fashion-MNIST at {FMNIST}")


def study_config(save: Path, **over) -> dict:
    cfg = {"model_type": "MLP", "mlp_hidden": [32, 32], "dataset": "fashion-mnist", "dataset_root": FMNIST,
           "train_subset": 512, "test_subset": 256, "epochs": 2, "sparse_epochs": 2, "batch_size": 64,
           "device": "cpu", "rewind_points": [1], "save_path": str(save),
           "optimizer": {"lr": 0.05, "sparse_lr": TINY_LR},
           "pruning": {"sparsity": 0.6, "prune_perc": 0.4, "train_epochs_per_prune": 1, "prune_lr": 0.02,
                       "tolerance": 0.01},
           "matching": {"method": "activation", "num_batches": 4, "interpolation_batches": 2},
           "sparse": {"random_control": False}, "studies": {"ensemble": {"members": MEMBERS}}}
    cfg.update(over)
    return cfg


def main(tmp: Path, *args: str) -> int:
    old = Path.cwd()
    os.chdir(tmp)
    try:
        return experiment.main(["-config", "cfg.yaml", "-seed", "0", "--no-progress", *args])
    finally:
        os.chdir(old)


def manifests(save: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (save / "artifacts").glob("*/manifest.json")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The main experiment of seed 0, then the study on top of it."""
    tmp = tmp_path_factory.mktemp("ensemble")
    save = tmp / "runs"
    raw = study_config(save)
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(raw))
    assert main(tmp) == 0
    before = manifests(save)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(tmp, "--study", "ensemble") == 0
    cfg = config_from_dict(raw)
    return {"save": save, "tmp": tmp, "cfg": cfg, "raw": raw, "before": before, "after": manifests(save),
            "out": out.getvalue(), "report": json.loads((run_dir(save, "cfg") / "studies" / "ensemble.json")
                                                        .read_text())}


def ctx_for(cfg) -> RunContext:
    return RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="cfg", command="")


# ------------------------------------------------------------------ member 0 is the main experiment


def test_member_0_is_the_main_experiment_and_nothing_of_it_is_retrained(study):
    cfg, save = study["cfg"], study["save"]
    k = cfg.rewind_points[0]
    for run in ("lth", "naive", "permuted"):
        assert member_sparse(cfg, 0, 0, run, k).name == graph.sparse(cfg, 0, k, run).name
        assert member_sparse(cfg, 0, 1, run, k).name != graph.sparse(cfg, 0, k, run).name
    assert member_permutation(cfg, 0, 0).name == graph.permutation(cfg, 0).name
    assert member_permuted_mask(cfg, 0, 0).name == graph.permuted_mask(cfg, 0).name
    # Every artifact of the main run is untouched: same manifest, byte for byte.
    for name, text in study["before"].items():
        assert study["after"][name] == text, name
    made = re.findall(r"making \S+/artifacts/(\S+)", study["out"])
    assert made and not set(made) & set(study["before"])
    # Exactly what members 1..M-1 add: per member seed dense A, B and IMP; per member pi_i, pi_i(M1), 3 runs.
    kinds = [name.split("-")[0] for name in made]
    added = MEMBERS - 1
    assert sorted(kinds) == sorted(["dense"] * 2 * added + ["imp", "perm", "pmask"] * added + ["sparse"] * 3 * added)
    assert len(list((save / "artifacts").glob("impchain-*"))) == MEMBERS  # one IMP per member seed


def test_study_rerun_makes_nothing(study, capsys):
    assert main(study["tmp"], "--study", "ensemble") == 0
    assert "making" not in capsys.readouterr().out
    assert manifests(study["save"]) == study["after"]


# ------------------------------------------------------------------ the science of the members


def final(art) -> dict[str, torch.Tensor]:
    return load(art.dir / "final.safetensors")


def test_each_member_starts_from_its_own_weights_and_mask(study):
    """naive_i from B_i(k) under M1, permuted_i from B_i(k) under pi_i(M1), LTH_i from A(k) under M1.

    The sparse learning rate is tiny, so a final model is its start up to ~1e-4: if the member index were
    ignored (B_0 or pi_0 for every member), the comparison with B_i and pi_i(M1) would fail for i >= 1.
    """
    cfg = study["cfg"]
    k = cfg.rewind_points[0]
    m1 = load_masks(graph.imp(cfg, 0))
    spec = ctx_for(cfg).new_model(0).permutation_spec()
    a_k = load(graph.dense(cfg, 0, "A").dir / checkpoint_name(cfg.checkpoint_epoch(k)))
    starts = {}
    for i in range(MEMBERS):
        b_i = load(graph.dense(cfg, i, "B").dir / checkpoint_name(cfg.checkpoint_epoch(k)))
        perms = load(member_permutation(cfg, 0, i).dir / PERMUTATION)
        pi_m1 = {n: v.bool() for n, v in permute(spec, m1, perms).items()}
        stored = load(member_permuted_mask(cfg, 0, i).dir / "mask_a_permuted.safetensors")
        assert all(torch.equal(stored[n].bool(), pi_m1[n]) for n in m1)
        expected = {"lth": (a_k, m1), "naive": (b_i, m1), "permuted": (b_i, pi_m1)}
        for run, (weights, masks) in expected.items():
            got = final(member_sparse(cfg, 0, i, run, k))
            for n, mask in masks.items():
                assert torch.equal(got[n] != 0, mask), (i, run, n)  # the support is exactly the mask
                assert torch.allclose(got[n], weights[n] * mask, atol=1e-4), (i, run, n)
        starts[i] = (b_i, pi_m1)
    # The checks above only discriminate if the members' sources differ.
    for i in range(1, MEMBERS):
        assert any(not torch.allclose(starts[i][0][n], starts[0][0][n], atol=1e-2) for n in m1)
        assert any(not torch.equal(starts[i][1][n], starts[0][1][n]) for n in m1)


def test_lth_members_differ_only_in_data_order(study):
    cfg = study["cfg"]
    k = cfg.rewind_points[0]
    arts = [member_sparse(cfg, 0, i, "lth", k) for i in range(MEMBERS)]
    assert [a.settings.get("data_order") for a in arts] == [None, 1, 2]
    assert len({a.parents["weights"].name for a in arts}) == 1 and len({a.parents["mask"].name for a in arts}) == 1
    finals = [final(a) for a in arts]
    # The same start and mask; other batches give (slightly) other weights.
    for i in range(1, MEMBERS):
        assert any(not torch.equal(finals[i][n], finals[0][n]) for n in finals[0])


def test_imp_members_are_the_imp_solutions_of_the_member_seeds(study):
    cfg = study["cfg"]
    arts = study["report"]["artifacts"]
    assert arts["imp"] == [str(graph.imp(cfg, i).dir) for i in range(MEMBERS)]
    assert arts["dense"] == [str(graph.dense(cfg, i, "A").dir) for i in range(MEMBERS)]
    assert len(set(arts["imp"])) == MEMBERS


# ------------------------------------------------------------------ the report


def test_report_has_the_papers_layout_and_the_members_numbers(study):
    report, cfg = study["report"], study["cfg"]
    assert [r["group"] for r in report["rows"]] == list(GROUPS) == ["dense", "imp", "lth", "permuted", "naive"]
    assert report["key"] == ["group", "mask"] and report["members"] == MEMBERS and report["rewind"] == 1
    k = cfg.rewind_points[0]
    results = {"lth": [member_sparse(cfg, 0, i, "lth", k).result()["accuracy"] for i in range(MEMBERS)],
               "imp": [graph.imp(cfg, i).result()["accuracy"] for i in range(MEMBERS)]}
    for row in report["rows"]:
        accs = report["member_accuracies"][row["group"]]
        assert len(accs) == MEMBERS and row["members"] == MEMBERS
        assert row["mean_accuracy"] == pytest.approx(sum(accs) / MEMBERS)
        if row["group"] in results:  # the softmax outputs are of the stored final models
            assert accs == pytest.approx(results[row["group"]], abs=1e-6)
        assert 0 <= row["disagreement"] <= 1 and 0 <= row["js"] <= 0.6932 and row["kl"] >= 0
    # Printed table: the header, then one line per group in the paper's order; dense has no ensemble columns.
    text = (run_dir(study["save"], "cfg") / "studies" / "ensemble.txt").read_text()
    assert text in study["out"]
    lines = text.splitlines()
    assert lines[1].split("  ")[0] == "Mask" and "Ensemble acc." in lines[1]
    assert lines[1].rstrip().endswith("JS (paper's form)")
    assert [line.split("  ")[0] for line in lines[2:]] == ["none (dense)", "IMP", "LTH", "permuted", "naive"]
    assert lines[2].count("–") == 5 and "–" not in lines[3]
    csv = (run_dir(study["save"], "cfg") / "studies" / "ensemble.csv").read_text().splitlines()
    assert csv[0].startswith("group,mask,members,mean_accuracy") and len(csv) == 6


# ------------------------------------------------------------------ settings and errors


def test_settings_and_their_errors(tmp_path):
    base = study_config(tmp_path / "runs")
    cfg = config_from_dict({**base, "studies": {}}, check_data=False)
    assert cfg.studies.ensemble is None
    # Without the section the study runs with its defaults: 5 members at the first rewind point.
    assert sum(n.artifact.kind == "sparse" for n in get_study("ensemble").needs(cfg, 0)) == 3 * 5
    cfg = config_from_dict({**base, "studies": {"ensemble": {"members": 2, "rewind": 0}}}, check_data=False)
    assert {n.artifact.settings["rewind"] for n in needs(cfg, 0) if n.artifact.kind == "sparse"} == {0}
    for bad, msg in (({"members": 1}, "studies.ensemble.members"), ({"rewind": 5}, "studies.ensemble.rewind"),
                     ({"member": 3}, "did you mean 'studies.ensemble.members'")):
        with pytest.raises(ConfigError, match=re.escape(msg)):
            config_from_dict({**base, "studies": {"ensemble": bad}}, check_data=False)
    with pytest.raises(UserError, match="unknown study 'ensembel'"):
        get_study("ensembel")


def test_unknown_study_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(study_config(tmp_path / "runs")))
    assert main(tmp_path, "--study", "nosuch") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown study 'nosuch'" in err and "ensemble" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ the sweep


def test_sweep_plans_one_job_per_member_artifact_sharing_other_seeds(tmp_path, capsys):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(study_config(tmp_path / "runs",
                                                                   studies={"ensemble": {"members": 2}})))
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert cli.main(["cfg.yaml", "-seeds", "0", "--study", "ensemb", "--dry-run"]) == 2
        assert "unknown study 'ensemb'" in capsys.readouterr().err
        assert cli.main(["cfg.yaml", "-seeds", "0-1", "--study", "ensemble", "--dry-run"]) == 0
    finally:
        os.chdir(old)
    out = capsys.readouterr().out
    row = re.compile(r"^\s*(\d+)\s+(.+?)\s+([a-z]+-[0-9a-f]{12})\s+(\d+)\s+(\S+)\s+(.*)$")
    jobs = [m.groups() for m in map(row.match, out.splitlines()) if m]
    whats = [j[1] for j in jobs]
    # Per seed the main 9 (dense A, B, IMP, pi, interp, pi(M_A), 3 runs); seed 0's member 1 is seed 1's main A,
    # B and IMP, so seed 0's study adds only pi_1, pi_1(M1) and 3 runs; seed 1's member 1 is seed 2, which nothing
    # else makes: 8 jobs. One report job per seed.
    assert whats.count("dense A") == 2 and whats.count("ensemble: member 1 dense A (seed 2)") == 1
    assert not any("member 0" in w for w in whats)  # member 0 is the main runs' jobs
    assert not any("member 1 dense A (seed 1)" in w for w in whats)  # seed 1's own dense A job
    assert sum(w.startswith("ensemble: member 1") for w in whats) == 5 + 8
    assert whats.count("ensemble: report") == 2
    assert len(jobs) == 2 * 9 + 5 + 8 + 2
    report = jobs[[i for i, w in enumerate(whats) if w == "ensemble: report"][0]]
    # Seed 0's report waits for every member artifact, whichever job makes it: 8 per member (dense A, B, IMP,
    # pi_i, pi_i(M1), 3 runs), member 0's and member 1's being main jobs of seeds 0 and 1.
    assert len(report[4].split(",")) == 2 * 8


def test_local_sweep_makes_the_members_and_the_report_then_experiment_has_nothing_to_make(tmp_path, capsys):
    save = tmp_path / "runs"
    raw = study_config(save, studies={"ensemble": {"members": 2}})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    assert main(tmp_path) == 0  # the main experiment: member 0's artifacts are complete, the sweep skips them
    main_done = manifests(save)
    capsys.readouterr()
    proc = subprocess.run([sys.executable, "-m", "sweep", "cfg.yaml", "-seeds", "0", "--study", "ensemble",
                           "--executor", "local", "--jobs", "2", "-threads", "1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Member 1's 8 artifacts (dense A, B and IMP of seed 1, pi_1, pi_1(M1), 3 runs), each its own job, then the report.
    assert "9 jobs for 1 (config, seed) pairs" in proc.stdout
    plan = proc.stdout.split("training epochs:")[0]
    assert "member 0" not in plan and "member 1 dense A (seed 1)" in plan
    status = subprocess.run([sys.executable, "-m", "sweep", "status", "runs", "--details"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert status.returncode == 0 and re.search(r"ensemble: report\s+done", status.stdout)
    assert all(manifests(save)[name] == text for name, text in main_done.items())
    path = run_dir(save, "cfg") / "studies" / "ensemble.json"
    swept = json.loads(path.read_text())
    after_sweep = manifests(save)
    path.unlink()
    assert main(tmp_path, "--study", "ensemble") == 0
    assert "making" not in capsys.readouterr().out and manifests(save) == after_sweep
    assert json.loads(path.read_text())["rows"] == swept["rows"]


# ------------------------------------------------------------------ across seeds


def test_analysis_table_averages_a_study_over_seeds(tmp_path, capsys):
    from analysis import table

    rows = {0: [("lth", 80.0, 0.10), ("naive", 70.0, 0.30)], 1: [("lth", 82.0, 0.20), ("naive", 74.0, 0.50)]}
    for seed, entries in rows.items():
        d = tmp_path / "cfg-abc" / f"seed_{seed}"
        (d / "studies").mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"config": "cfg", "config_hash": "abc", "seed": seed,
                                                          "dense": {"A": {"accuracy": 90.0}}}))
        report = {"study": "ensemble", "seed": seed, "key": ["group"],
                  "rows": [{"group": g, "ensemble_accuracy": a, "js": j} for g, a, j in entries]}
        (d / "studies" / "ensemble.json").write_text(json.dumps(report))
    out_csv = tmp_path / "sum.csv"
    assert table.main([str(tmp_path), "--study", "ensemble", "--summary-csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "| lth | 2 | 81.000 ± 1.414 | 0.150 ± 0.071 |" in text
    assert "| naive | 2 | 72.000 ± 2.828 | 0.400 ± 0.141 |" in text
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "config,group,seeds,ensemble_accuracy_mean,ensemble_accuracy_std,js_mean,js_std"
    assert table.main([str(tmp_path), "--study", "nosuch"]) == 2


def test_the_main_runs_keys_hold_no_data_order():
    # data_order is dropped when None, so the main sparse runs keep the hashes they had before the study existed.
    cfg = config_from_dict(study_config(Path("/runs")), check_data=False)
    for run in ("lth", "naive", "permuted"):
        assert "data_order" not in graph.sparse(cfg, 0, 1, run).settings
        assert member_sparse(cfg, 0, 2, run, 1).settings["data_order"] == 2

"""--study imp_barriers (the paper's Fig. 4a) and ``matching.repair`` on a tiny MLP on Fashion-MNIST."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from matching import error_barrier, interpolation_curve, permute
from phases import graph
from phases.context import RunContext
from phases.imp_step import MASK_PREFIX, round_file
from phases.match_step import load_permutation
from phases.studies.imp_barriers import barriers
from tests.test_pipeline import load, run, run_dir
from training.evaluate import evaluate
from utils.config import config_from_dict

FMNIST = "/usr/share/datasets/fashion-mnist"
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]

pytestmark = pytest.mark.skipif(not Path(FMNIST).is_dir(), reason=f"no Fashion-MNIST at {FMNIST}")


def same_curve(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    return len(a) == len(b) and all(p.keys() == q.keys() and all(abs(p[k] - q[k]) <= 1e-9 for k in p)
                                    for p, q in zip(a, b, strict=True))


def config(save: Path) -> dict:
    return {"model_type": "MLP", "mlp_hidden": [64, 64], "dataset": "fashion-mnist", "dataset_root": FMNIST,
            "train_subset": 2048, "test_subset": 1000, "epochs": 3, "sparse_epochs": 3, "batch_size": 64,
            "device": "cpu", "rewind_points": [1], "save_path": str(save),
            "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
            "pruning": {"sparsity": 0.9, "prune_perc": 0.5, "train_epochs_per_prune": 1, "prune_lr": 0.05,
                        "tolerance": 0.01},
            "matching": {"method": "activation", "num_batches": 4, "interpolation_batches": 4, "alphas": ALPHAS,
                         "repair": True},
            "sparse": {"random_control": False}, "studies": {"imp_barriers": {}}}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Phase 1 (with matching.repair), then the study on top of it."""
    tmp = tmp_path_factory.mktemp("impbarriers")
    save = tmp / "runs"
    raw = config(save)
    assert run(tmp, raw, "-pretrain", "True") == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(tmp, raw, "--study", "imp_barriers") == 0
    cfg = config_from_dict(raw)
    report = json.loads((run_dir(save, "cfg") / "studies" / "imp_barriers.json").read_text())
    ctx = RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="cfg", command="")
    return {"tmp": tmp, "raw": raw, "cfg": cfg, "save": save, "out": out.getvalue(), "report": report, "ctx": ctx}


def test_one_barrier_per_imp_round_with_and_without_repair(study):
    cfg, report = study["cfg"], study["report"]
    history = graph.imp(cfg, 0).result()["history"]
    assert len(history) >= 3
    rows = report["rows"]
    assert report["key"] == ["round", "repair"]
    assert [(r["round"], r["repair"]) for r in rows] == [(h["round"], p) for h in history for p in (False, True)]
    assert [r["sparsity"] for r in rows[::2]] == [h["sparsity"] for h in history]
    for r in rows:
        assert r["test_error_barrier"] >= 0 and r["test_loss_barrier"] >= 0
    # the study made only its two barrier artifacts: dense A and IMP came from phase 1
    made = [line for line in study["out"].splitlines() if "making" in line]
    assert len(made) == 2 and all("impbarrier-" in line for line in made)
    folder = run_dir(study["save"], "cfg") / "studies"
    text = (folder / "imp_barriers.txt").read_text()
    assert text in study["out"]
    assert text.splitlines()[1].split() == ["round", "sparsity", "w/o", "REPAIR", "w/", "REPAIR"]
    assert len(text.splitlines()) == 2 + len(history)
    assert (folder / "imp_barriers_figure.png").stat().st_size > 0
    assert (folder / "imp_barriers.csv").read_text().startswith("round,sparsity,")


def test_each_curve_runs_from_dense_a_to_that_rounds_solution(study):
    """The endpoints are dense A and round r's fine-tuned model: a wrong round file would show in alpha = 1."""
    cfg, report = study["cfg"], study["report"]
    history = graph.imp(cfg, 0).result()["history"]
    a_acc = graph.dense(cfg, 0, "A").result()["accuracy"]
    for repair in ("False", "True"):
        curves = report["curves"][repair]
        for h in history:
            curve = curves[str(h["round"])]
            assert [p["alpha"] for p in curve] == ALPHAS
            assert curve[0]["test_accuracy"] == pytest.approx(a_acc, abs=1e-9)
            assert curve[-1]["test_accuracy"] == pytest.approx(h["accuracy"], abs=1e-9)
    # the last round, recomputed by hand from the chain's file, with the study's settings
    ctx, imp = study["ctx"], graph.imp(cfg, 0)
    amounts = [h["amount"] for h in history]
    tensors = load(imp.parents["chain"].dir / round_file(len(history), amounts))
    sd_r = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    model = ctx.load_model(graph.dense(cfg, 0, "A"), "final.safetensors")
    for repair in (False, True):
        curve = interpolation_curve(model, model.state_dict(), sd_r, ALPHAS,
                                    lambda: ctx.data.eval_train_batches(4), ctx.data.test_batches, repair=repair,
                                    evaluate=evaluate)
        row = [r for r in report["rows"] if r["round"] == len(history) and r["repair"] is repair][0]
        assert row["test_error_barrier"] == pytest.approx(error_barrier(curve), abs=1e-9)
        assert same_curve(report["curves"][str(repair)][str(len(history))], curve)
    # REPAIR reached the curves: inside the path they differ
    inner = [(p["test_loss"], q["test_loss"]) for c in history
             for p, q in zip(report["curves"]["False"][str(c["round"])][1:-1],
                             report["curves"]["True"][str(c["round"])][1:-1], strict=True)]
    assert any(abs(a - b) > 1e-6 for a, b in inner)


def test_study_settings_key_only_the_studys_artifacts(study):
    cfg = study["cfg"]
    plain, repaired = barriers(cfg, 0, False), barriers(cfg, 0, True)
    assert plain.name != repaired.name and plain.parents["imp"].name == graph.imp(cfg, 0).name
    assert plain.settings == {"alphas": ALPHAS, "batches": 4, "repair": False}
    other = config_from_dict(dict(study["raw"], studies={"imp_barriers": {"alphas": [0.0, 0.5, 1.0]}}))
    assert barriers(other, 0, False).name != plain.name and graph.imp(other, 0).name == graph.imp(cfg, 0).name


def test_matching_repair_reaches_the_interpolation_curves_and_only_their_key(study):
    cfg, ctx = study["cfg"], study["ctx"]
    art = graph.interpolation(cfg, 0)
    assert art.settings["repair"] is True and art.result()["repair"] is True
    without = config_from_dict(dict(study["raw"], matching={**study["raw"]["matching"], "repair": False}))
    assert "repair" not in graph.interpolation(without, 0).settings  # old configs keep their hashes
    assert graph.permutation(without, 0).name == graph.permutation(cfg, 0).name
    model_b = ctx.load_model(graph.dense(cfg, 0, "B"), "final.safetensors")
    sd_a = load(graph.dense(cfg, 0, "A").dir / "final.safetensors")
    sd_ap = permute(model_b.permutation_spec(), sd_a, load_permutation(graph.permutation(cfg, 0)))

    def curve(repair: bool) -> list[dict[str, float]]:
        return interpolation_curve(model_b, sd_ap, model_b.state_dict(), ALPHAS,
                                   lambda: ctx.data.eval_train_batches(4), ctx.data.test_batches, repair=repair,
                                    evaluate=evaluate)

    stored = art.result()["curve_after"]
    assert same_curve(stored, curve(True))
    assert not same_curve(stored, curve(False))

"""Both phases end to end on a tiny schedule: artifacts, results.json, resume, refusal, sharing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

import experiment
from pruning.masks import weight_sparsity
from utils.checkpoint import load_tensors


def tiny_config(root: Path, save: Path, **over) -> dict:
    cfg = {
        "model_type": "MLP", "mlp_hidden": [48, 48], "dataset": "cifar10", "dataset_root": str(root),
        "train_subset": 512, "test_subset": 256, "epochs": 3, "sparse_epochs": 3, "batch_size": 64,
        "device": "cpu", "rewind_points": [0, 1], "save_path": str(save), "eval_every": 1,
        "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
        "pruning": {"sparsity": 0.6, "prune_perc": 0.3, "train_epochs_per_prune": 1, "prune_lr": 0.02},
        "matching": {"method": "activation", "num_batches": 4, "interpolation_batches": 2},
        "sparse": {"random_control": True},
    }
    for key, value in over.items():
        node = cfg
        *parents, last = key.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def run(tmp_path: Path, cfg: dict, *args: str, name: str = "cfg.yaml") -> int:
    (tmp_path / name).write_text(yaml.safe_dump(cfg))
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        return experiment.main(["-config", name, "-seed", "0", "--no-progress", *args])
    finally:
        os.chdir(old)


def run_dir(save: Path, label: str, seed: int = 0) -> Path:
    """The run directory of a config label: ``<label>-<config hash>/seed_N`` (exactly one must exist)."""
    found = sorted(save.glob(f"{label}-*/seed_{seed}"))
    assert len(found) == 1, found
    return found[0]


def artifacts(save: Path, kind: str) -> list[Path]:
    return sorted(p for p in (save / "artifacts").glob(f"{kind}-*"))


def dense_dir(save: Path, role: str) -> Path:
    """The one dense artifact of ``role`` (A or B) under ``save``."""
    (found,) = [d for d in artifacts(save, "dense")
                if json.loads((d / "manifest.json").read_text())["settings"]["role"] == role]
    return found


def load(path: Path) -> dict[str, torch.Tensor]:
    return load_tensors(path)[0]


def test_both_phases_end_to_end(tmp_path, fake_cifar10, capsys):
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save)
    assert run(tmp_path, cfg, "-pretrain", "True") == 0
    out = capsys.readouterr().out
    assert "Phase 1" in out and "pi(A)" in out
    run_dir_ = run_dir(save, "cfg")
    results = json.loads((run_dir_ / "results.json").read_text())
    assert results["sparse"] == {}
    for k in (1, 0):
        assert run(tmp_path, cfg, "-pretrain", "False", "--rewind", str(k)) == 0
    assert "Phase 2" in capsys.readouterr().out

    results = json.loads((run_dir_ / "results.json").read_text())
    assert isinstance(results["config_hash"], str) and results["seed"] == 0
    for who in ("A", "B", "A_permuted"):
        assert set(results["dense"][who]) >= {"accuracy", "loss"}
    # pi(A) is A with its units reordered: same function, same accuracy.
    assert results["dense"]["A_permuted"]["accuracy"] == pytest.approx(results["dense"]["A"]["accuracy"], abs=1e-6)
    imp = results["imp"]
    assert abs(imp["sparsity"] - 0.6) <= 0.005 and imp["rounds"] >= 2 and 0 <= imp["accuracy"] <= 100
    m = results["matching"]
    assert m["method"] == "activation"
    assert 0 <= m["midpoint_accuracy_before"] <= 100 and 0 <= m["midpoint_accuracy_after"] <= 100
    assert set(results["sparse"]) == {"0", "1"}
    for k in ("0", "1"):
        assert set(results["sparse"][k]) == {"lth", "naive", "permuted", "random"}
        for entry in results["sparse"][k].values():
            assert 0 <= entry["accuracy"] <= 100 and entry["loss"] > 0

    # The run directory holds what DESIGN §3.3 lists.
    assert yaml.safe_load((run_dir_ / "config.yaml").read_text())["pruning"]["sparsity"] == 0.6
    records = [json.loads(line) for line in (run_dir_ / "metrics.jsonl").read_text().splitlines()]
    runs = {r["run"] for r in records}
    assert {"dense_A", "dense_B", "imp_round_1", "sparse_lth_k0", "sparse_permuted_k1"} <= runs
    perm, meta = load_tensors(artifacts(save, "perm")[0] / "permutation.safetensors")
    assert set(perm) == {"hidden1", "hidden2"} and all(p.dtype == torch.int64 for p in perm.values())
    for p in perm.values():
        assert torch.equal(p.sort().values, torch.arange(48))

    # Masked weights are exactly zero in every saved sparse checkpoint, at the IMP sparsity.
    imp_dir = artifacts(save, "imp")[0]
    mask_a, _ = load_tensors(imp_dir / "mask.safetensors")
    mask_p, _ = load_tensors(artifacts(save, "pmask")[0] / "mask_a_permuted.safetensors")
    sparse_dirs = artifacts(save, "sparse")
    assert len(sparse_dirs) == 8
    for d in sparse_dirs:
        res = json.loads((d / "result.json").read_text())
        weights, _ = load_tensors(d / "final.safetensors")
        mask = mask_p if res["run"] == "permuted" else mask_a
        if res["run"] != "random":
            for name, keep in mask.items():
                assert torch.all(weights[name][~keep.bool()] == 0), (d, name)
        assert weight_sparsity(weights, list(mask)) == pytest.approx(imp["sparsity"], abs=1e-3)
        assert not (d / "train_state.safetensors").exists()


def test_resume_after_a_kill_between_steps_and_refusal_of_other_configs(tmp_path, fake_cifar10, monkeypatch,
                                                                         capsys):
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, sparse__random_control=False)
    import dataclasses

    from phases import stages

    real = stages.STAGES["perm"]

    def killed(ctx, art):
        raise KeyboardInterrupt

    monkeypatch.setitem(stages.STAGES, "perm", dataclasses.replace(real, make=killed))
    assert run(tmp_path, cfg, "-pretrain", "True") == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    done = {p: p.stat().st_mtime_ns for kind in ("dense", "imp") for p in artifacts(save, kind)}
    finals = {p: (p / "result.json").read_text() for p in done}
    assert len(done) == 3  # A, B and the IMP mask survived the kill

    # Phase 2 before phase 1 finished: refused, naming the command that makes the artifacts.
    assert run(tmp_path, cfg, "-pretrain", "False", "--rewind", "1") == 2
    err = capsys.readouterr().err
    assert "phase-1 artifacts missing" in err and "-pretrain True" in err and "perm" in err

    monkeypatch.setitem(stages.STAGES, "perm", real)
    assert run(tmp_path, cfg, "-pretrain", "True") == 0
    out = capsys.readouterr().out
    assert out.count("reusing") == 3  # dense A, IMP, dense B: nothing retrained
    for p, text in finals.items():
        assert (p / "result.json").read_text() == text

    # Phase 2 with a config that differs from the one phase 1 ran with: refused, naming the key.
    changed = tiny_config(fake_cifar10, save, sparse__random_control=False, optimizer__lr=0.07)
    assert run(tmp_path, changed, "-pretrain", "False", "--rewind", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "different config" in err and "optimizer.lr" in err and "-pretrain True" in err
    # Phase-2-only keys may differ: sparse settings do not invalidate phase 1.
    relaxed = tiny_config(fake_cifar10, save, sparse__random_control=False, optimizer__sparse_lr=0.02)
    assert run(tmp_path, relaxed, "-pretrain", "False", "--rewind", "1") == 0


def test_configs_differing_only_in_sparsity_share_dense_models(tmp_path, fake_cifar10, capsys):
    save = tmp_path / "runs"
    assert run(tmp_path, tiny_config(fake_cifar10, save), "-pretrain", "True", name="s60.yaml") == 0
    capsys.readouterr()
    dense = {p: (p / "metrics.jsonl").read_text() for p in artifacts(save, "dense")}
    assert len(dense) == 2
    other = tiny_config(fake_cifar10, save, pruning__sparsity=0.8)
    assert run(tmp_path, other, "-pretrain", "True", name="s80.yaml") == 0
    out = capsys.readouterr().out
    assert "[dense A] reusing" in out and "[dense B] reusing" in out
    # IMP rounds are shared too: 30% per round gives 30%, 51% for both targets, then 60% caps its third round.
    assert "[imp] round 1: reusing" in out and "[imp] round 2: reusing" in out
    assert "[imp] round 3: reusing" not in out and "[imp] round 3: removed 30.0%" in out
    metrics80 = [json.loads(line) for line in (run_dir(save, "s80") / "metrics.jsonl").read_text().splitlines()]
    assert {r["run"] for r in metrics80} >= {"imp_round_1", "imp_round_2", "imp_round_3", "imp_round_4"}
    assert {p: (p / "metrics.jsonl").read_text() for p in artifacts(save, "dense")} == dense  # no dense epoch
    assert len(artifacts(save, "imp")) == 2 and len(artifacts(save, "pmask")) == 2
    # The permutation depends on dense A and B only: one for both sparsities.
    assert len(artifacts(save, "perm")) == 1 and "[match] reusing" in out
    r60 = json.loads((run_dir(save, "s60") / "results.json").read_text())
    r80 = json.loads((run_dir(save, "s80") / "results.json").read_text())
    assert r60["dense"]["A"] == r80["dense"]["A"]
    assert abs(r80["imp"]["sparsity"] - 0.8) <= 0.005 and r80["imp"]["rounds"] > r60["imp"]["rounds"]


def test_resnet20_phase1_with_weight_matching(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, model_type="ResNet", epochs=2, sparse_epochs=2, train_subset=256,
                      test_subset=128, matching__method="weight", rewind_points=[0])
    assert run(tmp_path, cfg, "-pretrain", "True") == 0
    results = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    assert results["dense"]["A_permuted"]["accuracy"] == pytest.approx(results["dense"]["A"]["accuracy"], abs=0.5)
    assert results["matching"]["method"] == "weight"


def test_imp_with_weight_rewinding(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, pruning__rewind_epoch=1, rewind_points=[0],
                      sparse__random_control=False)
    assert run(tmp_path, cfg, "-pretrain", "True") == 0
    imp_dir = artifacts(save, "imp")[0]
    history = json.loads((imp_dir / "result.json").read_text())["history"]
    assert len(history) >= 2 and abs(history[-1]["sparsity"] - 0.6) <= 0.005
    # Dense A kept the rewind epoch's checkpoint although it is not a phase-2 rewind point.
    dense_a = [d for d in artifacts(save, "dense") if '"role": "A"' in (d / "manifest.json").read_text()][0]
    assert (dense_a / "epoch_1.safetensors").exists()
    # Each round restarted from A at epoch 1: the sparse model equals masked epoch-1 weights trained
    # for one epoch, so it differs from the fine-tuned (non-rewound) variant's weights.
    other = tiny_config(fake_cifar10, save, rewind_points=[0], sparse__random_control=False)
    assert run(tmp_path, other, "-pretrain", "True", name="ft.yaml") == 0
    a, _ = load_tensors(imp_dir / "model.safetensors")
    b_dir = [d for d in artifacts(save, "imp") if d != imp_dir][0]
    b, _ = load_tensors(b_dir / "model.safetensors")
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_imp_killed_mid_way_resumes_to_the_same_mask(tmp_path, fake_cifar10, monkeypatch, capsys):
    import phases.imp_step as imp_step

    ref_save, save = tmp_path / "ref", tmp_path / "runs"
    assert run(tmp_path, tiny_config(fake_cifar10, ref_save), "-pretrain", "True", name="ref.yaml") == 0
    real_train, calls = imp_step.train, []

    def dies_in_round_3(*args, **kwargs):
        calls.append(kwargs["name"])
        if kwargs["name"] == "imp_round_3":
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(imp_step, "train", dies_in_round_3)
    assert run(tmp_path, tiny_config(fake_cifar10, save), "-pretrain", "True") == 130
    monkeypatch.setattr(imp_step, "train", real_train)
    capsys.readouterr()
    assert run(tmp_path, tiny_config(fake_cifar10, save), "-pretrain", "True") == 0
    out = capsys.readouterr().out
    assert "[imp] round 1: reusing" in out and "[imp] round 2: reusing" in out
    ref_mask, _ = load_tensors(artifacts(ref_save, "imp")[0] / "mask.safetensors")
    got_mask, _ = load_tensors(artifacts(save, "imp")[0] / "mask.safetensors")
    assert all(torch.equal(ref_mask[k], got_mask[k]) for k in ref_mask)
    ref = json.loads((artifacts(ref_save, "imp")[0] / "result.json").read_text())
    got = json.loads((artifacts(save, "imp")[0] / "result.json").read_text())
    assert got["history"] == ref["history"] and got["accuracy"] == ref["accuracy"]


def test_sigkill_mid_training_then_rerun_gives_the_uninterrupted_results(tmp_path, fake_cifar10):
    """A real kill (SIGKILL, no cleanup) while dense B trains; the rerun must match a clean run exactly."""
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parent.parent
    cfg = tiny_config(fake_cifar10, tmp_path / "runs", epochs=6, sparse__random_control=False)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    ref_cfg = {**cfg, "save_path": str(tmp_path / "ref")}
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(ref_cfg))
    command = [sys.executable, str(repo / "experiment.py"), "-seed", "0", "-pretrain", "True", "--no-progress",
               "-threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([*command, "-config", "ref.yaml"], cwd=tmp_path, env=env, check=True, capture_output=True)

    proc = subprocess.Popen([*command, "-config", "cfg.yaml"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    state = None
    while time.time() < deadline and proc.poll() is None:
        states = list((tmp_path / "runs" / "artifacts").glob("dense-*/train_state.safetensors"))
        imp_done = any(p.exists() for p in (tmp_path / "runs" / "artifacts").glob("imp-*/mask.safetensors"))
        if imp_done and states:  # dense B is part-way through its epochs
            state = states[0]
            break
        time.sleep(0.05)
    assert state is not None, "dense B never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([*command, "-config", "cfg.yaml"], cwd=tmp_path, env=env, check=True, capture_output=True)

    ref = json.loads((run_dir(tmp_path / "ref", "ref") / "results.json").read_text())
    got = json.loads((run_dir(tmp_path / "runs", "cfg") / "results.json").read_text())
    for key in ("dense", "imp", "matching"):
        assert got[key] == ref[key], key

"""The artifact graph in use: what a change of config retrains, and what it leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.test_pipeline import artifacts, run, run_dir, tiny_config
from utils.checkpoint import load_tensors


def snapshot(save: Path) -> dict[str, int]:
    """mtime of every file under every artifact: a rewritten file is a retrained artifact."""
    return {str(p.relative_to(save)): p.stat().st_mtime_ns for p in (save / "artifacts").rglob("*")
            if p.is_file() and ".locks" not in p.parts}


def made(out: str) -> list[str]:
    return [line.split(" making ")[0] for line in out.splitlines() if " making " in line]


def test_changing_the_interpolation_grid_retrains_nothing(tmp_path, fake_cifar10, capsys):
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, rewind_points=[1])
    assert run(tmp_path, cfg) == 0
    before = snapshot(save)
    capsys.readouterr()
    finer = tiny_config(fake_cifar10, save, rewind_points=[1], matching__alphas=[0.0, 0.1, 0.5, 0.9, 1.0],
                        matching__interpolation_batches=3)
    assert run(tmp_path, finer) == 0
    assert made(capsys.readouterr().out) == ["[interp]"]
    after = snapshot(save)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    curves = [json.loads((d / "result.json").read_text())["curve_after"] for d in artifacts(save, "interp")]
    assert sorted(len(c) for c in curves) == [5, 11]  # the default 11-point grid, then the 5-point one


def test_adding_a_rewind_point_adds_checkpoints_and_retrains_no_imp_round_or_sparse_run(tmp_path, fake_cifar10,
                                                                                          capsys):
    save, ref = tmp_path / "runs", tmp_path / "ref"
    assert run(tmp_path, tiny_config(fake_cifar10, save, epochs=4, sparse_epochs=4, rewind_points=[0, 1])) == 0
    first = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    before = snapshot(save)
    capsys.readouterr()

    # Phase 2 alone, for a rewind point phase 1 never saved: the checkpoint is added, never skipped.
    more = tiny_config(fake_cifar10, save, epochs=4, sparse_epochs=4, rewind_points=[0, 1, 3])
    assert run(tmp_path, more, "-pretrain", "False", "--rewind", "3") == 0
    out = capsys.readouterr().out
    assert "[dense A] adding checkpoint(s) at epoch(s) [3]" in out and "[dense B] adding checkpoint(s)" in out
    assert "removed" not in out  # no IMP round trained
    assert sorted(made(out)) == sorted(f"[sparse k=3 {r}]" for r in ("lth", "naive", "permuted", "random"))
    after = snapshot(save)
    changed = {k for k in before if after[k] != before[k]}
    # Only the two dense manifests were rewritten (to list the new checkpoint); no model, mask or result.
    assert changed == {k for k in before if k.startswith("artifacts/dense-") and k.endswith("manifest.json")}
    got = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    for k in ("0", "1"):
        assert got["sparse"][k] == first["sparse"][k]

    # The added checkpoint is the one a run asking for it from the start saves, bit for bit (CPU).
    assert run(tmp_path, tiny_config(fake_cifar10, ref, epochs=4, sparse_epochs=4, rewind_points=[3]),
               name="ref.yaml") == 0
    for d in artifacts(save, "dense"):
        role = json.loads((d / "manifest.json").read_text())["settings"]["role"]
        (twin,) = [r for r in artifacts(ref, "dense") if r.name == d.name]  # same key: saved epochs are not in it
        a, _ = load_tensors(d / "epoch_3.safetensors")
        b, _ = load_tensors(twin / "epoch_3.safetensors")
        assert all(torch.equal(a[n], b[n]) for n in a), role
        assert json.loads((d / "manifest.json").read_text())["checkpoints"] == [0, 1, 3]
    reference = json.loads((run_dir(ref, "ref") / "results.json").read_text())
    assert got["sparse"]["3"] == reference["sparse"]["3"]

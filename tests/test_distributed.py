"""torchrun with 2 CPU ranks (gloo): data-parallel training gives the single-process weights; a killed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import experiment
from tests.test_pipeline import artifacts, run_dir, tiny_config
from utils.checkpoint import load_tensors

REPO = Path(__file__).resolve().parent.parent


def torchrun(tmp: Path, *args: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "experiment.py"), *args, "-seed", "0", "-threads", "1", "--no-progress"]
    return subprocess.Popen(command, cwd=tmp, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen)


def weights(save: Path) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for d in artifacts(save, "dense"):
        role = json.loads((d / "manifest.json").read_text())["settings"]["role"]
        out[role] = load_tensors(d / "final.safetensors")[0]
    return out


@pytest.fixture(scope="module")
def config(tmp_path_factory, fake_cifar10):
    tmp = tmp_path_factory.mktemp("ddp")
    # An MLP (no BatchNorm: SyncBatchNorm needs CUDA), batch 64 split 32 + 32, several epochs.
    cfg = tiny_config(fake_cifar10, tmp / "unused", epochs=4, rewind_points=[1], sparse__random_control=False)
    single = tmp / "single"
    (tmp / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "save_path": str(single)}))
    old = Path.cwd()
    os.chdir(tmp)
    try:
        assert experiment.main(["-config", "cfg.yaml", "-seed", "0", "--no-progress"]) == 0
    finally:
        os.chdir(old)
    return {"tmp": tmp, "cfg": cfg, "single": single}


def test_two_ranks_train_the_single_process_weights(config, tmp_path):
    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**config["cfg"], "save_path": str(save)}))
    proc = torchrun(tmp_path, "-config", "cfg.yaml")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "torchrun: 2 processes, data-parallel on cpu" in out
    assert out.count("[dense A] making") == 1  # rank 0 alone talks
    ref, got = weights(config["single"]), weights(save)
    for role in ("A", "B"):
        for name, t in ref[role].items():
            # Same samples per step; only the order of float32 reductions differs.
            assert torch.allclose(got[role][name], t, rtol=1e-4, atol=1e-5), (role, name)
    single = json.loads((run_dir(config["single"], "cfg") / "results.json").read_text())
    ddp = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    assert ddp["dense"]["A"]["accuracy"] == pytest.approx(single["dense"]["A"]["accuracy"], abs=0.5)
    assert set(ddp["sparse"]["1"]) == {"lth", "naive", "permuted"}


def test_a_killed_torchrun_resumes(config, tmp_path):
    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**config["cfg"], "save_path": str(save), "epochs": 30}))
    proc = torchrun(tmp_path, "-config", "cfg.yaml", "-pretrain", "True")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if list((save / "artifacts").glob("dense-*/train_state.safetensors")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    # torchrun starts each rank in a session of its own: kill the ranks and the launcher, with no cleanup,
    # as a node failure would.
    ranks = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(ranks) == 2, ranks
    for pid in [*ranks, str(proc.pid)]:
        os.kill(int(pid), signal.SIGKILL)
    proc.wait(timeout=30)
    again = torchrun(tmp_path, "-config", "cfg.yaml", "-pretrain", "True")
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out[-3000:]
    assert "resuming from epoch" in out, out[:4000]
    results = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    assert {"A", "B", "A_permuted"} <= set(results["dense"]) and results["imp"]["rounds"] >= 2
    for d in artifacts(save, "dense"):  # every epoch recorded once, none lost to the kill
        epochs = [json.loads(line)["epoch"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert epochs == sorted(set(epochs)) and epochs[-1] == 30

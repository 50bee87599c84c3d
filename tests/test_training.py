"""Training through the real config path; exact resume; masks; metrics; progress bars."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import torch

from data import build_data
from models import create
from phases import graph, stages
from phases.context import RunContext
from training.loop import TrainSpec, train
from training.metrics import MetricsLog, read_metrics
from utils.config import config_from_dict

REPO = Path(__file__).resolve().parent.parent


def context(raw: dict, seed: int = 0) -> RunContext:
    cfg = config_from_dict(raw)
    return RunContext(cfg=cfg, seed=seed, device=torch.device("cpu"), label="test", command="(test)", progress=False)


def ensure_dense(ctx: RunContext, role: str):
    """Dense ``role`` of the context's config, made as phase 1 makes it (every rewind point's checkpoint)."""
    art = graph.dense(ctx.cfg, ctx.seed, role)
    stages.ensure(ctx, [art], consumers=stages.main_artifacts(ctx.cfg, ctx.seed))
    return art


def test_resnet20_dense_training_on_cifar_format_data(tmp_path, fake_cifar10):
    ctx = context({"model_type": "ResNet", "width_multiplier": 1, "dataset": "cifar10",
                   "dataset_root": str(fake_cifar10), "epochs": 3, "batch_size": 128, "device": "cpu",
                   "rewind_points": [0, 1], "save_path": str(tmp_path / "runs"),
                   "optimizer": {"lr": 0.05}})
    art = ensure_dense(ctx, "A")
    result = art.result()
    assert result["accuracy"] > 40.0  # chance is 10%
    for name in ("epoch_0.safetensors", "epoch_1.safetensors", "final.safetensors", "metrics.jsonl"):
        assert art.path(name).exists()
    assert not art.path("train_state.safetensors").exists()
    records = read_metrics(art.path("metrics.jsonl"))
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all({"run", "lr", "train_loss", "test_accuracy", "test_loss"} <= set(r) for r in records)
    assert records[0]["lr"] == pytest.approx(0.05)  # cosine starts at the configured lr


def test_mlp_reaches_85_percent_on_real_fashion_mnist_in_3_epochs(tmp_path):
    ctx = context({"model_type": "MLP", "mlp_hidden": [512, 512], "dataset": "fashion-mnist",
                   "dataset_root": str(tmp_path / "absent"), "epochs": 3, "batch_size": 128, "device": "cpu",
                   "rewind_points": [0], "save_path": str(tmp_path / "runs"),
                   "optimizer": {"lr": 0.05}})
    assert ctx.data.num_train == 60000 and ctx.data.num_test == 10000
    result = ensure_dense(ctx, "A").result()
    assert result["accuracy"] >= 85.0, result


class Interrupt(Exception):
    pass


class InterruptingData:
    """Wraps a bundle; raises after ``after`` training batches in total (a kill mid-epoch)."""

    def __init__(self, data, after: int):
        self.data, self.after, self.count = data, after, 0
        self.batches_per_epoch = data.batches_per_epoch

    def train_batches(self, epoch, seed, augment=True):
        for batch in self.data.train_batches(epoch, seed, augment):
            self.count += 1
            if self.count > self.after:
                raise Interrupt
            yield batch

    def test_batches(self):
        return self.data.test_batches()


@pytest.mark.parametrize("model_type", ["MLP", "ResNet"])
def test_interrupted_training_resumes_to_identical_weights(tmp_path, fake_cifar10, model_type):
    data = build_data("cifar10", fake_cifar10, batch_size=128, train_subset=512, test_subset=128)
    spec = TrainSpec(epochs=4, lr=0.05, momentum=0.9, weight_decay=5e-4, seed=3)

    def fresh():
        torch.manual_seed(0)
        return create(model_type, num_classes=10, in_channels=3, width=1, mlp_hidden=[32])

    reference = fresh()
    train(reference, data, spec, name="ref", device=torch.device("cpu"), progress=False)

    model = fresh()
    state = tmp_path / "state.safetensors"
    log = MetricsLog(tmp_path / "metrics.jsonl")
    with pytest.raises(Interrupt):  # killed in the middle of epoch 3
        train(model, InterruptingData(data, after=2 * 4 + 2), spec, name="run", device=torch.device("cpu"),
              state_path=state, metrics=log, progress=False)
    assert state.exists()
    resumed = fresh()  # a new process starts from scratch and finds the state file
    out = train(resumed, data, spec, name="run", device=torch.device("cpu"), state_path=state, metrics=log,
                progress=False)
    assert out.epochs_run == 2
    ref_sd, got_sd = reference.state_dict(), resumed.state_dict()
    for key in ref_sd:
        assert torch.equal(ref_sd[key], got_sd[key]), key
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_same_seed_same_result_different_seed_different(tmp_path, fake_cifar10):
    raw = {"model_type": "MLP", "mlp_hidden": [32], "dataset": "cifar10", "dataset_root": str(fake_cifar10),
           "epochs": 2, "batch_size": 128, "device": "cpu", "rewind_points": [0], "train_subset": 512,
           "optimizer": {"lr": 0.05}}
    finals = []
    for i, seed in enumerate((5, 5, 6)):
        ctx = context({**raw, "save_path": str(tmp_path / f"r{i}")}, seed=seed)
        art = ensure_dense(ctx, "A")
        finals.append(ctx.load_model(art, "final.safetensors").state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    assert not all(torch.equal(finals[0][k], finals[2][k]) for k in finals[0])


def test_masked_weights_stay_exactly_zero_with_momentum_and_weight_decay(fake_cifar10):
    data = build_data("cifar10", fake_cifar10, batch_size=128, train_subset=256, test_subset=128)
    torch.manual_seed(0)
    model = create("ResNet", num_classes=10, in_channels=3, width=1)
    gen = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=gen) > 0.7 for n, p in model.named_parameters()
             if n in model.prunable_parameters()}
    spec = TrainSpec(epochs=2, lr=0.1, momentum=0.9, weight_decay=5e-3, seed=0)
    train(model, data, spec, name="masked", device=torch.device("cpu"), masks=masks, progress=False)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
        assert torch.any(params[name][mask] != 0), name  # the kept weights did train


def test_metrics_lines_parse_and_resume_truncates(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for e in (1, 2, 3):
        log.log({"run": "a", "epoch": e, "train_loss": 1.0 / e})
    log.log({"run": "b", "epoch": 3})
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"run": "a", "ep')  # a line cut short by a kill
    log.truncate_run("a", 1)
    recs = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(r["run"], r["epoch"]) for r in recs] == [("a", 1), ("b", 3)]


SCRIPT = """
import torch
from data import build_data
from models import create
from training.loop import TrainSpec, train
data = build_data("cifar10", {root!r}, batch_size=64, train_subset=256, test_subset=64)
torch.manual_seed(0)
model = create("MLP", num_classes=10, in_channels=3, mlp_hidden=[16])
train(model, data, TrainSpec(epochs=2, lr=0.05), name="dense_A", device=torch.device("cpu"))
"""


def run_with_output(code: str, tty: bool) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not tty:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr
    leader, follower = pty.openpty()
    # A fresh pty reports 0x0; a real terminal has a size, and tqdm draws nothing in 0 columns.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_shows_on_a_terminal_only(fake_cifar10):
    code = SCRIPT.format(root=str(fake_cifar10))
    on_tty = run_with_output(code, tty=True)
    assert "dense_A" in on_tty and "2/2" in on_tty and ("ep/s" in on_tty or "s/ep" in on_tty), on_tty
    assert "s/epoch, ETA" not in on_tty  # the bar says it; no plain lines as well
    # Off a terminal: the plain per-epoch lines of tests/test_logging.py, and no bar.
    off_tty = run_with_output(code, tty=False)
    assert "\r" not in off_tty and "ep/s" not in off_tty and "s/ep]" not in off_tty, repr(off_tty)
    assert off_tty.count("[dense_A] epoch ") == 2, off_tty

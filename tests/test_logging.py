"""Without progress bars (a file, a cluster log), training prints one plain line per epoch and one on resume."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data import build_data
from models import create
from training.loop import TrainSpec, epoch_line, format_duration, show_bars, train
from training.metrics import MetricsLog, read_metrics

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
LINE = re.compile(r"\[(?P<name>[^\]]+)\] epoch (?P<epoch>\d+)/(?P<total>\d+) lr (?P<lr>\S+) loss (?P<loss>\d+\.\d{4})"
                  r"(?: acc (?P<acc>\d+\.\d{2})%)? (?P<pace>\d+\.\d+) s/epoch, ETA (?P<eta>\d+s|\d+m|\d+h\d\dm)")
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def data(fake_cifar10):
    return build_data("cifar10", fake_cifar10, batch_size=128, train_subset=256, test_subset=128)


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("MLP", num_classes=10, in_channels=3, mlp_hidden=[16])


def epoch_lines(out: str, name: str) -> list[re.Match]:
    """The lines of ``out`` about run ``name``, each of which must be an epoch line."""
    mine = [line for line in out.splitlines() if line.startswith(f"[{name}]")]
    matches = [LINE.fullmatch(line) for line in mine]
    assert all(matches), mine
    return matches


def test_epoch_line_format():
    assert (epoch_line("dense_A", 37, 200, 0.0712, 0.42128, 88.123, 12.3, 163)
            == "[dense_A] epoch 37/200 lr 0.0712 loss 0.4213 acc 88.12% 12.3 s/epoch, ETA 33m")
    assert (epoch_line("imp_round_1", 1, 3, 0.05, 2.0, None, 0.25, 2)
            == "[imp_round_1] epoch 1/3 lr 0.05 loss 2.0000 0.25 s/epoch, ETA 0s")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45, "45s"), (59.4, "59s"), (59.6, "1m"), (720, "12m"),
                                               (3 * 3600 + 5 * 60, "3h05m"), (3599, "1h00m"), (26 * 3600, "26h00m")])
def test_duration_format(seconds, text):
    assert format_duration(seconds) == text


def test_one_line_per_epoch_with_the_logged_values(data, tmp_path, capsys):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    spec = TrainSpec(epochs=3, lr=0.05, eval_every=2)  # epoch 1 not evaluated; 2 and the last are
    assert not show_bars(None)  # pytest's capture is not a terminal
    train(mlp(), data, spec, name="dense_A", device=CPU, metrics=log, progress=None)
    out = capsys.readouterr().out
    lines = epoch_lines(out, "dense_A")
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [m["epoch"] for m in lines] == ["1", "2", "3"] and {m["total"] for m in lines} == {"3"}
    for m, rec in zip(lines, records, strict=True):
        assert float(m["lr"]) == pytest.approx(rec["lr"], rel=1e-3)
        assert m["loss"] == f"{rec['train_loss']:.4f}"
        assert m["acc"] == (f"{rec['test_accuracy']:.2f}" if "test_accuracy" in rec else None)
    assert lines[0]["acc"] is None and lines[1]["acc"] is not None and lines[2]["acc"] is not None
    assert lines[0]["lr"] == "0.05"  # the cosine schedule starts at the configured lr
    assert lines[2]["eta"] == "0s"  # nothing left after the last epoch


def test_bars_on_print_no_lines(data, capsys):
    train(mlp(), data, TrainSpec(epochs=2, lr=0.05), name="dense_A", device=CPU, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""  # tqdm tells it, on stderr
    assert "dense_A" in captured.err and "s/epoch, ETA" not in captured.err


def test_resume_prints_where_it_resumes_from(data, tmp_path, capsys):
    state = tmp_path / "state.safetensors"
    spec = TrainSpec(epochs=4, lr=0.05)
    train(mlp(), data, spec, name="dense_A", device=CPU, state_path=state, progress=False, stop_after=2)
    first = capsys.readouterr().out
    assert "resuming" not in first and [m["epoch"] for m in epoch_lines(first, "dense_A")] == ["1", "2"]
    train(mlp(), data, spec, name="dense_A", device=CPU, state_path=state, progress=False)
    second = capsys.readouterr().out.splitlines()
    assert second[0] == f"[dense_A] resuming from epoch 2/4 ({state})"
    assert [m["epoch"] for m in epoch_lines("\n".join(second[1:]), "dense_A")] == ["3", "4"]

    train(mlp(), data, spec, name="dense_A", device=CPU, state_path=state, progress=True)
    assert capsys.readouterr().out == ""  # with bars, not even the resume line


SCRIPT = """
import torch
from data import build_data
from models import create
from training.loop import TrainSpec, train
data = build_data("cifar10", {root!r}, batch_size=64, train_subset=256, test_subset=64)
torch.manual_seed(0)
model = create("MLP", num_classes=10, in_channels=3, mlp_hidden=[16])
train(model, data, TrainSpec(epochs=3, lr=0.05), name="dense_A", device=torch.device("cpu"))
"""


def test_a_log_file_gets_plain_lines_only(fake_cifar10, tmp_path):
    """stdout and stderr to one file, as on a cluster: no carriage return, no escape code, a line per epoch."""
    log = tmp_path / "job.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(fake_cifar10))], cwd=REPO, env=env,
                              stdout=f, stderr=subprocess.STDOUT, timeout=120)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and not ANSI.search(text), repr(text)
    assert [m["epoch"] for m in epoch_lines(text, "dense_A")] == ["1", "2", "3"]

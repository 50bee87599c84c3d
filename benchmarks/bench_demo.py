"""The demo end to end: wall time of ``python experiment.py --no-progress -save_path <tmpdir>``.

A subprocess, as a user runs it (both phases, Fashion-MNIST MLP), with
``OMP_NUM_THREADS`` set to the benchmark's thread count. ``--tiny`` runs a
seconds-long config of both phases on fake CIFAR-10 instead, to smoke-test
the benchmark itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import REPO, add_check, add_table, base_parser, emit, new_section


def tiny_config(root: Path, device: str, save_path: Path, model: str = "MLP", width: int = 1,
                n_train: int = 256, batch_size: int = 64) -> dict:
    """Both phases in seconds: 2 dense epochs, IMP to 50%, one rewind point, short sparse runs."""
    return {
        "model_type": model, "width_multiplier": width, "mlp_hidden": [64],
        "dataset": "cifar10", "dataset_root": str(root), "train_subset": n_train,
        "test_subset": max(batch_size, n_train // 4), "epochs": 2, "sparse_epochs": 2,
        "batch_size": batch_size, "num_workers": 0, "device": device, "rewind_points": [1],
        "save_path": str(save_path),
        "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
        "pruning": {"sparsity": 0.5, "prune_perc": 0.3, "train_epochs_per_prune": 1, "tolerance": 0.01},
        "matching": {"method": "activation", "num_batches": 2, "interpolation_batches": 2,
                     "alphas": [0.0, 0.5, 1.0]},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_experiment(args: list[str], threads: int, timeout: float | None = None) -> tuple[float, str]:
    """Wall seconds and combined output of ``python experiment.py *args`` in the repository root."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "experiment.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    elapsed = time.perf_counter() - began
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"experiment.py {' '.join(args)} exited {proc.returncode}:\n{output[-3000:]}")
    return elapsed, output


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    section = new_section("demo", "5. The demo, end to end")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.tiny:
            from tests.fake_cifar import write_fake_cifar

            write_fake_cifar(tmp_path / "data", "cifar10", n_train=256, n_test=64, seed=0)
            config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "data", "cpu", tmp_path / "runs"))
            command = ["-config", str(config), "--no-progress"]
        else:
            command = ["--no-progress", "-save_path", str(tmp_path / "runs")]
        seconds, output = run_experiment(command, args.threads)
    what = ("python experiment.py -config <tiny: fake CIFAR-10, MLP> --no-progress" if args.tiny
            else "python experiment.py --no-progress -save_path <tmpdir> (the Fashion-MNIST MLP demo)")
    add_table(section, f"Wall time of a subprocess, OMP_NUM_THREADS={args.threads}",
              ["command", "s", "min"], [[what, seconds, seconds / 60]])
    add_check(section, "demo wall time", seconds, "", None, unit="s",
              note="a feasibility run before the runner existed took 3-4 minutes per seed on these 2 cores")
    tail = [line for line in output.splitlines() if "done in" in line]
    section["notes"] += [f"experiment.py: {line.strip()}" for line in tail]
    section["data"] = {"seconds": seconds}
    return emit(section, args.json)


if __name__ == "__main__":
    main()

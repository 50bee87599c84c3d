"""A local sweep against ``experiment.py`` by hand, for the same configs and seeds: wall time ratio, same numbers.

By hand: ``python experiment.py -config C -seed S`` for each (config, seed), one
after another, as a user would type them. Sweep: ``python -m sweep C... -seeds
... --executor local --jobs 1``, one job per artifact in one long-lived worker
(``sweep/workers.py``). Both are subprocesses with one thread, into fresh
save_paths, run in interleaved rounds (order rotated each round); the ratio is
the median of the per-round ratios. The numbers of every run directory must be
equal. The configs are the sweep tests' tiny ones on fake CIFAR-10: two
sparsities x two seeds, 24 jobs, so start-up costs dominate, the worst case
for a sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import (
    REPO,
    add_check,
    add_table,
    base_parser,
    emit,
    interleaved,
    median,
    new_section,
    paired_ratio,
)

NUMBERS = ("dense", "imp", "matching", "sparse")
TARGET = 1.3


def tiny(root: Path, sparsity: float, epochs: int) -> dict:
    return {"model_type": "MLP", "mlp_hidden": [48, 48], "dataset": "cifar10", "dataset_root": str(root),
            "train_subset": 512, "test_subset": 256, "epochs": epochs, "sparse_epochs": epochs, "batch_size": 64,
            "num_workers": 0, "device": "cpu", "rewind_points": [1], "eval_every": 1,
            "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
            "pruning": {"sparsity": sparsity, "prune_perc": 0.3, "train_epochs_per_prune": 1, "prune_lr": 0.02},
            "matching": {"method": "activation", "num_batches": 4, "interpolation_batches": 2},
            "sparse": {"runs": ["lth", "permuted"]}}


def run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")


def numbers(save: Path) -> dict[str, dict]:
    out = {}
    for path in save.glob("*/seed_*/results.json"):
        res = json.loads(path.read_text())
        out[f"{res['config']}/{res['seed']}"] = {k: res.get(k) for k in NUMBERS}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    rounds, epochs = (1, 2) if args.tiny else (args.rounds, 3)
    section = new_section("local_sweep", "Local sweep against experiment.py by hand")
    seeds = ["0", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        from tests.fake_cifar import write_fake_cifar

        write_fake_cifar(tmp_path / "data", "cifar10", n_train=1024, n_test=256, seed=0)
        names = []
        for s in (0.5, 0.6):
            names.append(f"s{int(s * 100)}.yaml")
            (tmp_path / names[-1]).write_text(yaml.safe_dump(tiny(tmp_path / "data", s, epochs)))
        saves = {"by hand": tmp_path / "byhand", "sweep": tmp_path / "sweep"}

        def by_hand() -> None:
            shutil.rmtree(saves["by hand"], ignore_errors=True)
            for name in names:
                for seed in seeds:
                    run([str(REPO / "experiment.py"), "-config", name, "-seed", seed,
                         "-save_path", str(saves["by hand"]), "--no-progress", "-threads", "1"], tmp_path)

        def sweep() -> None:
            shutil.rmtree(saves["sweep"], ignore_errors=True)
            run(["-m", "sweep", *names, "-seeds", ",".join(seeds), "--executor", "local", "--jobs", "1",
                 "-threads", "1", "-save_path", str(saves["sweep"])], tmp_path)

        began = time.perf_counter()
        times = interleaved({"by hand": by_hand, "sweep": sweep}, rounds=rounds, warmup=0)
        same = numbers(saves["by hand"]) == numbers(saves["sweep"]) and len(numbers(saves["sweep"])) == 4
        jobs = len(json.loads(next((saves["sweep"] / "sweep" / "records").glob("*.json")).read_text())["jobs"])
    ratio = paired_ratio(times["sweep"], times["by hand"])
    add_table(section, f"2 tiny configs x 2 seeds ({jobs} sweep jobs), one thread, {rounds} interleaved rounds",
              ["variant", "median s", "rounds (s)"],
              [[name, median(t), ", ".join(f"{x:.1f}" for x in t)] for name, t in times.items()])
    add_check(section, "sweep / by hand wall time", ratio, f"<= {TARGET}", ratio <= TARGET,
              note=f"same numbers in all 4 run directories: {'yes' if same else 'NO'}")
    section["notes"].append(f"benchmark wall time {time.perf_counter() - began:.0f} s")
    section["data"] = {"ratio": ratio, "same_numbers": same, "jobs": jobs,
                       **{f"median_{k.replace(' ', '_')}_s": median(v) for k, v in times.items()}}
    if not same:
        raise RuntimeError("the sweep's numbers differ from experiment.py's by hand")
    return emit(section, args.json)


if __name__ == "__main__":
    main()

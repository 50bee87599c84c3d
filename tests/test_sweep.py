"""python -m sweep: the plan, bad sweeps, and whole sweeps run locally and on a real (single-node) Slurm."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import experiment
from sweep import cli
from tests.test_pipeline import dense_dir, tiny_config

REPO = Path(__file__).resolve().parent.parent
NUMBERS = ("dense", "imp", "matching", "sparse")


def sweep_config(root: Path, save: Path, sparsity: float, **over) -> dict:
    # Two runs, one rewind point: few jobs, and still dense A/B, the permutation and the IMP chain shared.
    settings = {"rewind_points": [1], "sparse__runs": ["lth", "permuted"], "sparse__random_control": False, **over}
    return tiny_config(root, save, pruning__sparsity=sparsity, **settings)


def write_configs(tmp: Path, root: Path, save: Path, **over) -> list[str]:
    names = []
    for s in (0.5, 0.6):
        name = f"s{int(s * 100)}.yaml"
        (tmp / name).write_text(yaml.safe_dump(sweep_config(root, save, s, **over)))
        names.append(name)
    return names


def run_sweep(tmp: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=tmp, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def numbers(save: Path) -> dict[tuple[str, int], dict]:
    """(config label, seed) -> the numbers of its results.json (paths left out)."""
    out = {}
    for path in save.glob("*/seed_*/results.json"):
        res = json.loads(path.read_text())
        out[(res["config"], res["seed"])] = {k: res.get(k) for k in NUMBERS}
    return out


def by_hand(tmp: Path, names: list[str], seeds: list[int], save: Path) -> dict:
    """What running experiment.py for each (config, seed) gives, in its own save_path."""
    old = Path.cwd()
    os.chdir(tmp)
    try:
        for name in names:
            for seed in seeds:
                assert experiment.main(["-config", name, "-seed", str(seed), "-save_path", str(save),
                                        "--no-progress", "-threads", "1"]) == 0
    finally:
        os.chdir(old)
    return numbers(save)


def trained_once(save: Path, logs: str) -> None:
    """Each shared artifact was trained exactly once: one record per epoch, one training per IMP round."""
    for metrics in (save / "artifacts").glob("dense-*/metrics.jsonl"):
        epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
        assert epochs == sorted(set(epochs)), metrics
    rounds = re.findall(r"\[imp\] round (\d+): removed", logs)
    chain_files = list((save / "artifacts").glob("impchain-*/round_*.safetensors"))
    assert len(rounds) == len(chain_files) > 0


def all_logs(save: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (save / "sweep" / "logs").rglob("*_log.*"))


# ------------------------------------------------------------------ the plan


def test_dry_run_plans_shared_artifacts_once(tmp_path, fake_cifar10, capsys):
    save = tmp_path / "runs"
    names = write_configs(tmp_path, fake_cifar10, save)
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert cli.main(["s*.yaml", "-seeds", "0-1", "--dry-run"]) == 0
    finally:
        os.chdir(old)
    out = capsys.readouterr().out
    assert len(names) == 2
    # Per seed: dense A, dense B, permutation, interpolation shared; per config: IMP, pmask, lth, permuted.
    assert "24 jobs for 4 (config, seed) pairs (32 if each were planned on its own)" in out
    row = re.compile(r"^\s*(\d+)\s+(.+?)\s+([a-z]+-[0-9a-f]{12})\s+(\d+)\s+(\S+)\s+(.*)$")
    jobs = [m.groups() for m in map(row.match, out.splitlines()) if m]
    assert len(jobs) == 24
    assert sum(j[1] == "dense A" for j in jobs) == 2 and sum(j[1] == "permutation" for j in jobs) == 2
    # Rounds of 30 %: 50 % is 30 % then a capped round; 60 % shares the first and trains 2 more (30 %, capped),
    # and its IMP job waits for the 50 % one of the same seed.
    imp = {(j[1], j[5].split("seed_")[1][0]): j for j in jobs if j[1].startswith("IMP")}
    for seed in "01":
        first, second = imp[("IMP to 50%", seed)], imp[("IMP to 60%", seed)]
        assert (int(first[3]), int(second[3])) == (2, 2)  # epochs: 2 rounds x 1, then 2 new rounds x 1
        assert first[0] in second[4].split(",")
    m = re.search(r"training epochs: (\d+) in this plan; (\d+) when each", out)
    assert m and int(m.group(1)) < int(m.group(2))
    assert not (save / "sweep").exists()  # a dry run submits and records nothing


@pytest.mark.parametrize("args,expected", [
    (["s50.yaml", "-seeds", "0", "--executor", "slrum"], "unknown executor 'slrum'"),
    (["nothing*.yaml", "-seeds", "0"], "matches no file"),
    (["s50.yaml", "-seeds", "0-x"], "'0-x' is not a seed"),
    (["s50.yaml", "-seeds", "0", "--set", "optimizer.lrr=0.1"], "did you mean 'optimizer.lr'"),
    (["s50.yaml", "-seeds", "0", "--rewind", "7"], "--rewind [7] not among"),
    (["s50.yaml", "-seeds", "0", "--jobs", "0"], "launcher.jobs: must be positive"),
    (["s50.yaml", "-seeds", "0", "-device", "cuda"], "-device cpu"),
])
def test_bad_sweeps_are_one_line_and_submit_nothing(tmp_path, fake_cifar10, args, expected):
    write_configs(tmp_path, fake_cifar10, tmp_path / "runs")
    proc = run_sweep(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and expected in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_slurm_without_sbatch_is_one_line(tmp_path, fake_cifar10):
    write_configs(tmp_path, fake_cifar10, tmp_path / "runs")
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = run_sweep(tmp_path, "s50.yaml", "-seeds", "0", "--executor", "slurm", env={"PATH": str(bare)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "sbatch" in proc.stderr and "--executor local" in proc.stderr
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ whole sweeps


@pytest.fixture(scope="module")
def byhand(tmp_path_factory, fake_cifar10) -> tuple[dict, Path]:
    """The numbers of experiment.py run by hand for both configs and seeds 0, 1, and its save_path."""
    tmp = tmp_path_factory.mktemp("byhand")
    names = write_configs(tmp, fake_cifar10, tmp / "unused")
    return by_hand(tmp, names, [0, 1], tmp / "byhand"), tmp / "byhand"


@pytest.fixture(scope="module")
def reference(byhand) -> dict:
    return byhand[0]


def test_local_sweep_equals_experiment_by_hand(tmp_path, fake_cifar10, reference):
    save = tmp_path / "runs"
    write_configs(tmp_path, fake_cifar10, save)
    proc = run_sweep(tmp_path, "s*.yaml", "-seeds", "0,1", "--executor", "local", "--jobs", "2", "-threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "totals over 24 distinct artifacts: 24 done" in proc.stdout
    assert numbers(save) == reference
    trained_once(save, all_logs(save))
    status = run_sweep(tmp_path, "status", str(save))
    assert status.returncode == 0 and "24 done" in status.stdout
    # A copy of the save_path reports the copy: an artifact deleted there is missing (exit 1), the original done.
    record = json.loads(next((save / "sweep" / "records").glob("*.json")).read_text())
    assert all(not Path(j["log"]).is_absolute() for j in record["jobs"].values())  # relative to the save_path
    copy = tmp_path / "copy"
    shutil.copytree(save, copy)
    shutil.rmtree(sorted((copy / "artifacts").glob("sparse-*"))[0])
    moved = run_sweep(tmp_path, "status", str(copy))
    assert moved.returncode == 1 and "totals over 24 distinct artifacts: 23 done, 1 missing" in moved.stdout
    # Rerun: nothing left to do.
    again = run_sweep(tmp_path, "s*.yaml", "-seeds", "0,1", "--executor", "local")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    # An artifact being made elsewhere: status names the holder of its lock, and the study is not done.
    from utils.locks import exclusive

    victim = sorted((save / "artifacts").glob("sparse-*"))[0]
    shutil.rmtree(victim)
    with exclusive(save / "artifacts" / ".locks" / f"{victim.name}.lock", victim.name):
        status = run_sweep(tmp_path, "status", str(save), "--details")
    assert status.returncode == 1
    (line,) = [line for line in status.stdout.splitlines() if " running " in line]
    assert f"pid {os.getpid()} " in line
    # Deleted after its job succeeded: missing (not failed), naming the job's log, and exit 1.
    status = run_sweep(tmp_path, "status", str(save), "--details")
    assert status.returncode == 1 and " failed" not in status.stdout
    (line,) = [line for line in status.stdout.splitlines() if " missing " in line]
    assert "succeeded" in line and "deleted since" in line


def test_local_workers_and_a_concurrent_experiment_py_make_each_artifact_once(tmp_path, fake_cifar10, reference):
    save = tmp_path / "runs"
    write_configs(tmp_path, fake_cifar10, save)
    by_hand = subprocess.Popen([sys.executable, str(REPO / "experiment.py"), "-config", "s50.yaml", "-seed", "0",
                                "--no-progress", "-threads", "1"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    proc = run_sweep(tmp_path, "s50.yaml", "-seeds", "0", "--executor", "local", "--jobs", "2", "-threads", "1")
    out, _ = by_hand.communicate(timeout=600)
    assert proc.returncode == 0 and by_hand.returncode == 0, proc.stdout[-2000:] + out[-2000:]
    got = numbers(save)
    assert got[("s50", 0)] == reference[("s50", 0)]
    trained_once(save, all_logs(save) + out)


def test_status_of_experiment_py_runs_reads_their_run_directories(byhand):
    _, save = byhand
    status = run_sweep(save.parent, "status", str(save))
    assert status.returncode == 0, status.stdout
    lines = status.stdout.splitlines()
    pairs = [line for line in lines if "/seed_" in line]
    assert len(pairs) == 4 and all(re.search(r"  8/8 done$", line) for line in pairs)
    assert lines[-1] == "totals over 24 distinct artifacts: 24 done"


def test_status_of_a_copied_save_path_reports_the_copy(byhand, tmp_path):
    _, save = byhand
    copy = tmp_path / "moved"
    shutil.copytree(save, copy)
    victim = sorted((copy / "artifacts").glob("imp-*"))[0]
    shutil.rmtree(victim)
    status = run_sweep(tmp_path, "status", str(copy), "--details")
    assert status.returncode == 1
    missing = [line for line in status.stdout.splitlines() if " missing" in line and line.startswith("  ")]
    assert [line.split()[:2] for line in missing] == [["imp", "missing"]]  # of one (config, seed)
    assert "totals over 24 distinct artifacts: 23 done, 1 missing" in status.stdout
    original = run_sweep(tmp_path, "status", str(save))
    assert original.returncode == 0


def test_status_names_missing_and_failed_stages(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    write_configs(tmp_path, fake_cifar10, save)
    # A config whose training diverges: its dense jobs fail, and everything after them is skipped.
    bad = sweep_config(fake_cifar10, save, 0.5, optimizer__lr=1.0e6)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = run_sweep(tmp_path, "bad.yaml", "-seeds", "0", "--executor", "local", "-threads", "1")
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout and "skipped" in proc.stdout
    status = run_sweep(tmp_path, "status", str(save), "--details")
    assert status.returncode == 1
    failed = [line for line in status.stdout.splitlines() if " failed " in line and line.startswith("  ")]
    assert failed and all("diverged" in line and "_log.out" in line for line in failed[:1])
    assert re.search(r"totals over \d+ distinct artifacts: .*failed", status.stdout)
    assert "--failed" in status.stdout.splitlines()[-1]
    tails = run_sweep(tmp_path, "status", str(save), "--failed")
    assert tails.returncode == 1
    assert re.search(r"^FAILED dense_A \(dense-[0-9a-f]{12}\) of bad/seed_0: job \S+, log ", tails.stdout, re.M)
    assert "diverged" in tails.stdout.split("FAILED dense_A", 1)[1]


# ------------------------------------------------------------------ Slurm


slurm = pytest.mark.skipif(shutil.which("sbatch") is None,
                           reason="no sbatch on PATH: start a local Slurm with scripts/slurm-local.sh (as root)")


@slurm
def test_slurm_sweep_survives_scancel_and_equals_experiment_by_hand(tmp_path, fake_cifar10, reference):
    save = tmp_path / "runs"
    # Longer dense training than the reference's would change the numbers: same config, so epochs stay.
    write_configs(tmp_path, fake_cifar10, save)
    args = ["s*.yaml", "-seeds", "0,1", "--executor", "slurm", "-threads", "1", "--time-min", "10"]
    proc = run_sweep(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(sorted((save / "sweep" / "records").glob("*.json"))[-1].read_text())
    dense_jobs = [j for j in record["jobs"].values() if j["what"].startswith("dense")]
    assert len(dense_jobs) == 4 and all(j["job_id"] for j in dense_jobs)

    # Cancel a dense training once it has finished an epoch (its state file exists), mid-training.
    deadline, victim = time.monotonic() + 180, None
    while victim is None and time.monotonic() < deadline:
        for name, job in record["jobs"].items():
            if job["what"].startswith("dense") and (save / "artifacts" / name / "train_state.safetensors").exists():
                victim = job["job_id"]
                break
        time.sleep(0.05)
    assert victim, "no dense training was seen in progress"
    subprocess.run(["scancel", victim], check=True)
    wait_for_queue_to_drain(record, timeout=400)
    first = run_sweep(tmp_path, "status", str(save))
    assert first.returncode == 1  # the cancelled job's artifact and its dependents are not done

    proc = run_sweep(tmp_path, *args, "--wait", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = run_sweep(tmp_path, "status", str(save))
    assert status.returncode == 0 and "24 done" in status.stdout
    assert numbers(save) == reference
    trained_once(save, all_logs(save))


@slurm
def test_packed_slurm_sweep_equals_experiment_by_hand(tmp_path, fake_cifar10, reference):
    save = tmp_path / "runs"
    write_configs(tmp_path, fake_cifar10, save)
    args = ["s*.yaml", "-seeds", "0,1", "--executor", "slurm", "-threads", "1", "--time-min", "10", "--pack", "seed"]
    proc = run_sweep(tmp_path, *args, "--wait", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(next((save / "sweep" / "records").glob("*.json")).read_text())
    job_ids = {j["job_id"] for j in record["jobs"].values()}
    # 24 artifacts; per seed dense A, dense B, IMP x 2 alone, pi + interpolation together, each sparsity's
    # permuted mask and sparse runs together: 7 Slurm jobs a seed.
    assert len(record["jobs"]) == 24 and len(job_ids) == 14
    assert "24 jobs submitted as 14 Slurm jobs" in proc.stdout
    status = run_sweep(tmp_path, "status", str(save))
    assert status.returncode == 0 and "24 done" in status.stdout
    assert numbers(save) == reference
    trained_once(save, all_logs(save))
    assert not (save / "sweep" / "logs" / "%j").exists()


def wait_for_queue_to_drain(record: dict, timeout: float) -> None:
    ids = {j["job_id"].split("_")[0] for j in record["jobs"].values() if j["job_id"]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if not ids & {q.split("_")[0] for q in queue}:
            return
        time.sleep(1)
    subprocess.run(["scancel", *ids], check=False)
    pytest.fail("Slurm jobs still queued")


@slurm
def test_a_job_at_its_time_limit_is_requeued_and_resumes_from_its_last_epoch(tmp_path, fake_cifar10):
    EPOCHS = 6000  # noqa: N806 (a constant of this test)
    save = tmp_path / "runs"
    # Dense A long enough to outlive Slurm's warning (sent up to 30 s before the 1-minute limit): on a quiet
    # machine an epoch of 128 images takes about 0.01 s, and 3,000 of them once finished before the warning.
    cfg = sweep_config(fake_cifar10, save, 0.5, epochs=EPOCHS, model_b_epochs=3, sparse_epochs=3,
                       train_subset=128, test_subset=64, eval_every=100, sparse__runs=["lth"])
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump({"launcher": {"executor": "slurm", "time_min": 1,
                                                                         "signal_delay_s": 30}}))
    run_sweep(tmp_path, "long.yaml", "-seeds", "0", "--launcher", "launcher.yaml", "-threads", "1", "--wait",
              timeout=900)
    # With a 1-minute limit, a short job may get its warning before submitit listens for it and fail; the
    # same command without the limit then finishes what is left, as a user would after any failure.
    proc = run_sweep(tmp_path, "long.yaml", "-seeds", "0", "--executor", "slurm", "-threads", "1", "--wait",
                     timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = all_logs(save)
    assert "requeueing" in logs and re.search(rf"\[dense_A\] resuming from epoch (\d+)/{EPOCHS}", logs), logs[-3000:]
    resumed = int(re.search(rf"\[dense_A\] resuming from epoch (\d+)/{EPOCHS}", logs).group(1))
    assert resumed > 0
    dense_a = dense_dir(save, "A")
    epochs = [json.loads(line)["epoch"] for line in (dense_a / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))  # every epoch once: nothing lost to the requeue, nothing twice

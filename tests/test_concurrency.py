"""Real processes of experiment.py running at the same time on one save_path (DESIGN §3.3: locks).

Every test starts real subprocesses together, with no mocks, and then checks what the locks promise:
every artifact is made exactly once however many processes need it, nothing a process writes is lost,
and the numbers are exactly those of one process running alone. On CPU with one thread a run is
bit-reproducible, so "the same numbers" means equal, not approximately equal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from phases import graph
from pruning.imp import planned_amounts
from tests.test_pipeline import run, run_dir, tiny_config
from utils.artifacts import SCRATCH
from utils.config import config_from_dict
from utils.locks import exclusive, read_holder

REPO = Path(__file__).resolve().parent.parent
# Generous: a tiny run takes ~10 s on an idle core; the limit only turns a hang (a lock never released,
# a deadlock) into a failure instead of a stuck test session.
WAIT_S = 150
KINDS = ("dense", "impchain", "imp", "perm", "pmask", "interp", "sparse")
MAKING = re.compile(r"^\[[^\]]+\] making (\S+)$", re.M)
ARTIFACT_WAIT = re.compile(r"^\[lock\] waiting for (?:" + "|".join(KINDS) + r")-[0-9a-f]+: ", re.M)
ROUND_REMOVED = re.compile(r"^\[imp\] round (\d+): removed (.*?), test accuracy", re.M)
ROUND_REUSED = re.compile(r"^\[imp\] round (\d+): reusing ", re.M)
IMP_MADE = re.compile(r"^\[imp\] making (\S+)$", re.M)


def base_config(root: Path, save: Path, **over: Any) -> dict:
    """The tiny pipeline config with a dense training long enough (12 epochs) that processes overlap."""
    over = {"epochs": 12, "sparse_epochs": 4, "sparse__random_control": False, **over}
    return tiny_config(root, save, **over)


def comparable(results: dict) -> dict:
    """results.json without where, when and by what it was written: everything left is a number or a name."""
    return {k: v for k, v in results.items() if k not in ("artifacts", "config_path", "provenance")}


def read_results(save: Path, label: str) -> dict:
    return json.loads((run_dir(save, label) / "results.json").read_text())


@dataclass
class Finished:
    rc: int
    out: str
    err: str
    seconds: float


class Proc:
    """One experiment.py subprocess; output goes to files, so several never block on full pipes."""

    started: list[Proc] = []

    def __init__(self, cwd: Path, config: str, *args: str, name: str):
        self.out_path, self.err_path = cwd / f"{name}.out", cwd / f"{name}.err"
        command = [sys.executable, str(REPO / "experiment.py"), "-config", config, "-seed", "0", "-threads", "1",
                   "--no-progress", *args]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.began = time.monotonic()
            self.popen = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        Proc.started.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def finish(self, timeout: float = WAIT_S) -> Finished:
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=30)
            pytest.fail(f"pid {self.pid} still running after {timeout} s (hung on a lock?):\n"
                        f"{self.out_path.read_text()[-3000:]}\n{self.err_path.read_text()[-3000:]}")
        return Finished(rc, self.out_path.read_text(), self.err_path.read_text(), time.monotonic() - self.began)


@pytest.fixture(autouse=True)
def _no_orphans() -> Iterator[None]:
    """A test that fails early must not leave its subprocesses training behind it (they share 2 cores)."""
    yield
    for proc in Proc.started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(timeout=30)
    Proc.started.clear()


def finish_ok(procs: list[Proc]) -> list[Finished]:
    done = [p.finish() for p in procs]
    for d in done:
        assert d.rc == 0, f"exit {d.rc}\n{d.out[-3000:]}\n{d.err[-3000:]}"
        assert "error:" not in d.err and "Traceback" not in d.err, d.err
    return done


def artifact_dirs(save: Path) -> list[Path]:
    return sorted(p for p in (save / "artifacts").iterdir() if p.is_dir() and not p.name.startswith("."))


def assert_each_artifact_made_once(save: Path, outs: list[str]) -> None:
    """Every artifact folder on disk was announced as made exactly once, summed over all processes."""
    made = Counter(m for out in outs for m in MAKING.findall(out))
    twice = {d: n for d, n in made.items() if n != 1}
    assert not twice, f"artifacts made more than once: {twice}"
    # The round chain is written inside the IMP step and has no "making" line of its own.
    on_disk = {str(d) for d in artifact_dirs(save) if not d.name.startswith("impchain-")}
    assert set(made) == on_disk
    for d in artifact_dirs(save):  # the chain stays open for deeper targets: it is never marked complete
        if not d.name.startswith("impchain-"):
            assert json.loads((d / "manifest.json").read_text()).get("complete") is True, d


def assert_metrics_not_duplicated(save: Path) -> None:
    """Each artifact's metrics.jsonl: one record per (run, epoch), epochs 1..n with no gap or repeat."""
    seen_any = False
    for d in artifact_dirs(save):
        path = d / "metrics.jsonl"
        if not path.exists():
            continue
        seen_any = True
        records = [json.loads(line) for line in path.read_text().splitlines()]
        keys = [(r["run"], r["epoch"]) for r in records]
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        assert not dupes, f"{path}: duplicated records {dupes}"
        by_run: dict[str, list[int]] = {}
        for run_name, epoch in keys:
            by_run.setdefault(run_name, []).append(epoch)
        for run_name, epochs in by_run.items():
            assert sorted(epochs) == list(range(1, len(epochs) + 1)), (path, run_name, epochs)
        if d.name.startswith("dense-"):
            role = json.loads((d / "manifest.json").read_text())["settings"]["role"]
            assert len(by_run[f"dense_{role}"]) == json.loads((d / "result.json").read_text())["epochs"], path
    assert seen_any


def assert_each_round_trained_once(save: Path, outs: list[str], targets: list[float], prune_perc: float,
                                   tolerance: float) -> None:
    """Each IMP round of the shared chain was fine-tuned exactly once over all processes.

    A round is trained iff its chain file is absent when IMP reaches it; it then prints ``removed``
    when it stores the file, but a round trained while another process stored the same file prints
    nothing (the file exists by then). So per process, the rounds of its IMP must equal its
    ``reusing`` plus ``removed`` lines, and over all processes the ``removed`` lines must be distinct
    and as many as the chain's round files.
    """
    chains = list((save / "artifacts").glob("impchain-*"))
    assert len(chains) == 1, chains
    files = sorted(chains[0].glob("round_*.safetensors"))
    # Rounds are keyed by the amounts of all rounds up to them: distinct prefixes of the targets' schedules.
    prefixes = {tuple(round(a, 6) for a in planned_amounts(t, prune_perc, tolerance, 5000)[:i + 1])
                for t in targets for i in range(len(planned_amounts(t, prune_perc, tolerance, 5000)))}
    assert len(files) == len(prefixes), ([f.name for f in files], prefixes)
    removed = [m for out in outs for m in ROUND_REMOVED.findall(out)]
    assert len(removed) == len(files), removed
    assert len(set(removed)) == len(removed), removed
    for out in outs:
        for imp_dir in IMP_MADE.findall(out):
            rounds = json.loads((Path(imp_dir) / "result.json").read_text())["rounds"]
            stated = len(ROUND_REMOVED.findall(out)) + len(ROUND_REUSED.findall(out))
            assert stated == rounds, f"{imp_dir}: {rounds} rounds but {stated} stored or reused\n{out}"


class Reference:
    """results.json of the base config, both phases, made by one process alone (this one) in its own save_path.

    Made on first use, which the tests time to fall while their subprocesses start (importing torch
    takes most of their first seconds), so the reference costs little extra wall time.
    """

    def __init__(self, where: Path, data_root: Path):
        self.where, self.data_root = where, data_root
        self._results: dict | None = None

    def results(self) -> dict:
        if self._results is None:
            save = self.where / "runs"
            assert run(self.where, base_config(self.data_root, save), "-threads", "1") == 0
            self._results = read_results(save, "cfg")
        return self._results

    def copy_phase1(self, save: Path) -> None:
        """Put the reference's phase-1 artifacts into ``save``: phase 1 of the same config, without rerunning it."""
        self.results()
        for d in artifact_dirs(self.where / "runs"):
            if not d.name.startswith("sparse-"):
                shutil.copytree(d, save / "artifacts" / d.name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, fake_cifar10: Path) -> Reference:
    return Reference(tmp_path_factory.mktemp("reference"), fake_cifar10)


def test_two_processes_of_one_config_make_every_artifact_once(tmp_path: Path, fake_cifar10: Path,
                                                              reference: Reference) -> None:
    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(base_config(fake_cifar10, save)))
    procs = [Proc(tmp_path, "cfg.yaml", name=f"p{i}") for i in range(2)]
    expected = comparable(reference.results())
    outs = [d.out for d in finish_ok(procs)]

    assert_each_artifact_made_once(save, outs)
    assert_metrics_not_duplicated(save)
    assert_each_round_trained_once(save, outs, [0.6], 0.3, 0.005)
    # Without a wait the two may simply have run one after the other, and the test would prove nothing
    # about the locks: one of them must have found an artifact being made by the other.
    assert any(ARTIFACT_WAIT.search(out) for out in outs), outs
    results = read_results(save, "cfg")
    assert {k: sorted(v) for k, v in results["sparse"].items()} == {
        "0": ["lth", "naive", "permuted"], "1": ["lth", "naive", "permuted"]}
    assert comparable(results) == expected


def test_four_sparsities_of_one_width_at_once_share_dense_models_and_imp_rounds(tmp_path: Path,
                                                                                fake_cifar10: Path) -> None:
    targets = [0.5, 0.6, 0.7, 0.8]
    save, ref_save = tmp_path / "runs", tmp_path / "ref" / "runs"

    def config(save_path: Path, sparsity: float) -> dict:
        return base_config(fake_cifar10, save_path, pruning__sparsity=sparsity, pruning__prune_perc=0.3,
                           pruning__tolerance=0.005, rewind_points=[0])

    names = [f"s{round(100 * t)}" for t in targets]
    for name, t in zip(names, targets, strict=True):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config(save, t)))
    procs = [Proc(tmp_path, f"{name}.yaml", "-pretrain", "True", name=name) for name in names]
    # The sequential reference runs here, in this process, while the four others run: same numbers, less wall time.
    (tmp_path / "ref").mkdir()
    for name, t in zip(names, targets, strict=True):
        assert run(tmp_path / "ref", config(ref_save, t), "-pretrain", "True", "-threads", "1",
                   name=f"{name}.yaml") == 0
    outs = [d.out for d in finish_ok(procs)]

    everything = "\n".join(outs)
    for label in ("[dense A]", "[dense B]", "[match]", "[interp]"):
        assert everything.count(f"{label} making ") == 1, label
    assert everything.count("[imp] making ") == 4 and everything.count("[pmask] making ") == 4
    assert_each_artifact_made_once(save, outs)
    assert_metrics_not_duplicated(save)
    assert_each_round_trained_once(save, outs, targets, 0.3, 0.005)
    assert any(ARTIFACT_WAIT.search(out) for out in outs), outs
    for name in names:
        assert comparable(read_results(save, name)) == comparable(read_results(ref_save, name)), name


def test_two_phase2_processes_with_different_rewind_points_lose_nothing(tmp_path: Path, fake_cifar10: Path,
                                                                        reference: Reference) -> None:
    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(base_config(fake_cifar10, save)))
    # Phase 1 done, and no run directory yet: both processes create it and fill it at the same time.
    reference.copy_phase1(save)
    expected = comparable(reference.results())
    procs = [Proc(tmp_path, "cfg.yaml", "-pretrain", "False", "--rewind", str(k), name=f"k{k}") for k in (0, 1)]
    outs = [d.out for d in finish_ok(procs)]

    # Each writes results.json after every sparse run from all finished artifacts, under the run
    # directory's lock: whichever writes last must hold both rewind points, with the numbers of one process.
    sparse_made = [m for out in outs for m in MAKING.findall(out)]
    assert len(sparse_made) == 6 and len(set(sparse_made)) == 6, sparse_made
    results = read_results(save, "cfg")
    assert set(results["sparse"]) == {"0", "1"}
    assert comparable(results) == expected
    runs = {json.loads(line)["run"] for line in (run_dir(save, "cfg") / "metrics.jsonl").read_text().splitlines()}
    assert {f"sparse_{r}_k{k}" for r in ("lth", "naive", "permuted") for k in (0, 1)} <= runs


def artifact_being_made_by(save: Path, pid: int) -> Path | None:
    """An artifact that ``pid`` is making now: it has a scratch (resume) file and ``pid`` holds its lock.

    Scratch files exist only between a training's first epoch and its finish, all under the
    artifact's lock, so a kill right after seeing one surely lands while that lock is held.
    """
    arts = save / "artifacts"
    for d in arts.glob("*-*"):
        if any((d / name).exists() for name in SCRATCH):
            holder = read_holder(arts / ".locks" / f"{d.name}.lock")
            if holder and holder.get("pid") == pid:
                return d
    return None


def test_a_lock_left_by_a_killed_process_does_not_block_the_rerun(tmp_path: Path, fake_cifar10: Path,
                                                                  reference: Reference) -> None:
    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(base_config(fake_cifar10, save)))
    proc = Proc(tmp_path, "cfg.yaml", name="killed")
    # Usually dense A mid-training; any later training will do if a loaded machine makes the poll miss it.
    deadline, victim = time.monotonic() + WAIT_S, None
    while time.monotonic() < deadline and proc.popen.poll() is None:
        victim = artifact_being_made_by(save, proc.pid)
        if victim is not None:
            break
        time.sleep(0.005)
    assert victim is not None and proc.popen.poll() is None, \
        f"never saw the process inside a training: {proc.out_path.read_text()}"
    proc.popen.send_signal(signal.SIGKILL)
    assert proc.popen.wait(timeout=30) == -signal.SIGKILL
    # The dead holder's line is still in the lock file: the rerun meets a lock file naming a dead process.
    lock_path = save / "artifacts" / ".locks" / f"{victim.name}.lock"
    stale = read_holder(lock_path)
    assert stale is not None and stale["pid"] == proc.pid
    assert json.loads((victim / "manifest.json").read_text())["complete"] is False

    # A lock timeout turns "blocked by the dead process" into a prompt, explicit failure instead of a hang.
    rerun = Proc(tmp_path, "cfg.yaml", "--lock-timeout", "30", name="rerun")
    expected = comparable(reference.results())
    again = finish_ok([rerun])[0]
    assert "[lock] waiting" not in again.out, again.out
    assert f"making {victim}" in again.out  # it resumed the very artifact the dead process held
    assert again.seconds < 90, again.seconds
    assert read_holder(lock_path) is None  # released cleanly this time
    assert_metrics_not_duplicated(save)
    assert comparable(read_results(save, "cfg")) == expected


def test_lock_timeout_ends_with_one_line_naming_the_artifact_and_its_holder(tmp_path: Path,
                                                                            fake_cifar10: Path) -> None:
    save = tmp_path / "runs"
    raw = base_config(fake_cifar10, save)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    dense_a = graph.dense(config_from_dict(raw), 0, "A")  # the first artifact the run needs
    with exclusive(dense_a.lock_path, dense_a.name):
        done = Proc(tmp_path, "cfg.yaml", "--lock-timeout", "2", name="timeout").finish(timeout=60)
        # The waiter must leave the holder line alone: it is what the next waiter reports.
        assert read_holder(dense_a.lock_path)["pid"] == os.getpid()
    assert done.rc > 0, (done.rc, done.out, done.err)  # an error exit, not a crash by signal
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.err
    assert dense_a.name in lines[0] and f"pid {os.getpid()} " in lines[0], lines[0]
    assert done.seconds < 30, done.seconds
    # It gave up waiting, it did not make the artifact behind the lock's back.
    assert "[dense A] making" not in done.out and not dense_a.complete

"""Provenance: every manifest and results.json says which commit, packages, device and command made it."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from analysis import table
from tests.test_pipeline import artifacts, run, run_dir, tiny_config
from utils import provenance
from utils.provenance import COMPARED, git_state

FIELDS = ("commit", "dirty", "python", "torch", "torchvision", "cuda", "cudnn", "device", "command", "host",
          "process_started")


def test_manifests_and_results_record_what_made_them(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, epochs=2, sparse_epochs=2, rewind_points=[1], pruning__sparsity=0.5,
                      pruning__prune_perc=0.5, sparse__random_control=False)
    assert run(tmp_path, cfg, "-pretrain", "True") == 0
    results = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    prov = results["provenance"]
    assert set(FIELDS) | {"written", "artifacts"} <= set(prov)
    assert prov["python"] == platform.python_version() and prov["torch"] == torch.__version__
    assert prov["cuda"] == torch.version.cuda
    assert prov["device"].startswith("cpu (")
    assert prov["command"] == shlex.join([sys.executable, *sys.argv])  # this process's command line
    assert prov["process_started"] <= prov["written"]
    head = subprocess.run(["git", "-C", str(provenance.PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    if head.returncode == 0:
        assert prov["commit"] == head.stdout.strip() and isinstance(prov["dirty"], bool)
    made = prov["artifacts"]
    assert set(made) == set(results["artifacts"]) >= {"dense_A", "dense_B", "imp", "perm", "pmask", "interp"}
    for name, entry in made.items():
        assert {k: entry[k] for k in COMPARED} == {k: prov[k] for k in COMPARED}, name  # all made here
        assert entry["started"] <= entry["finished"], name
    for kind in ("dense", "imp", "impchain", "perm", "pmask", "interp"):
        for folder in artifacts(save, kind):
            manifest = json.loads((folder / "manifest.json").read_text())
            if not manifest.get("complete"):
                continue  # the IMP chain is a store of rounds, never finished
            assert set(FIELDS) <= set(manifest["provenance"]), folder
            assert manifest["provenance"]["commit"] == prov["commit"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def test_git_state_commit_dirty_and_not_a_checkout(tmp_path):
    state = git_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and "not a git checkout" in state["git"]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    git(repo, "add", "code.py")
    git(repo, "commit", "-q", "-m", "one")
    state = git_state(repo)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (repo / "runs").mkdir()
    (repo / "runs" / "results.json").write_text("{}")  # untracked outputs do not make the code dirty
    assert git_state(repo)["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    assert git_state(repo) == {"commit": state["commit"], "dirty": True}


def test_git_state_without_git_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert git_state(provenance.PROJECT_ROOT)["commit"] is None


def write_seed(save: Path, seed: int, **prov) -> None:
    folder = save / "cfg-h" / f"seed_{seed}"
    folder.mkdir(parents=True)
    base = {"commit": "a" * 40, "dirty": False, "python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1",
            "cuda": None, "cudnn": None, "device": "cpu (x)", "command": f"python experiment.py -seed {seed}"}
    record = {**base, **prov}
    res = {"config_hash": "h", "seed": seed, "config": "cfg", "dense": {"A": {"accuracy": 90.0, "loss": 0.3}},
           "sparse": {"1": {"lth": {"accuracy": 80.0, "loss": 0.5}}},
           "provenance": {**record, "artifacts": {"dense_A": {k: record[k] for k in COMPARED}}}}
    (folder / "results.json").write_text(json.dumps(res))


def test_analysis_names_what_differs_across_seeds(tmp_path, capsys):
    same, differ = tmp_path / "same", tmp_path / "differ"
    for seed in (0, 1):
        write_seed(same, seed)  # commands differ per seed: that is no difference of code or machine
    write_seed(differ, 0)
    write_seed(differ, 1, torch="2.13.0", device="cuda:0 (NVIDIA H200)")
    assert table.main([str(same)]) == 0
    assert "note:" not in capsys.readouterr().err
    assert table.main([str(differ)]) == 0
    err = capsys.readouterr().err
    assert "different torch, device" in err and "--provenance" in err
    assert table.main([str(differ), "--provenance"]) == 0
    out = capsys.readouterr().out
    assert "| torch * | 2.14.1 | 2.13.0 |" in out and "| device * | cpu (x) | cuda:0 (NVIDIA H200) |" in out
    assert f"| commit | {'a' * 12} | {'a' * 12} |" in out


def test_analysis_shows_artifacts_of_one_seed_made_by_two_commits(tmp_path, capsys):
    write_seed(tmp_path, 0)
    path = tmp_path / "cfg-h" / "seed_0" / "results.json"
    res = json.loads(path.read_text())
    res["provenance"]["artifacts"]["sparse_lth_k1"] = {**res["provenance"]["artifacts"]["dense_A"], "commit": "b" * 40}
    path.write_text(json.dumps(res))
    assert table.main([str(tmp_path), "--provenance"]) == 0
    assert f"| commit * | {'a' * 12}, {'b' * 12} |" in capsys.readouterr().out

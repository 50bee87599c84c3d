"""Damaged, truncated, edited and leftover files, and the guards: the DESIGN §3.3 contract.

Every case must end in exactly one ``error: ...`` line (naming the artifact folder or the setting) with a
non-zero exit status, or in a result identical to the undamaged run's; never a traceback, never a silently
wrong number, and never minutes of work before stopping. The runs are in-process (``experiment.main``) to
keep the module under ~100 s on two shared cores; the per-process verification cache is reset before each
rerun so every rerun behaves like a fresh ``python experiment.py``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

import experiment
import training.loop as loop
from phases import graph
from tests.test_pipeline import tiny_config
from utils import artifacts as artifacts_mod
from utils import locks
from utils.config import Config, config_from_dict

SEED = 0
RESULT_KEYS = ("config_hash", "seed", "dense", "imp", "matching", "sparse")


# ----------------------------------------------------------------------------------------------- helpers


def small_config(root: Path, save: Path, **over: Any) -> dict:
    """Phase 1 in about a second: 2 dense epochs, one IMP round, one rewind point."""
    base = {"epochs": 2, "sparse_epochs": 2, "rewind_points": [0], "pruning__sparsity": 0.3,
            "sparse__random_control": False}
    return tiny_config(root, save, **{**base, **over})


def as_config(cfg: dict) -> Config:
    return config_from_dict(cfg, check_data=False)


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner sets these module globals from the command line and never resets them; the set of
    # already-hashed artifacts is "first use per process". Each test starts as a new process would.
    monkeypatch.setattr(artifacts_mod, "_deep_verified", set())
    monkeypatch.setattr(artifacts_mod, "VERIFY_ALWAYS", False)
    monkeypatch.setattr(locks, "DEFAULT_TIMEOUT", None)


def run_cli(cwd: Path, config: Path | str, *args: str) -> int:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        # A fresh cache per call: two calls in one test are two processes.
        artifacts_mod._deep_verified.clear()
        return experiment.main(["-config", str(config), "-seed", str(SEED), "--no-progress", *args])
    finally:
        os.chdir(old)


def write_config(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def the_error_line(err: str) -> str:
    """stderr must be exactly one line ``error: ...`` (no traceback, no warning lines around it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def results_files(save: Path) -> list[Path]:
    return sorted(save.glob(f"*/seed_{SEED}/results.json"))


def numbers(results: dict) -> dict:
    # Paths (artifacts, config_path) legitimately differ between a copy and the original.
    return {k: results.get(k) for k in RESULT_KEYS}


def non_finite(obj: Any) -> list[str]:
    """Paths of NaN/inf floats in a JSON document (json.loads accepts NaN and Infinity)."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else ["."]
    if isinstance(obj, dict):
        return [f"{k}{p}" for k, v in obj.items() for p in non_finite(v)]
    if isinstance(obj, list):
        return [f"[{i}]{p}" for i, v in enumerate(obj) for p in non_finite(v)]
    return []


def garble(path: Path, region: str, count: int = 8) -> None:
    """Invert ``count`` bytes in the middle of a safetensors file's JSON header or of its tensor data."""
    data = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    if region == "header":
        start, end = 8, 8 + header_len
    else:
        start, end = 8 + header_len, len(data)
    assert end - start > count, (path, region)
    mid = start + (end - start) // 2 - count // 2
    for i in range(mid, mid + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def in_manifest(path: Path) -> bool:
    """Whether ``path`` belongs to a complete artifact (listed in its folder's complete manifest)."""
    manifest = path.parent / artifacts_mod.MANIFEST
    if not manifest.exists():
        return False
    m = json.loads(manifest.read_text())
    return bool(m.get("complete")) and path.name in m.get("files", {})


# ----------------------------------------------------------------------------------- the finished run


@dataclass
class Finished:
    save: Path  # a finished both-phase save_path: copy it, never modify it
    cfg: dict
    results: dict  # the undamaged run's results.json


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, fake_cifar10: Path) -> Finished:
    base = tmp_path_factory.mktemp("finished")
    save = base / "runs"
    cfg = tiny_config(fake_cifar10, save)
    artifacts_mod._deep_verified.clear()
    assert run_cli(base, write_config(base / "cfg.yaml", cfg)) == 0
    (found,) = results_files(save)
    return Finished(save=save, cfg=cfg, results=json.loads(found.read_text()))


@dataclass
class Replica:
    root: Path
    save: Path
    config: Path
    cfg: Config


@pytest.fixture
def replica(finished: Finished, tmp_path: Path) -> Iterator[Replica]:
    """A private copy of the finished save_path, its run directory removed so a rerun must rewrite it."""
    save = tmp_path / "runs"
    shutil.copytree(finished.save, save)
    for results in results_files(save):
        shutil.rmtree(results.parent.parent)
    cfg = {**finished.cfg, "save_path": str(save)}
    yield Replica(root=tmp_path, save=save, config=write_config(tmp_path / "cfg.yaml", cfg), cfg=as_config(cfg))
    shutil.rmtree(save, ignore_errors=True)  # about 12 MB per case; a hundred cases would fill /tmp


# Every safetensors file of the finished run, by what it is; test_cases_cover_every_tensor_file keeps the
# list honest when the pipeline starts writing another file.
TENSOR_FILES = [
    *(f"dense_{role}/{name}" for role in ("A", "B") for name in ("epoch_0", "epoch_1", "final")),
    "imp/mask", "imp/model",
    "impchain/round_1", "impchain/round_2", "impchain/round_3",
    "perm/permutation", "pmask/mask_a_permuted",
    *(f"sparse_{run}_k{k}/final" for k in (0, 1) for run in ("lth", "naive", "permuted", "random")),
]


def resolve(cfg: Config, what: str) -> Path:
    """The path of a file named as in TENSOR_FILES (``<artifact>/<file stem>``) or ``<artifact>/<file>``."""
    node, name = what.split("/")
    if node.startswith("dense_"):
        art = graph.dense(cfg, SEED, node[-1])
    elif node.startswith("sparse_"):
        run, k = node[len("sparse_"):].rsplit("_k", 1)
        art = graph.sparse(cfg, SEED, int(k), run)
    elif node == "impchain":
        (found,) = graph.imp_chain(cfg, SEED).dir.glob(f"{name}-*.safetensors")
        return found
    else:
        art = {"imp": graph.imp, "perm": graph.permutation, "pmask": graph.permuted_mask,
               "interp": graph.interpolation}[node](cfg, SEED)
    return art.path(name if "." in name else f"{name}.safetensors")


def test_cases_cover_every_tensor_file(finished: Finished) -> None:
    cfg = as_config(finished.cfg)
    listed = {resolve(cfg, what) for what in TENSOR_FILES}
    on_disk = set(finished.save.rglob("*.safetensors"))
    assert listed == on_disk, {"not covered": sorted(on_disk - listed), "absent": sorted(listed - on_disk)}


def rerun_outcome(c: Replica, damaged: Path, capsys: pytest.CaptureFixture[str], reference: dict, *args: str) -> str:
    """Run again; "detected" (one error line naming the damaged file's folder) or "correct" (same numbers)."""
    capsys.readouterr()
    began = time.monotonic()
    rc = run_cli(c.root, c.config, *args)
    seconds = time.monotonic() - began
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert seconds < 30, f"{seconds:.0f} s before stopping"
    if rc == 0:
        (found,) = results_files(c.save)
        got = json.loads(found.read_text())
        assert numbers(got) == numbers(reference), f"exit 0 with different numbers after damaging {damaged}"
        return "correct"
    assert rc == 2, (rc, err)
    line = the_error_line(err)
    assert str(damaged.parent) in line and "delete" in line, line
    for found in results_files(c.save):  # written by the steps before the damage was met
        assert_no_other_numbers(json.loads(found.read_text()), reference)
    return "detected"


def assert_no_other_numbers(got: dict, reference: dict) -> None:
    """A partial results.json may lack entries, but every number it has is the undamaged run's."""
    for key in ("dense", "imp", "matching"):
        if key in got:
            assert got[key] == reference[key], key
    for k, runs in got.get("sparse", {}).items():
        for run, entry in runs.items():
            assert entry == reference["sparse"][k][run], (k, run)


# ---------------------------------------------------------------- 1. garbled bytes in every tensor file

OUTCOMES: dict[str, str] = {}  # case id -> "detected" | "correct", for test_garbled_counts
GARBLE_CASES = [(what, region, mode) for mode in ("verify", "plain") for region in ("data", "header")
                for what in TENSOR_FILES]


@pytest.mark.parametrize(("what", "region", "mode"), GARBLE_CASES,
                         ids=[f"{w}-{r}-{m}" for w, r, m in GARBLE_CASES])
def test_garbled_tensor_file(replica: Replica, finished: Finished, capsys: pytest.CaptureFixture[str], what: str,
                             region: str, mode: str) -> None:
    path = resolve(replica.cfg, what)
    listed = in_manifest(path)
    garble(path, region)
    got = rerun_outcome(replica, path, capsys, finished.results, *(["--verify"] if mode == "verify" else []))
    OUTCOMES[f"{what}-{region}-{mode}"] = got
    if mode == "verify" and listed:
        # --verify hashes every file of every artifact it uses: damage in a complete artifact is always seen.
        assert got == "detected", f"--verify reused a complete artifact with a garbled {path.name}"


def test_garbled_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """The tally of the cases above (shown on the terminal): with --verify only the chain is not detected."""
    if len(OUTCOMES) != len(GARBLE_CASES):
        pytest.skip("needs every test_garbled_tensor_file case in this session")
    tally: dict[str, dict[str, int]] = {}
    for (_, _, mode), got in zip(GARBLE_CASES, (OUTCOMES[f"{w}-{r}-{m}"] for w, r, m in GARBLE_CASES),
                                 strict=True):
        tally.setdefault(mode, {"detected": 0, "correct": 0})[got] += 1
    with capsys.disabled():
        print(f"\n[integrity] garbled tensor files: {tally}")
    # Only the IMP round chain is outside complete manifests (3 files x 2 regions per mode); it is read only
    # when IMP has to run again, so reusing the finished IMP mask gives the undamaged numbers.
    assert tally["verify"] == {"detected": 2 * (len(TENSOR_FILES) - 3), "correct": 6}, tally


def test_garbled_chain_round_is_detected_when_imp_needs_it(replica: Replica,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The chain's rounds carry only their embedded checksum: a rerun of IMP must catch the damage there."""
    path = resolve(replica.cfg, "impchain/round_2")
    garble(path, "data")
    shutil.rmtree(graph.imp(replica.cfg, SEED).dir)  # IMP must be made again from the chain
    capsys.readouterr()
    assert run_cli(replica.root, replica.config, "-pretrain", "True") == 2
    line = the_error_line(capsys.readouterr().err)
    assert str(path.parent) in line and "delete" in line, line
    assert not graph.imp(replica.cfg, SEED).complete


# ------------------------------------------------------------------------------------- 2. truncated files

TRUNCATED = ["dense_A/final", "imp/mask", "sparse_permuted_k1/final", "impchain/round_2",
             *(f"{node}/result.json" for node in ("dense_A", "imp", "perm", "pmask", "interp", "sparse_naive_k0")),
             "dense_A/manifest.json"]


@pytest.mark.parametrize("what", TRUNCATED)
def test_truncated_file(replica: Replica, finished: Finished, capsys: pytest.CaptureFixture[str], what: str) -> None:
    path = resolve(replica.cfg, what)
    listed = path.name == artifacts_mod.MANIFEST or in_manifest(path)
    truncate(path)
    got = rerun_outcome(replica, path, capsys, finished.results)
    if listed:
        # Sizes are checked on every reuse: half a file of a complete artifact never goes unnoticed.
        assert got == "detected", what


# ------------------------------------------------------- result.json garbled in place, phase 2 only

@pytest.mark.parametrize("mode", [
    "verify",
    "plain",
])
@pytest.mark.parametrize("node", ["dense_A", "interp"])
def test_garbled_result_json_in_a_phase2_only_rerun(replica: Replica, finished: Finished,
                                                    capsys: pytest.CaptureFixture[str], node: str, mode: str) -> None:
    path = resolve(replica.cfg, f"{node}/result.json")
    text = path.read_text()
    # Same size, still valid JSON, another number: only the manifest's sha256 can tell.
    key = '"midpoint_accuracy_after": ' if node == "interp" else '"accuracy": '
    at = text.index(key) + len(key)
    digit = text[at]
    assert digit.isdigit(), text[at - 20:at + 20]
    path.write_text(text[:at] + str((int(digit) + 1) % 10) + text[at + 1:])
    got = rerun_outcome(replica, path, capsys, finished.results, "-pretrain", "False",
                        *(["--verify"] if mode == "verify" else []))
    assert got == "detected"


# ----------------------------------------------- 3. the dense B checkpoint a sparse run must start from

@pytest.mark.parametrize("region", ["data", "header"])
def test_garbled_rewind_checkpoint_of_b_with_sparse_runs_to_retrain(replica: Replica,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    region: str) -> None:
    path = resolve(replica.cfg, "dense_B/epoch_0")
    garble(path, region)
    for d in (replica.save / "artifacts").glob("sparse-*"):
        shutil.rmtree(d)
    capsys.readouterr()
    began = time.monotonic()
    rc = run_cli(replica.root, replica.config, "-pretrain", "False", "--rewind", "0")
    assert time.monotonic() - began < 30
    assert rc == 2
    line = the_error_line(capsys.readouterr().err)
    assert str(path.parent) in line and "delete" in line, line
    # Never a sparse result trained from garbage: every B-based k=0 run is absent and its artifact unfinished.
    for run in ("naive", "permuted", "random"):
        assert not graph.sparse(replica.cfg, SEED, 0, run).complete, run
    for found in results_files(replica.save):
        results = json.loads(found.read_text())
        assert set(results["sparse"].get("0", {})) <= {"lth"}, results["sparse"]


# --------------------------------------------------------- 4. an edited epoch in a training-state file


def interrupt_dense_a_after_one_epoch(root: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Phase 1 stopped (Ctrl-C) right after dense A saved its state after epoch 1; returns that state file."""
    real = loop._save_state

    def stop_after_epoch_1(path, model, opt, sched, epoch, spec) -> None:
        real(path, model, opt, sched, epoch, spec)
        if epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(loop, "_save_state", stop_after_epoch_1)
        assert run_cli(root, config, "-pretrain", "True") == 130
    (state,) = (Path(yaml.safe_load(config.read_text())["save_path"]) / "artifacts").glob(
        "dense-*/train_state.safetensors")
    return state


def edit_epoch_in_place(state: Path) -> None:
    """Rewrite ``"epoch": 1`` as ``"epoch": 2`` in the header bytes, keeping every length and the checksum."""
    data = state.read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + header_len]
    old, new = b'{\\"epoch\\": 1,', b'{\\"epoch\\": 2,'
    assert header.count(old) == 1, header[:200]
    state.write_bytes(data[:8] + header.replace(old, new) + data[8 + header_len:])


def edit_epoch_with_save_file(state: Path) -> None:
    """Write the file again with safetensors itself: same tensors, epoch 2, the stored checksum kept."""
    with safe_open(str(state), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = dict(f.metadata())
    meta = json.loads(metadata["sparse_rebasin"])
    assert meta["epoch"] == 1
    metadata["sparse_rebasin"] = json.dumps({**meta, "epoch": 2})
    assert "sparse_rebasin.sha256" in metadata
    save_file(tensors, str(state), metadata=metadata)


@pytest.mark.parametrize("edit", [edit_epoch_in_place, edit_epoch_with_save_file], ids=["in_place", "save_file"])
def test_edited_epoch_in_training_state(tmp_path: Path, fake_cifar10: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], edit) -> None:
    cfg = small_config(fake_cifar10, tmp_path / "runs", epochs=3)
    config = write_config(tmp_path / "cfg.yaml", cfg)
    state = interrupt_dense_a_after_one_epoch(tmp_path, config, monkeypatch)
    edit(state)
    capsys.readouterr()
    assert run_cli(tmp_path, config, "-pretrain", "True") == 2
    line = the_error_line(capsys.readouterr().err)
    assert "train_state.safetensors" in line and "damaged" in line and str(state.parent) in line, line
    # Never "dense A complete" after one real epoch of three.
    assert not graph.dense(as_config(cfg), SEED, "A").complete


# ------------------------------------------------------------------------------------------------ 5. guards


def run_guard(tmp_path: Path, cfg: dict, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    config = write_config(tmp_path / "cfg.yaml", cfg)
    capsys.readouterr()
    began = time.monotonic()
    rc = run_cli(tmp_path, config, *args)
    seconds = time.monotonic() - began
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    assert seconds < 30, f"{seconds:.0f} s before the guard stopped the run"
    return the_error_line(err)


@pytest.mark.parametrize("key", ["lr", "weight_decay", "sparse_lr"])
def test_nan_in_the_optimizer_config(tmp_path: Path, fake_cifar10: Path, capsys: pytest.CaptureFixture[str],
                                     key: str) -> None:
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, **{f"optimizer__{key}": float("nan")})
    assert ".nan" in yaml.safe_dump(cfg)  # YAML's NaN, as a user would write it
    line = run_guard(tmp_path, cfg, capsys)
    assert f"optimizer.{key}" in line, line
    assert not save.exists()  # refused before any write


def test_tolerance_not_below_the_target(tmp_path: Path, fake_cifar10: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    save = tmp_path / "runs"
    line = run_guard(tmp_path, tiny_config(fake_cifar10, save, pruning__tolerance=0.9), capsys)
    assert "pruning.tolerance" in line, line
    assert not save.exists()


def within_half_a_weight(sparsity: float, target: float, total: int) -> bool:
    # Tolerance 0 means "as close as whole weights allow" (pruning.imp.reached): half a weight either way.
    return abs(sparsity - target) <= 0.5 / total + 1e-12


def zero_tolerance_contract(rc: int, err: str, save: Path, total: int) -> None:
    """Exit 0 with the target met to the weight, or one error line that names the tolerance key."""
    if rc == 0:
        (found,) = results_files(save)
        reached = json.loads(found.read_text())["imp"]["sparsity"]
        assert within_half_a_weight(reached, 0.95, total), reached
    else:
        assert rc == 2, err
        assert "pruning.tolerance" in the_error_line(err), err


def test_zero_tolerance_at_95_percent_on_the_tiny_model(tmp_path: Path, fake_cifar10: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """150240 prunable weights: 95 % of them is a whole number, so IMP can reach it exactly."""
    cfg = tiny_config(fake_cifar10, tmp_path / "runs", pruning__tolerance=0, pruning__sparsity=0.95)
    config = write_config(tmp_path / "cfg.yaml", cfg)
    capsys.readouterr()
    began = time.monotonic()
    rc = run_cli(tmp_path, config, "-pretrain", "True")
    assert time.monotonic() - began < 30
    zero_tolerance_contract(rc, capsys.readouterr().err, tmp_path / "runs", 150240)


@dataclass
class ZeroTolerance:
    rc: int
    err: str
    seconds: float
    save: Path
    cfg: Config


@pytest.fixture(scope="module")
def off_grid(tmp_path_factory: pytest.TempPathFactory, fake_cifar10: Path) -> ZeroTolerance:
    """Tolerance 0 towards a target that is not a whole number of weights (the case that used to stall).

    Hidden widths 48 and 49 give 150298 prunable weights; 95 % of them is 142783.1, so no round can land on
    the target: the last capped round ends 0.1 weight short of it and the next would remove round(0.1) = 0.
    """
    base = tmp_path_factory.mktemp("off_grid")
    cfg = tiny_config(fake_cifar10, base / "runs", pruning__tolerance=0, pruning__sparsity=0.95,
                      mlp_hidden=[48, 49])
    config = write_config(base / "cfg.yaml", cfg)
    err = StringIO()  # a module fixture cannot use capsys; the runner prints to whatever sys.stderr is
    began = time.monotonic()
    with redirect_stderr(err), redirect_stdout(StringIO()):
        rc = run_cli(base, config, "-pretrain", "True")
    return ZeroTolerance(rc=rc, err=err.getvalue(), seconds=time.monotonic() - began, save=base / "runs",
                         cfg=as_config(cfg))


def test_zero_tolerance_off_whole_weights_ends_at_once(off_grid: ZeroTolerance) -> None:
    """Never endless empty rounds, never a traceback: a result, or one line before any fine-tuning."""
    assert off_grid.seconds < 30
    assert off_grid.rc in (0, 2), off_grid.err
    if off_grid.rc == 2:
        the_error_line(off_grid.err)
        assert not graph.imp(off_grid.cfg, SEED).complete


def test_zero_tolerance_off_whole_weights_meets_the_target_or_names_the_tolerance(off_grid: ZeroTolerance) -> None:
    zero_tolerance_contract(off_grid.rc, off_grid.err, off_grid.save, 150298)


def test_prune_perc_too_small_to_remove_a_weight(tmp_path: Path, fake_cifar10: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # 1e-6 of 150240 weights is 0.15 weight: round 1 would prune nothing, for ever.
    cfg = small_config(fake_cifar10, tmp_path / "runs", pruning__prune_perc=1e-6)
    line = run_guard(tmp_path, cfg, capsys, "-pretrain", "True")
    assert "pruning.prune_perc" in line, line


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_diverging_training(tmp_path: Path, fake_cifar10: Path, capsys: pytest.CaptureFixture[str],
                            which: str) -> None:
    save = tmp_path / "runs"
    # lr 1e6 gives a NaN training loss in the first epoch of the tiny MLP (dense, and masked sparse runs).
    key = "optimizer__lr" if which == "dense" else "optimizer__sparse_lr"
    cfg = small_config(fake_cifar10, save, **{key: 1.0e6})
    line = run_guard(tmp_path, cfg, capsys)
    run = "dense_A" if which == "dense" else "sparse_lth_k0"
    assert f"[{run}]" in line and "epoch 1" in line and "lr 1e+06" in line and "diverged" in line, line
    config = as_config(cfg)
    unfinished = graph.dense(config, SEED, "A") if which == "dense" else graph.sparse(config, SEED, 0, "lth")
    assert not unfinished.complete
    for found in results_files(save):
        text = found.read_text()
        assert not non_finite(json.loads(text)), text
        assert "0" not in json.loads(text)["sparse"]  # no sparse entry from the diverged run
    if which == "sparse":
        assert results_files(save), "phase 1's results.json is kept"


# --------------------------------------------------------------------------------------- 6. run directories


def test_same_file_name_in_two_folders(tmp_path: Path, fake_cifar10: Path) -> None:
    save = tmp_path / "runs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    a = write_config(tmp_path / "configs_a" / "c.yaml", small_config(fake_cifar10, save))
    b = write_config(tmp_path / "configs_b" / "c.yaml", small_config(fake_cifar10, save, pruning__sparsity=0.5))
    # Absolute paths from a working directory outside both: the label alone ("c") cannot tell them apart.
    assert run_cli(elsewhere, a.resolve(), "-pretrain", "True") == 0
    assert run_cli(elsewhere, b.resolve(), "-pretrain", "True") == 0
    found = results_files(save)
    assert len(found) == 2, found
    sparsities = sorted(round(json.loads(p.read_text())["imp"]["sparsity"], 3) for p in found)
    assert sparsities == [0.3, 0.5]

    # An edited config (another dense lr) gets a directory of its own; the first one's results stay as they were.
    (first,) = [p for p in found if json.loads(p.read_text())["imp"]["sparsity"] < 0.4]
    before = first.read_bytes()
    write_config(a, small_config(fake_cifar10, save, optimizer__lr=0.07))
    assert run_cli(elsewhere, a.resolve(), "-pretrain", "True") == 0
    assert len(results_files(save)) == 3
    assert first.read_bytes() == before


def tree(root: Path) -> set[Path]:
    return {Path(d) / name for d, dirs, files in os.walk(root) for name in (*dirs, *files)}


@pytest.mark.parametrize("name", ["...yaml", "..yaml"])
def test_dotted_config_names_stay_inside_save_path(tmp_path: Path, fake_cifar10: Path, name: str) -> None:
    work = tmp_path / "work"
    save = tmp_path / "runs"
    config = write_config(work / name, small_config(fake_cifar10, save))
    before = tree(tmp_path.parent)
    assert run_cli(work, name, "-pretrain", "True") == 0
    outside = sorted(p for p in tree(tmp_path.parent) - before if save not in p.parents and p != save)
    assert not outside, outside
    (found,) = results_files(save)
    assert found.parent.parent.parent == save
    assert config.exists()


# -------------------------------------------------------------------------------------------- 7. temp files


def test_leftover_temp_file_is_removed_on_resume(tmp_path: Path, fake_cifar10: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "cfg.yaml", small_config(fake_cifar10, tmp_path / "runs", epochs=3))
    state = interrupt_dense_a_after_one_epoch(tmp_path, config, monkeypatch)
    leftover = state.parent / ".final.safetensors.xyz.tmp"  # what a writer killed mid-write leaves
    leftover.write_bytes(b"half a file")
    assert run_cli(tmp_path, config, "-pretrain", "True") == 0
    assert not leftover.exists()
    assert not list((tmp_path / "runs").rglob("*.tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_written_files_get_the_umask_mode(tmp_path: Path, fake_cifar10: Path, umask: int) -> None:
    save = tmp_path / "runs"
    config = write_config(tmp_path / "cfg.yaml", small_config(fake_cifar10, save))
    old = os.umask(umask)
    try:
        assert run_cli(tmp_path, config, "-pretrain", "True") == 0
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    (results,) = results_files(save)
    assert oct(results.stat().st_mode & 0o777) == oct(expected)
    modes = {p.relative_to(save): oct(p.stat().st_mode & 0o777) for p in save.rglob("*") if p.is_file()}
    assert {p: m for p, m in modes.items() if m != oct(expected)} == {}

"""A save_path the machine will not write to: read-only, or a disk that fills up during a run.

Run through ``experiment.py`` in a subprocess, as users meet them: one line, exit status 2, no temp file left,
and after a full disk the same command resumes and finishes. The write failures are real ones: a per-process
file-size limit (EFBIG, anywhere), a small tmpfs (ENOSPC) and a read-only mount where the tests run as root
and may mount, a folder without write permission otherwise.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "model_type": "MLP", "mlp_hidden": [16], "dataset": "fashion-mnist", "dataset_root": "/usr/share/datasets/"
    "fashion-mnist", "epochs": 2, "sparse_epochs": 2, "batch_size": 64, "device": "cpu", "rewind_points": [0],
    "train_subset": 256, "test_subset": 128, "num_workers": 0, "threads": 1,
    "pruning": {"sparsity": 0.5, "train_epochs_per_prune": 1}, "matching": {"method": "weight"},
}
fashion = pytest.mark.skipif(not Path(TINY["dataset_root"]).is_dir(), reason="needs Debian's Fashion-MNIST")


def run(tmp_path: Path, save_path: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "save_path": str(save_path)}))

    def limit() -> None:  # in the child: a file past `file_limit` bytes fails to write (EFBIG; Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, str(REPO / "experiment.py"), "-config", str(config), "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if file_limit else None)


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def mount_tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody can write to: a read-only tmpfs (root), else a folder without write permission."""
    folder = tmp_path / "ro"
    if mount_tmpfs(folder, "ro,size=1m"):
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    elif os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        pytest.skip("root without permission to mount: no folder is read-only to root")


@pytest.mark.parametrize("inside", [True, False], ids=["new-folder-under-it", "the-folder-itself"])
def test_read_only_save_path_is_one_line_before_any_work(tmp_path, read_only, inside):
    save_path = read_only / "runs" / "mine" if inside else read_only
    proc = run(tmp_path, save_path)
    line = error_line(proc)
    assert line.startswith(f"error: save_path: '{save_path}'"), line
    assert ("is on a read-only file system" in line) or ("is not writable by you" in line), line
    assert "-save_path DIR" in line and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "tiny.yaml"]  # nothing written next to it either


@fashion
def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path):
    """A file-size limit between the size of a model (51 kB) and of a training state (weights and momentum)."""
    save_path = tmp_path / "runs"
    proc = run(tmp_path, save_path, file_limit=80_000)
    line = error_line(proc)
    assert "File too large" in line and "train_state.safetensors" in line, line  # the file, from safetensors' error
    assert line.endswith("then rerun the same command to resume from the last completed step"), line
    assert "[dense A] making" in proc.stdout and temp_files(save_path) == []
    again = run(tmp_path, save_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert temp_files(save_path) == []
    (results,) = save_path.rglob("results.json")
    assert set(json.loads(results.read_text())["sparse"]["0"]) == {"lth", "naive", "permuted"}


@fashion
def test_no_space_left_on_device_is_one_line(tmp_path):
    """The real ENOSPC, on a 200 kB tmpfs (root only); the same path as the size limit above."""
    small = tmp_path / "small"
    if not mount_tmpfs(small, "size=200k"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        line = error_line(run(tmp_path, small / "runs"))
        assert line.startswith("error: No space left on device (") and ".safetensors" in line, line
        assert temp_files(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)

"""Which code, packages, machine and command made a number: recorded in every manifest and ``results.json``.

Computed once per process (git runs as a subprocess with a timeout), so
stamping every artifact costs nothing measurable. Where a fact cannot be
known (not a git checkout, no git binary, a CPU-only PyTorch), its field is
``None`` and ``git`` says why, never an error: provenance must not stop a run.
"""

from __future__ import annotations

import functools
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 5.0
# What must be equal for two seeds to be comparable runs of one code on one kind of machine; the rest (times,
# command, host) differs between any two runs and says nothing about the number.
COMPARED = ("commit", "dirty", "python", "torch", "torchvision", "cuda", "cudnn", "device")
PROCESS_STARTED = time.strftime("%Y-%m-%d %H:%M:%S%z")
_device: str | None = None


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S%z")


def _git(*args: str, root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git binary, or a hung network file system
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``commit`` (HEAD), ``dirty`` (tracked files changed since it) and, when unknown, ``git`` saying why."""
    head = _git("rev-parse", "HEAD", root=root)
    if head is None:
        return {"commit": None, "dirty": None, "git": f"{root} is not a git checkout (or git is not installed)"}
    # Untracked files are left out: run folders and caches inside a checkout are not changes to the code.
    status = _git("status", "--porcelain", "--untracked-files=no", root=root)
    return {"commit": head.strip(), "dirty": None if status is None else bool(status.strip())}


def _torchvision_version() -> str | None:
    try:
        import torchvision
    except ImportError:
        return None
    return torchvision.__version__


def _cudnn_version() -> str | None:
    import torch

    try:
        version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except RuntimeError:
        return None
    return None if version is None else str(version)


@functools.cache
def _static() -> dict[str, Any]:
    import torch  # here, not at the top: analysis reads COMPARED without paying for torch

    return {**git_state(), "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": _torchvision_version(), "cuda": torch.version.cuda, "cudnn": _cudnn_version(),
            "host": socket.gethostname(), "command": shlex.join([sys.executable, *sys.argv])}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H200)``, ``cpu (AMD EPYC ...)``: the device and what it is."""
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_name()})"
    return str(device)


def set_device(device: torch.device) -> None:
    """The device this process computes on (the run context sets it once it is resolved)."""
    global _device
    try:
        _device = device_name(device)
    except (RuntimeError, AssertionError):  # a CUDA query failing must not stop the run it describes
        _device = str(device)


def provenance() -> dict[str, Any]:
    """Commit, versions, device, command and host of this process, and when it started."""
    return {**_static(), "device": _device, "process_started": PROCESS_STARTED}


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a provenance record that must agree across comparable runs (``COMPARED``)."""
    return {k: record.get(k) for k in COMPARED}

"""Exclusive locks between processes, for artifacts and run directories.

POSIX record locks (``fcntl.lockf``) rather than ``flock``: Linux NFS clients
forward them to the server (NLM, or NFSv4 leases), and Lustre honours them when
mounted with ``flock``; ``flock`` is only local on many NFS set-ups. The kernel
drops a lock when its process dies, and an NFS server once the dead client's
lease expires, so a killed job never blocks others for good. The lock file
holds a line saying who holds it (host, pid, Slurm job, since when), which is
what a waiting process prints and what ``sweep status`` reads.

POSIX locks belong to a process, and closing any descriptor of the file drops
them, so a lock taken twice in one process must share one descriptor: held
locks are counted per path.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from utils.errors import UserError

# Seconds to wait for a lock before giving up; None waits for ever. Set from the command line.
DEFAULT_TIMEOUT: float | None = None
POLL_SECONDS = 0.2

_held: dict[str, tuple[int, int]] = {}  # resolved path -> (fd, depth)


class LockTimeout(UserError):
    pass


def holder_info() -> dict[str, Any]:
    """Who this process is, as written into the lock files it holds."""
    job = os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', job)}_{task}"
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": job,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": " ".join(sys.argv[:8])}


def read_holder(path: str | os.PathLike) -> dict[str, Any] | None:
    """The holder line of a lock file (possibly of a process that has since died), or None."""
    try:
        text = Path(path).read_text().strip()
        return json.loads(text) if text else None
    except (OSError, json.JSONDecodeError):
        return None


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown process"
    job = f", Slurm job {info['job']}" if info.get("job") else ""
    return f"pid {info.get('pid')} on {info.get('host')}{job}, since {info.get('since')}"


def is_locked(path: str | os.PathLike) -> bool:
    """Whether another process holds the lock now (a test, not an acquisition)."""
    path = Path(path)
    if not path.exists():
        return False
    key = str(path.resolve())
    if key in _held:
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the test lock
    return False


@contextmanager
def exclusive(path: str | os.PathLike, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the lock file ``path`` for the block; ``what`` names the locked thing in messages.

    Waits while another process holds it, printing once whose lock it is; after
    ``timeout`` seconds (None: :data:`DEFAULT_TIMEOUT`) raises :class:`LockTimeout`.
    """
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _held:  # re-entered in this process: share the descriptor
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    began, announced = time.monotonic(), False
    try:
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                holder = describe_holder(read_holder(path))
                waited = time.monotonic() - began
                if timeout is not None and waited >= timeout:
                    raise LockTimeout(f"gave up after {waited:.0f} s waiting for {what}, locked by {holder} "
                                      f"({path}); raise the lock timeout or wait for that job") from None
                if not announced:
                    print(f"[lock] waiting for {what}: it is being made by {holder}", flush=True)
                    announced = True
                time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info()) + "\n").encode(), 0)
        _held[key] = (fd, 1)
        if announced:
            print(f"[lock] {what}: lock acquired after {time.monotonic() - began:.0f} s", flush=True)
        try:
            yield
        finally:
            del _held[key]
            try:
                os.ftruncate(fd, 0)  # nobody holds it now; a killed holder leaves its line, harmlessly
            except OSError:
                pass
    finally:
        if key not in _held:
            os.close(fd)

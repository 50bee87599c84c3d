"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted run therefore never leaves a truncated file behind: readers see
either the old content or the new, never half of it. Temp files are named
``.<name>.<random>.tmp`` so that :func:`sweep_temp_files` can remove those a
killed process left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utils import distributed

TEMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    # mkstemp creates 0600 files; the final file should get what open() would give it.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the finished file onto ``path``.

    Under torchrun only rank 0 writes: every rank holds the same state, and one writer per file is what
    makes the atomic rename meaningful.
    """
    if not distributed.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def require_writable(folder: str | os.PathLike, key: str = "save_path") -> None:
    """Raise a one-line UserError unless ``folder`` (created later if missing) can be written, writing nothing.

    Checked where the folder or its nearest existing parent is: ``access`` reports a read-only file system
    (EROFS) even to root, and a folder without write permission (EACCES) to anyone else.
    """
    from utils.errors import UserError
    from utils.paths import path_problem

    problem = path_problem(str(folder))
    if problem:
        raise UserError(f"{key}: {problem}")
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{key}: {str(path)!r} cannot be made: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(existing) else "is not writable by you"
        what = f"{str(path)!r} {why}" if existing == path else f"{str(path)!r} cannot be made: {existing} {why}"
        raise UserError(f"{key}: {what}; choose another with -save_path DIR or in the config")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def sweep_temp_files(folder: str | os.PathLike) -> int:
    """Remove temp files that a killed writer left in ``folder``; call only while holding its lock."""
    removed = 0
    for p in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed

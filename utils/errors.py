"""Errors that end a run with one clear line instead of a traceback, and the entry-point wrapper that says them."""

from __future__ import annotations

import errno
import os
import re
import sys
import warnings
from collections.abc import Callable

MAX_MESSAGE = 400  # characters: an error line names what it refuses, it never reprints a whole value


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, its middle cut out when longer than ``limit`` (the key in front and the hint at
    the end are what the reader needs)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    tail = limit // 4
    return f"{text[:limit - tail - 5]} ... {text[-tail:]}"


class UserError(Exception):
    """Something the user can fix (a config, an argument, a missing artifact); message is one line."""

    def __init__(self, *args: object) -> None:
        # One line, however it was built: a value a message quotes may be a megabyte of YAML or hold newlines.
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class ConfigError(UserError, ValueError):
    """A config or command line that cannot be run; the message is one line. (``utils.config`` raises it,
    ``utils.compose`` too, which ``utils.config`` imports: so it lives here, below both.)"""


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


# A write the machine refused: the user frees space or picks another folder; the code has no bug to show.
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_error(err: BaseException) -> OSError | None:
    """``err`` as an OSError of ``FULL`` or ``NOT_WRITABLE``, else None.

    safetensors reports a failed write as its own error type whose text ends in ``(os error 28)``; that
    number is read back, so a full disk is one kind of error whichever library was writing.
    """
    if isinstance(err, OSError):
        return err if err.errno in FULL + NOT_WRITABLE else None
    if type(err).__name__ == "SafetensorError":
        found = re.search(r"os error (\d+)", str(err))
        if found and int(found.group(1)) in FULL + NOT_WRITABLE:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
    return None


def storage_message(err: OSError, interrupted: str) -> str:
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in FULL:
        # Files are written to a temp name and renamed (utils/atomic.py): the failed one left nothing behind.
        return f"{err.strerror or os.strerror(err.errno)}{where}; free some space, then {interrupted}"
    return f"cannot write{where}: {err.strerror or os.strerror(err.errno)}; choose another save_path " \
           "(-save_path DIR) or make that folder writable"


def run_command(body: Callable[[], int], interrupted: str) -> int:
    """Run a command-line entry point: a UserError is one ``error:`` line and status 2, Ctrl-C is status 130.

    A write the machine refused (a full disk or quota, a read-only or forbidden folder) is one line and
    status 2 too: the traceback would point at whichever file happened to be written, not at the cause.
    """
    warnings.formatwarning = _one_line_warning
    try:
        return body()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        storage = storage_error(err)
        if storage is None:
            raise
        print(f"error: {one_line(storage_message(storage, interrupted))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130

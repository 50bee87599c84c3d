"""Errors that end a run with one clear line instead of a traceback, and the entry-point wrapper that says them."""

from __future__ import annotations

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


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def run_command(body: Callable[[], int], interrupted: str) -> int:
    """Run a command-line entry point: a UserError is one ``error:`` line and status 2, Ctrl-C is status 130."""
    warnings.formatwarning = _one_line_warning
    try:
        return body()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130

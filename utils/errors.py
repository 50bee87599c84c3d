"""Errors that end a run with one clear line instead of a traceback, and the entry-point wrapper that says them."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable


class UserError(Exception):
    """Something the user can fix (a config, an argument, a missing artifact); message is one line."""


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

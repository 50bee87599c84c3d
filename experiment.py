"""Command-line entry point: parse arguments, load the config, dispatch the phases.

Run ``python experiment.py -h`` for the usage; with no arguments it runs the
embedded demo.
"""

from __future__ import annotations

import sys


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    from utils.errors import UserError

    warnings.formatwarning = _one_line_warning

    try:
        from phases.runner import run_from_args
        from utils.cli import parse_args

        return run_from_args(parse_args(argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the last completed step", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

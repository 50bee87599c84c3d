"""Command-line entry point: parse arguments, load the config, dispatch the phases.

Run ``python experiment.py -h`` for the usage; with no arguments it runs the
embedded demo.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from utils.errors import UserError

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

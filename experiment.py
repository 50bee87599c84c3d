"""Command-line entry point: parse arguments, load the config, dispatch the phases.

Run ``python experiment.py -h`` for the usage; with no arguments it runs the
embedded demo.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from utils.errors import run_command

    def body() -> int:
        from phases.runner import run_from_args
        from tracking import close_all
        from utils.cli import parse_args

        try:
            return run_from_args(parse_args(argv))
        finally:
            close_all()  # results, config and curves to the tracking backends; every wandb run finished

    return run_command(body, "rerun the same command to resume from the last completed step")


if __name__ == "__main__":
    sys.exit(main())

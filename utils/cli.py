"""The command line, compatible with the original research code.

    python experiment.py -config FILE -seed N -pretrain True             # phase 1
    python experiment.py -config FILE -seed N -pretrain False --rewind K  # phase 2
    python experiment.py -config FILE -seed N                             # both phases
    python experiment.py                                                  # the embedded demo
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from utils.errors import UserError


class CLIError(UserError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise CLIError(f"{message} (see `python experiment.py -h`)")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "y", "t"):
        return True
    if value in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _number(kind: type, what: str, ok: Callable[[float], bool]) -> Callable[[str], int | float]:
    """An argparse type: ``kind(text)`` that must satisfy ``ok``, else one line saying ``what`` was expected."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_nonneg_int = _number(int, "a non-negative integer", lambda v: v >= 0)
# -threads 0 used to pass and then read as "not given" (the runner tests truthiness); the config rejects
# `threads: 0`, so the command line does too.
_pos_int = _number(int, "a positive integer", lambda v: v > 0)
_positive_float = _number(float, "a positive number", lambda v: math.isfinite(v) and v > 0)


@dataclass
class Args:
    config: str | None
    seed: int
    pretrain: bool | None  # None: both phases
    rewind: int | None
    device: str | None
    threads: int | None
    save_path: str | None
    progress: bool | None
    print_demo_config: bool
    print_config: bool = False
    verify: bool = False
    lock_timeout: float | None = None
    verbose: bool = False
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE, in order (later ones win)
    study: list[str] = field(default_factory=list)  # --study NAME (repeatable): phases/studies


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="experiment.py",
        description="Sparse training from random initialization: train dense A and B, prune A with IMP, "
        "match A to B, then train LTH / naive / permuted sparse networks from rewind points. "
        "With no arguments, runs the embedded demo (MLP on Fashion-MNIST, both phases, on CPU).",
        epilog="Examples:\n"
        "  python experiment.py -config configs/config_1_90.yaml -seed 0 -pretrain True\n"
        "  python experiment.py -config configs/config_1_90.yaml -seed 0 -pretrain False --rewind 20\n"
        "  python experiment.py -config configs/config_1_90.yaml -seed 0   # both phases, all rewinds\n"
        "  python experiment.py -seed 1                                     # the demo, seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-config", "--config", metavar="FILE", help="YAML config (omit to run the embedded demo)")
    p.add_argument("-seed", "--seed", type=_nonneg_int, default=0, metavar="N", help="run seed (default 0)")
    p.add_argument("-pretrain", "--pretrain", type=_bool, default=None, metavar="True|False",
                   help="True: phase 1 (dense A and B, IMP, matching); False: phase 2 (sparse training). "
                   "Omit to run both.")
    p.add_argument("-rewind", "--rewind", type=_nonneg_int, default=None, metavar="K",
                   help="phase 2 only: the rewind epoch (one of the config's rewind_points; default all)")
    p.add_argument("-device", "--device", default=None, help="override the config's device (cpu, cuda, cuda:1)")
    p.add_argument("-threads", "--threads", type=_pos_int, default=None, metavar="N",
                   help="override the config's CPU thread count for PyTorch")
    p.add_argument("-save_path", "--save-path", "--save_path", dest="save_path", default=None, metavar="DIR",
                   help="override the config's save_path (where artifacts and run directories go)")
    bars = p.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                      help="always show progress bars (default: only on a terminal)")
    bars.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                      help="never show progress bars")
    p.add_argument("--verify", action="store_true",
                   help="hash every file of every artifact used against its manifest (default: sizes always, "
                   "hashes of the files a process loads)")
    p.add_argument("--lock-timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="give up waiting for an artifact another process is making after this long "
                   "(default: wait)")
    p.add_argument("--set", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set optimizer.lr=0.1 --set rewind_points=[0,5]; "
                   "the value is read as YAML and checked like the config file; applied before -device, "
                   "-threads and -save_path")
    p.add_argument("--study", action="append", default=[], metavar="NAME",
                   help="run one of the paper's further studies (repeatable), e.g. --study ensemble, making any "
                   "missing artifact it needs first; its settings are the config's studies.NAME section "
                   "(docs/studies.md)")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail, e.g. each layer's density per IMP round")
    p.add_argument("--print-demo-config", action="store_true",
                   help="print the embedded demo's config as YAML (a starting point for your own) and exit")
    p.add_argument("--print-config", action="store_true",
                   help="print the config this command would run (its base: chain, --set and flags applied, "
                   "every default filled in) as YAML and exit")
    return p


def parse_args(argv: list[str] | None = None) -> Args:
    ns = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if ns.rewind is not None and ns.pretrain is True:
        raise CLIError("--rewind belongs to phase 2: use it with -pretrain False")
    if ns.study and (ns.pretrain is not None or ns.rewind is not None):
        raise CLIError("--study runs a study (making what it needs); use it without -pretrain and --rewind")
    return Args(config=ns.config, seed=ns.seed, pretrain=ns.pretrain, rewind=ns.rewind, device=ns.device,
                threads=ns.threads,
                save_path=ns.save_path, progress=ns.progress, print_demo_config=ns.print_demo_config,
                print_config=ns.print_config,
                verify=ns.verify, lock_timeout=ns.lock_timeout, verbose=ns.verbose,
                overrides=list(ns.overrides), study=list(dict.fromkeys(ns.study)))

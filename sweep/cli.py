"""The sweep command line.

    python -m sweep CONFIG... -seeds 0,1,2 [--rewind K ...] [--executor local|slurm] [--dry-run]
    python -m sweep status SAVE_PATH
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import NoReturn

from utils.config import ConfigError
from utils.errors import run_command

USAGE_EXAMPLES = """examples:
  python -m sweep 'configs/config_1_*.yaml' -seeds 0-2 --dry-run
  python -m sweep 'configs/config_1_*.yaml' -seeds 0-2 --executor slurm --partition gpu --gpus-per-job 1
  python -m sweep configs/config_1_90.yaml -seeds 0,1 --executor local --jobs 4 --gpus 0,1,2,3
  python -m sweep configs/config_1_90.yaml -seeds 0 --study ensemble --executor slurm
  python -m sweep configs/config_1_90.yaml -seeds 0,1 --grid optimizer.sparse_lr=0.01,0.02,0.04 --dry-run
  python -m sweep status runs/ [--details] [--failed]
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see `python -m sweep -h`)")


def parse_seeds(text: str) -> list[int]:
    """``0,1,2``, ``0-4`` or a mix such as ``0-2,7``, in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep else [int(part)]
        except ValueError:
            raise ConfigError(f"-seeds: {part!r} is not a seed or a range such as 0-4") from None
        if sep and int(hi) < int(lo) or any(v < 0 for v in values):
            raise ConfigError(f"-seeds: {part!r} is not a non-empty range of non-negative seeds")
        seeds += [v for v in values if v not in seeds]
    return seeds


def expand_configs(patterns: list[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = sorted(glob.glob(pattern))
            if not found:
                raise ConfigError(f"config pattern {pattern!r} matches no file")
        else:
            if not Path(pattern).is_file():
                raise ConfigError(f"config file {pattern!r} not found")
            found = [pattern]
        paths += [p for p in found if p not in paths]
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m sweep", description="Plan configs x seeds into a graph of jobs, one per "
                "artifact, each made once; run it on Slurm or locally. `python -m sweep status SAVE_PATH` "
                "says what is done.", epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML configs or globs (quote them)")
    p.add_argument("-seeds", "--seeds", help="seeds: 0,1,2 or 0-4 (required, except with --print-config)")
    p.add_argument("--rewind", type=int, nargs="+", metavar="K", help="only these rewind points (default: all)")
    p.add_argument("--executor", default=None, help="slurm or local (default: the launcher's, else local)")
    p.add_argument("--study", action="append", default=[], metavar="NAME",
                   help="also plan a study of every (config, seed) (repeatable), e.g. --study ensemble: one job "
                   "per artifact it needs, then one report job (docs/studies.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (jobs, dependencies, epochs) and stop")
    p.add_argument("--print-config", action="store_true",
                   help="print each config as it would run (base: chain, --set and flags applied) and stop")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every config (repeatable), as in experiment.py")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="sweep a config key over values (repeatable): every combination of the grids' values, for "
                   "every config and seed, each its own run directory; values read and checked as --set's")
    p.add_argument("--pack", default="none", choices=("none", "rewind", "seed"),
                   help="slurm: run several of the plan's jobs in one Slurm job: rewind (a rewind point's sparse "
                   "runs of one config and seed), seed (each config and seed's permuted mask and sparse runs; its "
                   "permutation and interpolation) or none (one job per artifact, the default)")
    p.add_argument("--launcher", metavar="FILE", help="YAML with a launcher: section (Slurm resources, local jobs)")
    p.add_argument("-device", "--device", help="override every config's device")
    p.add_argument("-threads", "--threads", type=int, help="override every config's CPU threads")
    p.add_argument("-save_path", "--save-path", "--save_path", dest="save_path", help="override the save_path")
    p.add_argument("--wait", action="store_true", help="slurm: wait until every job has left the queue")
    g = p.add_argument_group("launcher settings (override the --launcher file)")
    for flag, kind, help_text in (
        ("--partition", str, "Slurm partition"), ("--account", str, "Slurm account"), ("--qos", str, "Slurm QOS"),
        ("--gpus-per-job", int, "GPUs per Slurm job"), ("--cpus-per-job", int, "CPUs per Slurm job"),
        ("--mem-gb", float, "memory per Slurm job (GB)"), ("--time-min", int, "time limit per job (minutes)"),
        ("--array-throttle", int, "most tasks of one Slurm array at once"),
        ("--jobs", int, "local: jobs at once"),
    ):
        g.add_argument(flag, type=kind, help=help_text)
    g.add_argument("--gpus", help="local: GPU ids to spread jobs over, e.g. 0,1,2,3 (one job per GPU)")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="extra #SBATCH directive (repeatable), e.g. --sbatch constraint=a100")
    return p


def launcher_settings(args: argparse.Namespace) -> dict:
    from sweep.launcher import load_launcher

    raw = dict(load_launcher(args.launcher)) if args.launcher else {}
    for key in ("partition", "account", "qos", "gpus_per_job", "cpus_per_job", "mem_gb", "time_min",
                "array_throttle", "jobs", "executor"):
        if getattr(args, key, None) is not None:
            raw[key] = getattr(args, key)
    if args.gpus:
        try:
            raw["gpus"] = [int(g) for g in args.gpus.split(",")]
        except ValueError:
            raise ConfigError(f"--gpus: expected GPU ids such as 0,1,2, got {args.gpus!r}") from None
    if args.sbatch:
        extra = dict(raw.get("sbatch") or {})
        for item in args.sbatch:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--sbatch: expected KEY=VALUE, got {item!r}")
            extra[key.lstrip("-")] = value
        raw["sbatch"] = extra
    return raw


def print_configs(paths: list[str], args: argparse.Namespace) -> int:
    """Each config (at each grid point) resolved as the sweep would run it, as YAML documents headed by their file."""
    from sweep.grid import grid_points, parse_grid
    from sweep.targets import _resolve
    from utils.config import config_from_dict, dump_config

    for path in paths:
        for point in grid_points(parse_grid(args.grid, args.overrides)):
            raw, _ = _resolve(path, point, args)
            print(f"--- # {' '.join([path, *point])}\n{dump_config(config_from_dict(raw, check_data=False))}", end="")
    return 0


def format_points(targets: list, n_configs: int, n_seeds: int) -> str:
    """The grid points for people: how many, then each (config, point)'s overrides and run directory label."""
    n_points = len({tuple(t.grid) for t in targets})
    lines = [f"grid: {n_points} points x {n_configs} configs x {n_seeds} seeds = {len(targets)} (config, seed) pairs"]
    for label, grid in dict.fromkeys((t.label, tuple(t.grid)) for t in targets):
        lines.append(f"  {' '.join(grid):<40} {label}")
    return "\n".join(lines)


def run_sweep(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from sweep.launcher import launcher_from_dict

    launcher = launcher_from_dict(launcher_settings(args))  # a bad executor or setting: before any work
    paths = expand_configs(args.configs)
    if args.print_config:
        return print_configs(paths, args)
    if args.seeds is None:
        raise ConfigError("the following arguments are required: -seeds (see `python -m sweep -h`)")
    seeds = parse_seeds(args.seeds)
    if launcher.executor == "slurm" and not args.dry_run:
        from sweep.executors import check_slurm_available

        check_slurm_available()
    from sweep.targets import make_targets

    targets, save_path = make_targets(paths, seeds, args)
    for target in targets:
        target.studies = list(dict.fromkeys(args.study))
    if launcher.executor == "local" and not args.dry_run:
        from training.device import resolve_device

        for device in sorted({t.raw["device"] for t in targets}):
            resolve_device(device)  # `cuda` on a machine without one: one line now, not a failed job per artifact
    from sweep.plan import build_plan, format_plan

    plan = build_plan(targets)
    print(format_plan(plan))
    if args.grid:
        print(format_points(targets, len(paths), len(seeds)))
    if args.pack != "none":
        from sweep.pack import pack_plan

        print(f"--pack {args.pack}: {len(pack_plan(plan, args.pack))} Slurm jobs for these {len(plan.jobs)}")
    if args.dry_run:
        return 0
    if not plan.jobs:
        print("nothing to do: every artifact asked for is complete")
        return 0
    from sweep import executors
    from sweep.status import status

    record = executors.Record(save_path, plan, launcher.executor)
    if launcher.executor == "slurm":
        ids = executors.submit_slurm(plan, save_path, launcher, record, args.pack)
        print(f"[sweep] {len(plan.jobs)} jobs submitted as {len(ids)} Slurm jobs; follow them with: "
              f"python -m sweep status {save_path}")
        if not args.wait:
            return 0
        executors.wait_slurm(record)
    else:
        if args.pack != "none":
            print("[sweep] --pack is for Slurm; local workers already run one job after another without start-up")
        executors.run_local(plan, save_path, launcher, record)
    report, all_done = status(save_path)
    print(report)
    return 0 if all_done else 1


def run_status(argv: list[str]) -> int:
    p = _Parser(prog="python -m sweep status", description="What every (config, seed) under SAVE_PATH (asked by a "
                "sweep, or run by experiment.py) has made, is making, failed or still lacks: one line each, then "
                "the totals; exit status 0 only when everything asked is done.")
    p.add_argument("save_path", type=Path)
    p.add_argument("--details", action="store_true", help="also one line per artifact, with its state")
    p.add_argument("--failed", action="store_true", help="also each failed job, with the tail of its log")
    p.add_argument("--tail", type=int, default=10, metavar="N", help="--failed: last N lines of each log (10)")
    args = p.parse_args(argv)
    from sweep.status import status

    report, all_done = status(args.save_path, details=args.details, failed=args.failed, tail=args.tail)
    print(report)
    return 0 if all_done else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["status"]:
        return run_command(lambda: run_status(args[1:]), "nothing was changed")
    return run_command(lambda: run_sweep(args), "rerun the same command; finished artifacts are kept and reused")

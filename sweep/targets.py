"""Configs x seeds -> the (config, seed) targets of a sweep, each validated like ``experiment.py`` would."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sweep.plan import Target
from utils.config import ConfigError


def _absolute(path: str) -> str:
    # Jobs may start in another working directory (a Slurm node's): relative paths are fixed here, once.
    return str(Path(os.path.expandvars(os.path.expanduser(path))).absolute())


def make_targets(paths: list[str], seeds: list[int], args: argparse.Namespace) -> tuple[list[Target], Path]:
    """One target per (config, grid point, seed); all must share one save_path, where the sweep keeps its records."""
    from sweep.grid import grid_points, parse_grid

    points = grid_points(parse_grid(getattr(args, "grid", None) or [], args.overrides))
    targets: list[Target] = []
    save_paths: set[str] = set()
    for path in paths:
        for point in points:
            raw, rewinds = _resolve(path, point, args)
            save_paths.add(raw["save_path"])
            targets += [_target(path, point, raw, seed, rewinds) for seed in seeds]
    if len(save_paths) > 1:
        raise ConfigError(f"the configs write to different save_paths ({', '.join(sorted(save_paths))}); "
                          "give one with -save_path")
    return targets, Path(save_paths.pop())


def _target(path: str, point: list[str], raw: dict[str, Any], seed: int, rewinds: list[int]) -> Target:
    from phases.runner import run_label
    from sweep.grid import point_label

    return Target(label=point_label(run_label(path), point), config_path=path, raw={**raw, "seed": seed}, seed=seed,
                  rewinds=list(rewinds), grid=list(point))


def _resolve(path: str, point: list[str], args: argparse.Namespace) -> tuple[dict[str, Any], list[int]]:
    """The config at one grid point, validated as experiment.py would (``--set``, then the point, then flags)."""
    from phases.runner import resolved_config
    from tracking import check_tracking

    where = f"{path} at --grid point {' '.join(point)}" if point else path
    try:
        cfg = resolved_config(path, [*args.overrides, *point], args.device, args.threads, args.save_path)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    check_tracking(cfg.tracking)  # a job must never stop at a wandb login prompt: say so before submitting
    raw: dict[str, Any] = cfg.to_dict()
    raw["save_path"] = _absolute(cfg.save_path)
    root = raw["dataset_root"]
    raw["dataset_root"] = {k: _absolute(v) for k, v in root.items()} if isinstance(root, dict) else _absolute(root)
    rewinds = list(args.rewind) if args.rewind else list(cfg.rewind_points)
    unknown = [k for k in rewinds if k not in cfg.rewind_points]
    if unknown:
        raise ConfigError(f"--rewind {unknown} not among the rewind_points {cfg.rewind_points} of {where}")
    return raw, rewinds

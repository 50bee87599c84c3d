"""Dispatch: phase 1, phase 2 (one or all rewind points), or both, for a config or the demo."""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from models import build_model
from models.registry import is_plugin
from phases import graph, stages
from phases.context import RunContext
from phases.demo import DEMO_CONFIG
from phases.results import phase1_table, phase2_table, recorded_configs, write_run_dir
from phases.run_dir import run_dir_name
from training.device import resolve_device, set_cpu_threads, set_precision
from utils import artifacts, distributed, locks
from utils.artifacts import Artifact
from utils.atomic import require_writable
from utils.cli import Args, CLIError
from utils.config import Config, config_from_dict, dump_config, read_config_file
from utils.errors import UserError
from utils.hashing import differing_keys
from utils.overrides import apply_overrides


def run_label(config_path: str | None) -> str:
    """The config's path (relative to the working directory when inside it), as one safe folder name.

    The run directory adds the config hash (``run_dir_name``), so configs with
    the same file name in different folders, or an edited config, never share
    one; dots and separators cannot make the name escape ``save_path``.
    """
    if config_path is None:
        return "demo"
    path = Path(config_path).resolve()
    try:
        rel = path.relative_to(Path.cwd())
    except ValueError:
        rel = Path(path.name)
    text = "__".join(rel.with_suffix("").parts) if rel.suffix in (".yaml", ".yml") else "__".join(rel.parts)
    text = re.sub(r"[^A-Za-z0-9._+=-]", "_", text).lstrip(".")
    return text or "config"


def resolved_config(config_path: str | None, overrides: list[str], device: str | None = None,
                    threads: int | None = None, save_path: str | None = None, *, check_data: bool = True) -> Config:
    """The config file's (or the demo's) mapping with ``--set``, then -device/-threads/-save_path, validated once.

    Validated after the overrides, not before: ``--set`` may fix what the file alone gets wrong.
    ``python -m sweep`` resolves its configs with this too, so a sweep runs what ``experiment.py`` would.
    """
    raw = DEMO_CONFIG if config_path is None else read_config_file(config_path)
    raw = apply_overrides(raw, overrides)  # a copy: the demo's mapping is never changed
    for key, value in (("device", device), ("threads", threads), ("save_path", save_path)):
        if value:
            raw[key] = value
    return config_from_dict(raw, check_data=check_data)


def load_with_overrides(args: Args) -> Config:
    return resolved_config(args.config, args.overrides, args.device, args.threads, args.save_path)


def phase1_settings(cfg: Config, seed: int) -> dict[str, Any]:
    """The settings of the phase-1 artifacts (``dense_A.optimizer.lr``, ``perm.num_batches``, ...): where two
    configs' phase 1 differ."""
    return {name: art.settings for name, art in graph.phase1_artifacts(cfg, seed).items()}


def later_consumers(ctx: RunContext) -> list[Artifact]:
    """Everything the main experiment of this (config, seed) will make, and under ``pruning.mask_from`` the
    source config's own: the dense models trained now keep every checkpoint those read."""
    owner = ctx.owner()
    extra = [] if owner is ctx else stages.main_artifacts(owner.cfg, owner.seed)
    return stages.main_artifacts(ctx.cfg, ctx.seed) + extra


def phase1(ctx: RunContext) -> None:
    began = time.perf_counter()
    # results so far survive a kill between steps
    stages.ensure(ctx, stages.main_artifacts(ctx.cfg, ctx.seed, phases=(1,)), consumers=later_consumers(ctx),
                  after=lambda: write_run_dir(ctx))
    results = write_run_dir(ctx)
    print(phase1_table(results))
    print(f"phase 1 done in {time.perf_counter() - began:.0f} s; run directory {ctx.run_dir}")


def check_phase1(ctx: RunContext) -> None:
    """Refuse to run phase 2 on missing phase-1 artifacts, naming the key when another config made them."""
    arts = graph.phase1_artifacts(ctx.cfg, ctx.seed)
    needed = ["dense_A", "dense_B", "imp", "perm"] + (["pmask"] if "permuted" in graph.sparse_runs(ctx.cfg) else [])
    missing = [n for n in needed if not arts[n].complete]
    if not missing:
        return
    for recorded in recorded_configs(ctx.save_path, ctx.label, ctx.seed):
        try:
            old = config_from_dict(yaml.safe_load(recorded.read_text()), check_data=False)
            diff = differing_keys(phase1_settings(old, ctx.seed), phase1_settings(ctx.cfg, ctx.seed))
        except (UserError, yaml.YAMLError):  # unreadable, or its mask source is gone: nothing to compare
            continue
        if diff:
            shown = ", ".join(diff[:5]) + (" ..." if len(diff) > 5 else "")
            raise UserError(f"the phase-1 artifacts in {recorded.parent} were made by a different config "
                            f"(differs in: {shown}); rerun phase 1 for this config: {ctx.command}")
    raise UserError(f"phase-1 artifacts missing for this config ({', '.join(missing)}); make them first with: "
                    f"{ctx.command}")


def phase2(ctx: RunContext, rewinds: list[int]) -> None:
    """Sparse runs; the caller has run phase 1 or ``check_phase1``."""
    began = time.perf_counter()
    stages.ensure(ctx, stages.main_artifacts(ctx.cfg, ctx.seed, rewinds, phases=(2,)),
                  after=lambda: write_run_dir(ctx))
    results = write_run_dir(ctx)
    print(phase2_table(results, graph.sparse_runs(ctx.cfg)))
    print(f"phase 2 done in {time.perf_counter() - began:.0f} s; results in {ctx.run_dir / 'results.json'}")


def join_torchrun(device: torch.device) -> torch.device:
    """Under torchrun: join the process group, one GPU per local rank, and only rank 0 talks.

    Every rank runs the same steps; rank 0's output is the run's output, the
    others' would only repeat it line for line (their errors still show).
    """
    if device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank())
        torch.cuda.set_device(device)
    distributed.setup(device.type)
    if not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    print(f"torchrun: {distributed.world_size()} processes, data-parallel on {device.type}")
    return device


def run_from_args(args: Args) -> int:
    if args.print_demo_config:
        print(yaml.safe_dump(DEMO_CONFIG, sort_keys=False), end="")
        return 0
    if args.print_config:  # what would run, dataset or not on this machine
        cfg = resolved_config(args.config, args.overrides, args.device, args.threads, args.save_path, check_data=False)
        cfg.seed = args.seed
        print(dump_config(cfg), end="")
        return 0
    cfg = load_with_overrides(args)
    cfg.seed = args.seed
    if args.rewind is not None and args.rewind not in cfg.rewind_points:
        raise CLIError(f"--rewind {args.rewind} is not one of the config's rewind_points {cfg.rewind_points}")
    require_writable(cfg.save_path)  # a read-only save_path: one line now, not a traceback after training
    config_arg = f" -config {shlex.quote(args.config)}" if args.config else ""
    command = f"python experiment.py{config_arg} -seed {args.seed} -pretrain True"
    device = resolve_device(cfg.device)
    if distributed.launched_by_torchrun():
        device = join_torchrun(device)
    ctx = RunContext(cfg=cfg, seed=args.seed, device=device, label=run_label(args.config),
                     command=command, progress=args.progress, config_path=args.config,
                     verbose=args.verbose)
    set_cpu_threads(cfg.threads, ctx.device)
    set_precision(cfg.precision)
    artifacts.VERIFY_ALWAYS = args.verify
    locks.DEFAULT_TIMEOUT = args.lock_timeout
    torch.backends.cudnn.benchmark = ctx.device.type == "cuda"
    what = "demo" if args.config is None else args.config
    print(f"sparse-rebasin: {what}, seed {args.seed}, device {ctx.device}, precision {cfg.precision}, "
          f"save_path {cfg.save_path}, run directory {run_dir_name(ctx.label, cfg)}")
    if cfg.b_epochs != cfg.epochs:  # a quick trial (--set epochs=2) of a config that pins B's epochs says so
        print(f"note: dense A trains {cfg.epochs} epochs, dense B {cfg.b_epochs} (model_b_epochs)")
    if args.study:
        from phases.studies import get_study, run_study

        for name in args.study:
            get_study(name).needs(cfg, args.seed)  # an unknown study or a bad section: before any work
        print(f"data: {ctx.data!r}")
        for name in args.study:
            run_study(ctx, name)
        return 0
    if args.pretrain is False:
        check_phase1(ctx)  # refuse before loading any data
    if is_plugin(cfg.model_type):
        build_model(cfg)  # a plug-in that cannot be built as configured (class count, forward) stops before any write
    print(f"data: {ctx.data!r}")  # loaded before any write: a missing dataset leaves nothing behind
    if args.pretrain in (None, True):
        phase1(ctx)
    if args.pretrain in (None, False):
        rewinds = [args.rewind] if args.rewind is not None else list(cfg.rewind_points)
        phase2(ctx, rewinds)
    return 0

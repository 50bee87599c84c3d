"""Mask transfer (the paper's rebuttal, a CIFAR-10 mask on SVHN): ``--study mask_transfer``.

For a config with ``pruning.mask_from`` (``phases/mask_source.py``), at each of its rewind points:

    transferred  naive     W_B(k) ⊙ M_src             (the main runs of this config)
                 permuted  W_B(k) ⊙ π(M_src)          π matching the source's A to this B
                 lth       W_A_src(k) ⊙ M_src         (the source's whole ticket on this data)
    own          lth, permuted, naive with the mask IMP finds on this dataset itself: the runs of
                 the same config without ``pruning.mask_from``, pruned with the source's pruning
                 section (same recipe and target sparsity: only the data IMP sees changes)

The own runs *are* that config's main artifacts (same keys), so a sweep of it
shares them, and both groups use the same dense B. No settings: the study runs
without a ``studies.mask_transfer`` section.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from phases import graph
from phases.context import RunContext
from phases.mask_source import source_config
from phases.studies import ModuleStudy, Need, register, write_report
from utils.config import Config, ConfigError

NAME = "mask_transfer"
RUNS = ("lth", "naive", "permuted")
# Columns of the table, in the order the comparison reads: the transferred mask, then the target's own mask.
COLUMNS = (("transferred", "naive"), ("transferred", "permuted"), ("own", "lth"), ("own", "permuted"),
           ("own", "naive"), ("transferred", "lth"))


def own_config(cfg: Config) -> Config:
    """``cfg`` without ``pruning.mask_from``, with the source's pruning: the mask IMP finds on this dataset."""
    src = source_config(cfg)
    if src is None:
        raise ConfigError("--study mask_transfer: the config has no pruning.mask_from (the config whose mask to "
                          "transfer); see docs/studies.md, Mask transfer")
    own = copy.deepcopy(cfg)
    own.pruning = copy.deepcopy(src.pruning)
    return own


def needs(cfg: Config, seed: int) -> list[Need]:
    own = own_config(cfg)
    out = []
    for k in cfg.rewind_points:
        for group, c in (("transferred", cfg), ("own", own)):
            out += [Need(graph.sparse(c, seed, k, run), f"{group} mask: sparse k={k} {run}") for run in RUNS]
    return out


def report(ctx: RunContext) -> Path:
    cfg, seed = ctx.cfg, ctx.seed
    own = own_config(cfg)
    src_imp, own_imp = graph.imp(cfg, seed), graph.imp(own, seed)
    sparsity = {"transferred": src_imp.result()["sparsity"] if src_imp.complete else None,
                "own": own_imp.result()["sparsity"] if own_imp.complete else None}
    rows = []
    for k in cfg.rewind_points:
        for group, c in (("transferred", cfg), ("own", own)):
            for run in RUNS:
                art = graph.sparse(c, seed, k, run)
                if art.complete:
                    r = art.result()
                    rows.append({"k": k, "mask": group, "run": run, "accuracy": r["accuracy"], "loss": r["loss"]})
    src = graph.dense(cfg, seed, "A").settings["data"]["dataset"]
    header = (f"Mask transfer: a {src} mask on {cfg.dataset} ({ctx.label} seed {seed}); sparsity "
              + ", ".join(f"{g} {100 * s:.1f}%" for g, s in sparsity.items() if s is not None)
              + " (test accuracy %)")
    extra = {"source": {"config": cfg.pruning.mask_from.config, "dataset": src}, "sparsity": sparsity}
    return write_report(ctx, NAME, rows, ["k", "mask", "run"], table_text(header, rows), extra)


def table_text(header: str, rows: list[dict[str, Any]]) -> str:
    """One line per k: the transferred mask's naive and permuted, the own mask's runs, and the source's ticket."""
    acc = {(r["k"], r["mask"], r["run"]): r["accuracy"] for r in rows}
    names = [f"{'own' if g == 'own' else 'transf.'} {run}" for g, run in COLUMNS]
    width = max(len(n) for n in names) + 2
    lines = [header, "  k    " + "".join(f"{n:>{width}}" for n in names) + f"{'perm-naive':>{width}}"]
    for k in sorted({r["k"] for r in rows}):
        cells = [acc.get((k, g, run)) for g, run in COLUMNS]
        text = "".join(f"{v:>{width}.2f}" if v is not None else f"{'-':>{width}}" for v in cells)
        naive, perm = cells[0], cells[1]
        gap = f"{perm - naive:>+{width}.2f}" if naive is not None and perm is not None else f"{'-':>{width}}"
        lines.append(f"  {k:<5d}" + text + gap)
    return "\n".join(lines)


register(ModuleStudy(NAME, needs, report))

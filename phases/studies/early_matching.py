"""Early matching: the paper's Table 15 (App. B), ``--study early_matching``.

The main experiment matches trained A to trained B. Here B is taken at an
earlier epoch i (A stays fully trained): pi_i matches A to B's checkpoint at i,
pi_i(M_A) is the permuted mask, and ``permuted`` trains W_B(k) under it for
every rewind point k of the config. LTH and naive do not depend on i: they are
the main experiment's own runs. So are pi, pi(M_A) and ``permuted`` for i = B's
last epoch, the reference row: their keys are the main ones (an early
permutation's key adds ``b_epoch``, the epochs B had trained; the main key has
none).

i counts like rewind points (``rewind_convention``): under ``epochs`` B's
weights after i epochs, under ``released`` after i + 1. Dense B gets the
checkpoints it lacks added, re-trained with the same seed and data order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from phases import graph
from phases.context import RunContext
from phases.match_step import PERMUTATION
from phases.studies import ModuleStudy, Need, aligned_table, register, require_complete, study_settings, write_report
from utils.artifacts import Artifact
from utils.config import Config, EarlyMatchingStudyConfig

NAME = "early_matching"
FIXED = ("lth", "naive")  # runs that do not depend on i
NAMES = {"lth": "LTH", "naive": "naive", "permuted": "permuted"}


def settings(cfg: Config) -> EarlyMatchingStudyConfig:
    """``studies.early_matching``: required (its ``epochs`` list has no sensible default)."""
    return study_settings(cfg, NAME)


def b_epochs_of(cfg: Config) -> list[int]:
    """The epochs trained of every B the study matches to, ascending, B's last one included (the main row)."""
    return sorted({*(cfg.checkpoint_epoch(i) for i in settings(cfg).epochs), cfg.b_epochs})


def i_of(cfg: Config, b_epoch: int) -> int:
    """The epoch i, as the config counts it (``rewind_convention``), of B after ``b_epoch`` epochs."""
    return b_epoch - cfg.checkpoint_epoch(0)


def main_key(cfg: Config, b_epoch: int) -> int | None:
    """None for B's final model (the main permutation's key), else the epochs trained."""
    return None if b_epoch == cfg.b_epochs else b_epoch


def permuted_run(cfg: Config, seed: int, k: int, b_epoch: int | None) -> Artifact:
    """``permuted`` at k under pi_i(M_A); for B's last epoch (None): ``graph.sparse(cfg, seed, k, "permuted")``."""
    return graph.sparse(cfg, seed, k, "permuted", b_epoch=b_epoch)


def rows_artifacts(cfg: Config, seed: int) -> list[tuple[str, int | None, int, Artifact]]:
    """(run, b_epoch or None for the fixed runs, k, artifact) in Table 15's row order, every rewind point."""
    out = []
    for run in FIXED:
        for k in cfg.rewind_points:
            out.append((run, None, k, graph.sparse(cfg, seed, k, run)))
    for b in b_epochs_of(cfg):
        for k in cfg.rewind_points:
            out.append(("permuted", b, k, permuted_run(cfg, seed, k, main_key(cfg, b))))
    return out


def needs(cfg: Config, seed: int) -> list[Need]:
    out = [Need(graph.sparse(cfg, seed, k, run), f"{run} k={k}") for run in FIXED for k in cfg.rewind_points]
    for b in b_epochs_of(cfg):
        label = f"i={i_of(cfg, b)} (B after {b} epochs)"
        out += [Need(permuted_run(cfg, seed, k, main_key(cfg, b)), f"permuted k={k}, {label}")
                for k in cfg.rewind_points]
    return out


# ------------------------------------------------------------------ report


def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Fraction of all permuted units that two permutations send to the same place."""
    same = sum(int((a[g] == b[g]).sum()) for g in a)
    return same / sum(a[g].numel() for g in a)


def table_text(header: str, rows: list[dict[str, Any]], rewinds: list[int], final_i: int) -> str:
    """Table 15's layout: per sparsity, LTH and naive, then permuted for each i; one column per rewind point."""
    by_row: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        final = ", final" if r["i"] == final_i else ""
        label = NAMES[r["method"]] if r["i"] is None else f"permuted (i={r['i']}{final})"
        by_row.setdefault((f"{100 * r['sparsity']:g}%", label), {})[r["k"]] = r
    head = ["S", "Method", *[f"k={k}" for k in rewinds]]
    lines = [[s, label, *[f"{cells[k]['accuracy']:.2f}" if k in cells else "–" for k in rewinds]]
             for (s, label), cells in by_row.items()]
    return aligned_table(header, head, lines)


def report(ctx: RunContext) -> Path:
    cfg, seed = ctx.cfg, ctx.seed
    arts = rows_artifacts(cfg, seed)
    require_complete(ctx, NAME, [a.dir for *_, a in arts if not a.complete])
    target = cfg.pruning.sparsity
    rows = []
    for run, b, k, art in arts:
        res = art.result()
        rows.append({"sparsity": target, "method": run, "i": None if b is None else i_of(cfg, b),
                     "b_epoch": b, "k": k, "accuracy": res["accuracy"],
                     "loss": res["loss"]})
    final_perm, _ = graph.permutation(cfg, seed).tensors(PERMUTATION)
    agree = {}
    for b in b_epochs_of(cfg):
        perms, _ = graph.permutation(cfg, seed, main_key(cfg, b)).tensors(PERMUTATION)
        agree[str(i_of(cfg, b))] = agreement(perms, final_perm)
    imp_result = graph.imp(cfg, seed).result()
    header = (f"Early matching (the paper's Table 15): {ctx.label} seed {seed}; pi_i matches trained A to B at epoch "
              f"i (rewind_convention: {cfg.rewind_convention}; final: B's last epoch, the main run), IMP sparsity "
              f"{100 * imp_result['sparsity']:.1f}%; test accuracy (%) per rewind point k")
    extra = {"epochs": list(settings(cfg).epochs), "final_i": i_of(cfg, cfg.b_epochs),
             "b_epochs": b_epochs_of(cfg), "rewinds": list(cfg.rewind_points),
             "rewind_convention": cfg.rewind_convention, "imp_sparsity": imp_result["sparsity"],
             "agreement_with_final": agree,
             "artifacts": {f"{run}|{'' if b is None else b}|{k}": str(a.dir) for run, b, k, a in arts}}
    return write_report(ctx, NAME, rows, ["sparsity", "method", "i", "k"],
                        table_text(header, rows, list(cfg.rewind_points), i_of(cfg, cfg.b_epochs)), extra)


register(ModuleStudy(NAME, needs, report))

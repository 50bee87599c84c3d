"""IMP-path barriers, with and without REPAIR: the paper's Fig. 4a, ``--study imp_barriers``.

For every round r of IMP on dense A (fine-tuning, or rewinding), the 0-1
test-error barrier (Eq. 3 on the error, in percentage points) along the
straight path from dense A (alpha = 0) to the round's solution (alpha = 1),
BatchNorm statistics reset at every alpha, and with REPAIR
(``matching/repair.py``) when asked. No permutation is involved: the IMP
solution descends from A itself. The paper's claim: without REPAIR the barrier
grows with the rounds; with REPAIR it stays low, i.e. the IMP solution stays in
A's linearly connected mode once variance collapse is fixed.

The rounds are read from the IMP round chain (``phases/imp_step.py``), so the
study trains nothing: one artifact per REPAIR setting, keyed by the grid, the
batches and REPAIR, with the IMP target (and through it the chain and dense A)
as parent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from analysis.barriers import imp_barrier_plot
from analysis.plot import write_plot
from matching import error_barrier, interpolation_curve, loss_barrier
from phases import graph
from phases.context import RunContext
from phases.imp_step import MASK_PREFIX, round_file
from phases.keys import as_key
from phases.stages import Stage, register_stage
from phases.studies import (
    ModuleStudy,
    Need,
    aligned_table,
    register,
    require_complete,
    study_dir,
    study_settings,
    write_report,
)
from training.device import autocast
from training.evaluate import evaluate
from utils.artifacts import Artifact
from utils.config import Config, ImpBarriersStudyConfig

NAME = "imp_barriers"


@dataclasses.dataclass(frozen=True)
class ImpBarrierSettings:
    alphas: tuple[float, ...]
    batches: int  # training batches resetting BN (and measuring REPAIR's statistics and the train loss)
    repair: bool


def settings(cfg: Config) -> ImpBarriersStudyConfig:
    """``studies.imp_barriers``, or its defaults (with and without REPAIR, matching.alphas) when absent."""
    return study_settings(cfg, NAME, ImpBarriersStudyConfig)


def alphas(cfg: Config) -> list[float]:
    a = settings(cfg).alphas
    return list(cfg.matching.alphas if a is None else a)


def barriers(cfg: Config, seed: int, repair: bool) -> Artifact:
    own = ImpBarrierSettings(alphas=tuple(alphas(cfg)), batches=cfg.matching.interpolation_batches, repair=repair)
    return Artifact(cfg.save_path, "impbarrier", as_key(own), {"imp": graph.imp(cfg, seed)}, origin=(cfg, seed))


def needs(cfg: Config, seed: int) -> list[Need]:
    return [Need(barriers(cfg, seed, repair), f"barriers dense A -> every IMP round{' (REPAIR)' if repair else ''}")
            for repair in settings(cfg).repair]


# ------------------------------------------------------------------ the study's stage


def round_states(imp_art: Artifact, device: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(IMP history record, model state) of every round, in order, from the round chain."""
    chain = imp_art.parents["chain"]
    history = imp_art.result()["history"]
    amounts = [h["amount"] for h in history]
    out = []
    for r, record in enumerate(history, start=1):
        tensors, _ = chain.tensors(round_file(r, amounts[:r]), device=device)
        out.append((record, {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}))
    return out


def make_barriers(ctx: RunContext, art: Artifact) -> None:
    s = art.settings
    repair = bool(s["repair"])
    imp_art = art.parents["imp"]
    dense_a = imp_art.parents["chain"].parents["dense_a"]
    model = ctx.load_model(dense_a, "final.safetensors")
    sd_a = model.state_dict()

    def train_batches():
        return ctx.data.eval_train_batches(s["batches"])

    rounds = []
    for record, sd_r in round_states(imp_art, ctx.device):
        curve = interpolation_curve(model, sd_a, sd_r, s["alphas"], train_batches, ctx.data.test_batches,
                                    repair=repair, evaluate=evaluate, autocast=autocast)
        row = {"round": record["round"], "sparsity": record["sparsity"],
               "test_error_barrier": error_barrier(curve, "test"), "test_loss_barrier": loss_barrier(curve),
               "train_error_barrier": error_barrier(curve, "train"),
               "train_loss_barrier": loss_barrier(curve, "train_loss"), "curve": curve}
        rounds.append(row)
        print(f"[imp barriers{' REPAIR' if repair else ''}] round {row['round']} (sparsity "
              f"{100 * row['sparsity']:.1f}%): test error barrier {row['test_error_barrier']:.2f} points", flush=True)
    art.finish({"repair": repair, "rounds": rounds})


register_stage(Stage("impbarrier", make_barriers,
                     label=lambda a: f"[imp barriers{' REPAIR' if a.settings['repair'] else ''}]",
                     what=lambda a: f"IMP barriers{' (REPAIR)' if a.settings['repair'] else ''}"))


# ------------------------------------------------------------------ report


def table_text(header: str, rows: list[dict[str, Any]], repairs: list[bool]) -> str:
    """One line per IMP round: sparsity, then the test error barrier without and with REPAIR."""
    names = {False: "w/o REPAIR", True: "w/ REPAIR"}
    cells: dict[int, dict[str, Any]] = {}
    for r in rows:
        cells.setdefault(r["round"], {"sparsity": r["sparsity"]})[names[r["repair"]]] = r["test_error_barrier"]
    head = ["round", "sparsity", *[names[p] for p in repairs]]
    lines = [[str(rnd), f"{100 * c['sparsity']:.1f}%", *[f"{c[names[p]]:.2f}" for p in repairs]]
             for rnd, c in sorted(cells.items())]
    return aligned_table(header, head, lines)


def report(ctx: RunContext) -> Path:
    cfg, seed = ctx.cfg, ctx.seed
    repairs = list(settings(cfg).repair)
    arts = {p: barriers(cfg, seed, p) for p in repairs}
    require_complete(ctx, NAME, [a.dir for a in arts.values() if not a.complete])
    rows = [{k: v for k, v in rnd.items() if k != "curve"} | {"repair": p}
            for p, art in arts.items() for rnd in art.result()["rounds"]]
    rows.sort(key=lambda r: (r["round"], r["repair"]))
    header = (f"IMP-path barriers (the paper's Fig. 4a): {ctx.label} seed {seed}; 0-1 test error barrier "
              f"(percentage points) between dense A and the IMP solution of each round, alphas {alphas(cfg)}")
    title = f"{ctx.label} seed {seed}: dense A to each IMP round's solution"
    figure = write_plot(imp_barrier_plot(rows, title, name=f"{NAME}_figure"), study_dir(ctx), pdf=False)
    curves = {str(p): {str(r["round"]): r["curve"] for r in art.result()["rounds"]} for p, art in arts.items()}
    extra = {"alphas": alphas(cfg), "repair": repairs, "figure": str(figure[0]), "curves": curves,
             "artifacts": {str(p): str(a.dir) for p, a in arts.items()}}
    return write_report(ctx, NAME, rows, ["round", "repair"], table_text(header, rows, repairs), extra)


register(ModuleStudy(NAME, needs, report))

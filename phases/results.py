"""The run directory: config.yaml, results.json, metrics.jsonl, artifacts.json, printed tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from phases import graph
from phases.context import RunContext
from phases.identity import config_hash
from phases.legacy_run_dirs import legacy_config_hash
from phases.mask_source import mask_owner, source_config
from phases.run_dir import RESULTS_LOCK
from training.metrics import read_metrics
from utils import artifacts, distributed
from utils.artifacts import Artifact
from utils.atomic import atomic_write_json, atomic_write_text
from utils.config import Config, dump_config
from utils.locks import exclusive
from utils.provenance import now, provenance, summary


def transfer_summary(cfg: Config, seed: int) -> dict[str, object] | None:
    """What ``results.json`` records of a mask transfer: the source config, its seed, dataset and hash."""
    src = source_config(cfg)
    if src is None:
        return None
    return {"config": cfg.pruning.mask_from.config, "seed": mask_owner(cfg, seed)[1], "dataset": src.dataset,
            "config_hash": config_hash(src)}


def results_header(ctx: RunContext) -> dict[str, Any]:
    """What results.json says of the run itself: its config, hashes, seed, rewind convention and data."""
    return {"config_hash": config_hash(ctx.cfg),
            # The hash the run directory had before artifact keys named it: analysis puts this
            # config's seeds whose results.json predates the rename under the one config.
            "legacy_config_hash": legacy_config_hash(ctx.cfg),
            "seed": ctx.seed, "config": ctx.label,
            "config_path": ctx.config_path,
            # Which epoch "checkpoint k" holds: analysis.compare needs it to line our k up with the
            # paper's tables (saved after k+1 epochs). Configs from before the key ran "epochs".
            "rewind_convention": getattr(ctx.cfg, "rewind_convention", "epochs"),
            # How many examples the run saw: analysis.compare tells the real dataset from a subset
            # or generated stand-in by these.
            "data": {"dataset": ctx.cfg.dataset, "train": ctx.data.num_train,
                     "test": ctx.data.num_test}}


def collect_results(ctx: RunContext) -> dict[str, Any]:
    """Every final number the completed artifacts of this config hold, in the documented shape."""
    arts = {name: a for name, a in graph.run_artifacts(ctx.cfg, ctx.seed).items() if a.complete}
    for a in arts.values():
        a.verify(deep=artifacts.VERIFY_ALWAYS)  # sizes always: a truncated file never feeds a table
    res = results_header(ctx)

    def metrics(a: Artifact) -> dict[str, float]:
        r = a.result()
        return {"accuracy": r["accuracy"], "loss": r["loss"]}

    dense = {role: metrics(arts[f"dense_{role}"]) for role in ("A", "B") if f"dense_{role}" in arts}
    if "perm" in arts:
        perm = arts["perm"].result()
        dense["A_permuted"] = perm["A_permuted"]
        if "A" in perm:  # mask transfer: A measured on this config's test set; its own in A_source_data
            if "A" in dense:
                dense["A_source_data"] = dense["A"]
            dense["A"] = {k: perm["A"][k] for k in ("accuracy", "loss")}
        res["matching"] = {"method": perm["method"]}
        if "interp" in arts:
            curves = arts["interp"].result()
            res["matching"].update({k: curves[k] for k in (
                "midpoint_accuracy_before", "midpoint_accuracy_after", "test_loss_barrier_before",
                "test_loss_barrier_after", "train_loss_barrier_before", "train_loss_barrier_after")})
            # The whole path, so figures need no artifact folder (and interp results made before the curves
            # were recorded simply have none).
            keys = ("alpha", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
            for side in ("curve_before", "curve_after"):
                if side in curves:
                    res["matching"][side] = [{key: point[key] for key in keys} for point in curves[side]]
    res["dense"] = dense
    transfer = transfer_summary(ctx.cfg, ctx.seed)
    if transfer:
        res["mask_from"] = transfer
    if "imp" in arts:
        r = arts["imp"].result()
        res["imp"] = {"sparsity": r["sparsity"], "accuracy": r["accuracy"], "loss": r["loss"],
                      "rounds": r["rounds"]}
    sparse: dict[str, Any] = {}
    for k in ctx.cfg.rewind_points:
        for run in graph.sparse_runs(ctx.cfg):
            a = arts.get(f"sparse_{run}_k{k}")
            if a is not None:
                r = a.result()
                sparse.setdefault(str(k), {})[run] = {"accuracy": r["accuracy"], "loss": r["loss"],
                                                      "weight_sparsity": r["weight_sparsity"]}
    res["sparse"] = sparse
    res["artifacts"] = {name: str(a.dir) for name, a in arts.items()}
    res["provenance"] = results_provenance(arts)
    return res


def results_provenance(arts: dict[str, Artifact]) -> dict[str, Any]:
    """Who wrote this results.json (commit, versions, device, command, times), and what made each artifact in it.

    The artifacts may come from other processes, commits or machines than the writer (phase 1 on one node,
    phase 2 on another): each one's manifest says, and ``analysis.table --provenance`` compares them.
    """
    made = {}
    for name, a in arts.items():
        m = a.manifest() or {}
        made[name] = {**summary(m.get("provenance") or {}), "started": m.get("started"), "finished": m.get("finished")}
    return {**provenance(), "written": now(), "artifacts": made}


def write_run_dir(ctx: RunContext) -> dict[str, Any]:
    """(Re)write the run directory from the finished artifacts; cheap, so done after every step.

    Held under the run directory's lock: two processes of one config and seed
    (e.g. two rewind points) each rebuild it from every finished artifact, and
    the lock keeps an older rebuild from overwriting a newer one.
    """
    if not distributed.is_main():  # under torchrun rank 0 keeps the run directory
        return collect_results(ctx)
    run_dir = ctx.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(run_dir / RESULTS_LOCK, f"the run directory {run_dir}"):
        atomic_write_text(run_dir / "config.yaml", dump_config(ctx.cfg))
        results = collect_results(ctx)
        atomic_write_json(run_dir / "results.json", results)
        lines = []
        for art in graph.run_artifacts(ctx.cfg, ctx.seed).values():
            path = art.path("metrics.jsonl")
            if path.exists():
                lines.extend({**rec, "artifact": art.name} for rec in read_metrics(path))
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(rec) + "\n" for rec in lines))
    ctx.tracker.set_results(results)  # logged, with the config and curves, when the run's tracker closes
    return results


def recorded_configs(save_path: Path, label: str, seed: int) -> list[Path]:
    """``config.yaml`` of every run directory of this config label and seed, newest first."""
    found = [p for p in save_path.glob(f"{label}-*/seed_{seed}/config.yaml") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _fmt(entry: dict[str, float] | None) -> str:
    return f"{entry['accuracy']:6.2f}%" if entry else "      -"


def phase1_table(results: dict[str, Any]) -> str:
    d, imp, m = results.get("dense", {}), results.get("imp"), results.get("matching")
    rows = [
        ("dense A", _fmt(d.get("A"))),
        ("dense B", _fmt(d.get("B"))),
        ("pi(A) (must equal A)", _fmt(d.get("A_permuted"))),
    ]
    if imp:
        rows.append((f"IMP A at {100 * imp['sparsity']:.2f}% sparsity ({imp['rounds']} rounds)", _fmt(imp)))
    src = results.get("mask_from")
    if src:
        rows.insert(0, (f"A and IMP mask from {src['config']} (seed {src['seed']}, {src['dataset']}); "
                        "IMP accuracy on its own data", ""))
    if m:
        rows.append((f"midpoint A-B before matching ({m['method']})", f"{m['midpoint_accuracy_before']:6.2f}%"))
        rows.append((f"midpoint pi(A)-B after matching ({m['method']})", f"{m['midpoint_accuracy_after']:6.2f}%"))
        rows.append(("test loss barrier before / after",
                     f"{m['test_loss_barrier_before']:.3f} / {m['test_loss_barrier_after']:.3f}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(["Phase 1 (test accuracy)"] + [f"  {name:<{width}}  {val}" for name, val in rows])


def phase2_table(results: dict[str, Any], runs: list[str]) -> str:
    sparse = results.get("sparse", {})
    if not sparse:
        return "Phase 2: no sparse runs finished yet"
    width = {r: max(10, len(r) + 2) for r in runs}  # `permuted+rescale` and the like stay apart
    head = "  k    " + "".join(f"{r:>{width[r]}s}" for r in runs)
    if "naive" in runs and "permuted" in runs:
        head += "  perm-naive"
    lines = ["Phase 2 (test accuracy %, sparse training from rewind point k)", head]
    for k in sorted(sparse, key=int):
        row = sparse[k]
        line = f"  {k:<5s}" + "".join(f"{row[r]['accuracy']:{width[r]}.2f}" if r in row else f"{'-':>{width[r]}s}"
                                      for r in runs)
        if "naive" in row and "permuted" in row:
            line += f"  {row['permuted']['accuracy'] - row['naive']['accuracy']:+10.2f}"
        lines.append(line)
    return "\n".join(lines)

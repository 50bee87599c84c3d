"""The ``training_curves`` figure of one run directory: loss and accuracy per epoch of every training in it.

Read from the run directory's ``metrics.jsonl`` (one record per evaluated epoch; see docs/outputs.md). Three
columns, each drawn when the run has it: dense A and B; the IMP rounds one after another on one axis (a dotted
line where each round prunes, so the drop and recovery of every round shows); the sparse runs, one colour per run
type and one line style per rewind point k. The top row is the training loss, the bottom row test accuracy.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from analysis.figure_parts import RUN_STYLE, Plot, Skip, add_legend, new_figure

_SPARSE = re.compile(r"sparse_(?P<run>.+)_k(?P<k>\d+)$")
_IMP = re.compile(r"imp_round_(?P<r>\d+)$")
K_STYLES = ("-", "--", ":", "-.")
DENSE_STYLE = {"dense_A": ("dense A", "black", "-"), "dense_B": ("dense B", "tab:orange", "-")}
ROWS = (("train_loss", "training loss"), ("test_accuracy", "test accuracy (%)"))


def read_curves(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Per training run, its records in epoch order; the last record of an epoch wins (a resumed run redoes it)."""
    by_run: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict) and isinstance(rec.get("run"), str) and isinstance(rec.get("epoch"), int):
            by_run[rec["run"]][rec["epoch"]] = rec
    return {run: [epochs[e] for e in sorted(epochs)] for run, epochs in by_run.items()}


def _color(run: str) -> str:
    return RUN_STYLE.get(run.split("+")[0], (run, "tab:purple", "x"))[1]


def _shown_ks(ks: list[int]) -> list[int]:
    """At most four rewind points, one line style each: the first, last and two between."""
    if len(ks) <= len(K_STYLES):
        return ks
    picks = {0, len(ks) // 3, 2 * len(ks) // 3, len(ks) - 1}
    return [ks[i] for i in sorted(picks)]


def _line(ax: Any, recs: list[dict[str, Any]], key: str, xs: list[float] | None = None, **style: Any) -> list[tuple]:
    pts = [(x, r[key]) for x, r in zip(xs or [r["epoch"] for r in recs], recs, strict=True) if r.get(key) is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
    return pts


def _imp_axis(curves: dict[str, list[dict[str, Any]]]) -> tuple[list[tuple[int, list[dict]]], list[list[float]]]:
    """IMP rounds in order and, per round, x positions that continue where the previous round ended."""
    rounds = sorted((int(m["r"]), recs) for run, recs in curves.items() if (m := _IMP.match(run)))
    xs, offset = [], 0
    for _, recs in rounds:
        xs.append([offset + r["epoch"] for r in recs])
        offset += max((r["epoch"] for r in recs), default=0)
    return rounds, xs


def figure_training_curves(run_dir: Path, name: str, title: str) -> Plot | Skip:
    path = run_dir / "metrics.jsonl"
    curves = read_curves(path) if path.exists() else {}
    dense = [r for r in DENSE_STYLE if r in curves]
    rounds, imp_xs = _imp_axis(curves)
    sparse: dict[tuple[str, int], list[dict[str, Any]]] = {
        (m["run"], int(m["k"])): recs for run, recs in curves.items() if (m := _SPARSE.match(run))}
    columns = [c for c, present in (("dense", dense), ("imp", rounds), ("sparse", sparse)) if present]
    if not columns:
        return Skip(name, f"{path} holds no per-epoch records")
    fig, axes = new_figure(2 * len(columns), ncols=len(columns))
    plot = Plot(name, fig, "epoch")
    for row, (key, quantity) in enumerate(ROWS):
        for col, column in enumerate(columns):
            ax = axes[row * len(columns) + col]
            if column == "dense":
                _draw_dense(plot, ax, {run: curves[run] for run in dense}, key, quantity)
            elif column == "imp":
                _draw_imp(plot, ax, rounds, imp_xs, key, quantity)
            else:
                _draw_sparse(plot, ax, sparse, key, quantity)
            ax.set_xlabel("IMP fine-tuning epoch, rounds in order" if column == "imp" else "epoch of the run")
            ax.set_ylabel(quantity)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
            ax.grid(alpha=0.3)
    add_legend(fig, axes, f"{title}\nper-epoch training loss and test accuracy (1 seed: one run directory)", ncols=4)
    return plot


def _draw_dense(plot: Plot, ax: Any, curves: dict[str, list[dict[str, Any]]], key: str, quantity: str) -> None:
    """Dense A and B's curves of ``key``."""
    for run, recs in curves.items():
        label, color, ls = DENSE_STYLE[run]
        pts = _line(ax, recs, key, color=color, linestyle=ls, label=label)
        plot.rows += [{"panel": "dense", "quantity": quantity, "series": label, "epoch": x, "mean": y,
                       "seeds": 1} for x, y in pts]
    ax.set_title(f"dense A and B: {quantity}", fontsize=10)


def _draw_imp(plot: Plot, ax: Any, rounds: list[tuple[int, list[dict]]], imp_xs: list[list[float]], key: str,
              quantity: str) -> None:
    """The IMP rounds' curve of ``key``, one round after another."""
    # One line through every round: the drop where a round prunes and its recovery both show.
    joined = [(x, rec) for (_, recs), xs in zip(rounds, imp_xs, strict=True)
              for x, rec in zip(xs, recs, strict=True)]
    _line(ax, [rec for _, rec in joined], key, [x for x, _ in joined], color="tab:purple", marker=".",
          markersize=4, label="IMP fine-tuning (dotted: a round prunes)")
    for (r, recs), xs in zip(rounds, imp_xs, strict=True):
        ax.axvline(xs[0] - 0.5, color="tab:purple", linestyle=":", linewidth=0.6)
        plot.rows += [{"panel": "IMP", "quantity": quantity, "series": f"round {r}", "epoch": x,
                       "mean": rec[key], "seeds": 1}
                      for x, rec in zip(xs, recs, strict=True) if rec.get(key) is not None]
    ax.set_title(f"IMP, {len(rounds)} rounds: {quantity}", fontsize=10)


def _draw_sparse(plot: Plot, ax: Any, sparse: dict[tuple[str, int], list[dict[str, Any]]], key: str,
                 quantity: str) -> None:
    """The sparse runs' curves of ``key``: colour = run, line style = rewind point k (at most four k shown)."""
    ks = _shown_ks(sorted({k for _, k in sparse}))
    runs = sorted({run for run, _ in sparse}, key=lambda r: (r.split("+")[0] not in RUN_STYLE, r))
    for (run, k), recs in sorted(sparse.items(), key=lambda item: (item[0][1], item[0][0])):
        if k not in ks:
            continue
        pts = _line(ax, recs, key, color=_color(run), linestyle=K_STYLES[ks.index(k)],
                    alpha=0.6 if "+" in run else 1.0)
        plot.rows += [{"panel": "sparse", "quantity": quantity, "series": f"{run} k={k}", "epoch": x,
                       "mean": y, "seeds": 1} for x, y in pts]
    # The legend says colour = run and line style = k, in one entry each, not one per combination.
    for run in runs:
        ax.plot([], [], color=_color(run), alpha=0.6 if "+" in run else 1.0, label=run)
    for k in ks if len(ks) > 1 else []:  # one k needs no line-style key: the title names it
        ax.plot([], [], color="dimgray", linestyle=K_STYLES[ks.index(k)], label=f"sparse, k = {k}")
    if len(ks) == 1:
        shown = f" from k = {ks[0]}"
    elif len(ks) < len({k for _, k in sparse}):
        shown = f" (k = {', '.join(map(str, ks))} shown)"
    else:
        shown = ""
    ax.set_title(f"sparse runs{shown}: {quantity}", fontsize=10)

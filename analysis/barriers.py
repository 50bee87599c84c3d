"""The IMP-path barrier figure (the paper's Fig. 4a), drawn with ``analysis.plot``'s helpers.

One line per REPAIR setting: the 0-1 test-error barrier between dense A and the
IMP solution of each round, against the round (its sparsity under the tick).
Rows may come from several seeds: each (round, repair) is plotted as mean ± std.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from analysis.plot import Plot, add_legend, draw_series, new_figure, stats

SERIES = {False: ("without REPAIR", "tab:red", "s", "--"), True: ("with REPAIR", "tab:blue", "o", "-")}


def imp_barrier_plot(rows: Iterable[dict[str, Any]], title: str, name: str = "imp_barriers",
                     key: str = "test_error_barrier") -> Plot:
    """Barrier ``key`` (percentage points) against IMP round, one line per ``repair``; the CSV rows of each point."""
    values: dict[bool, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    sparsity: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        values[bool(row["repair"])][int(row["round"])].append(float(row[key]))
        sparsity[int(row["round"])].append(float(row["sparsity"]))
    fig, (ax,) = new_figure(1, 1)
    plot = Plot(name, fig, "round")
    for repair in sorted(values):
        label, color, marker, linestyle = SERIES[repair]
        rounds = sorted(values[repair])
        means, stds = zip(*(stats(values[repair][r]) for r in rounds), strict=True)
        draw_series(ax, rounds, list(means), list(stds), label=label, color=color, marker=marker,
                    linestyle=linestyle)
        for r, m, s in zip(rounds, means, stds, strict=True):
            plot.rows.append({"panel": "", "quantity": key, "series": label, "round": r, "mean": m, "std": s,
                              "seeds": len(values[repair][r])})
    rounds = sorted(sparsity)
    ax.set_xticks(rounds, [f"{r}\n{100 * sum(sparsity[r]) / len(sparsity[r]):.0f}%" for r in rounds])
    ax.set_xlabel("IMP round (sparsity)")
    ax.set_ylabel("test error barrier (percentage points)" if key == "test_error_barrier" else key)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.grid(alpha=0.3)
    add_legend(fig, [ax], title)
    return plot

"""The parts every figure module draws with: the file-only backend, a figure of panels, one legend, the
result types (``Plot``, ``Skip``) and the colours of the sparse runs.

Below ``analysis.plot`` (the figure catalogue and its command line) and ``analysis.training_curves``, which
both use them: neither imports the other's module for them (no import circle, tests/test_import_floors.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines that run studies

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

from analysis.figure_fit import fit_to_figure  # noqa: E402

RUN_STYLE = {
    "lth": ("LTH: $W_A(k) \\odot M_A$", "tab:green", "o"),
    "naive": ("naive: $W_B(k) \\odot M_A$", "tab:red", "s"),
    "permuted": ("permuted: $W_B(k) \\odot \\pi(M_A)$", "tab:blue", "D"),
    "random": ("random mask: $W_B(k)$, same density", "tab:gray", "v"),
}
PANEL_W, PANEL_H, LEGEND_W = 4.6, 3.6, 3.6


@dataclass
class Plot:
    """A drawn figure and the rows of its CSV."""

    name: str
    fig: Figure
    x_name: str
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Skip:
    name: str
    reason: str


def new_figure(panels: int, ncols: int, sharey: bool = False) -> tuple[Figure, list[Any]]:
    ncols = max(1, min(ncols, panels))
    nrows = math.ceil(panels / ncols)
    # One panel is too narrow for the legend below it: that legend goes to the right (see add_legend).
    extra = LEGEND_W if panels == 1 else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(PANEL_W * ncols + extra, PANEL_H * nrows + 1.2),
                             squeeze=False, layout="constrained", sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    if sharey:  # a shared axis still labels every panel: each reads on its own
        for ax in flat[:panels]:
            ax.yaxis.set_tick_params(labelleft=True)
    return fig, flat[:panels]


def add_legend(fig: Figure, axes: list[Any], title: str, ncols: int = 3) -> None:
    """One legend for every series of every panel, and the title; both are fitted inside the figure.

    Series are collected from all panels (a series drawn in one panel only still gets its entry), once per label.
    """
    handles, labels, seen = [], [], set()
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in seen:
                seen.add(label)
                handles.append(handle)
                labels.append(label)
    fig.suptitle(title)
    fit_to_figure(fig, handles, labels, right=len(axes) == 1, ncols=min(len(labels), ncols))

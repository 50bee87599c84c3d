"""Keeping a figure's legend and titles inside the figure, whatever the number of panels and length of labels.

Constrained layout makes room for a legend placed "outside" the panels, but not for one wider than the figure
itself, and a title longer than its panel runs past the edge: both end up cut off in the saved file. So the
legend is made, measured, and made again with fewer columns until it fits, and titles are wrapped until they do.
"""

from __future__ import annotations

import textwrap
from typing import Any

from matplotlib.figure import Figure
from matplotlib.text import Text

_PAD = 1.0  # pixels of slack: an extent exactly on the edge is inside


def _inside(fig: Figure, artist: Any) -> bool:
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return (box.x0 >= -_PAD and box.y0 >= -_PAD and box.x1 <= fig.bbox.width + _PAD
            and box.y1 <= fig.bbox.height + _PAD)


def _wrap(fig: Figure, text: Text) -> None:
    """Wrap ``text`` at ever fewer characters per line until it lies inside the figure."""
    original = text.get_text()
    longest = max(len(line) for line in original.split("\n"))
    width = longest
    while not _inside(fig, text) and width > 12:
        width = int(width * 0.85)
        text.set_text("\n".join(textwrap.fill(line, width) for line in original.split("\n")))
        fig.canvas.draw()


def titles(fig: Figure) -> list[Text]:
    """The figure's title, its bottom note, and every visible panel's title, where set."""
    found = [t for t in (fig._suptitle, fig._supxlabel) if t is not None and t.get_text()]  # noqa: SLF001
    for ax in fig.axes:
        if ax.get_visible() and ax.title.get_text():
            found.append(ax.title)
    return found


def fit_to_figure(fig: Figure, handles: list[Any], labels: list[str], *, right: bool, ncols: int) -> None:
    """Place one legend for the figure (right of a single panel, else below) with as many columns as fit."""
    legend = None
    if right:
        legend = fig.legend(handles, labels, loc="outside right center", fontsize=9)
        fig.canvas.draw()
        if not _inside(fig, legend):
            legend.remove()
            legend = None
    if legend is None:
        cols = max(1, ncols)
        while True:
            legend = fig.legend(handles, labels, loc="outside lower center", ncols=cols, fontsize=9)
            fig.canvas.draw()
            if cols == 1 or _inside(fig, legend):
                break
            legend.remove()
            cols -= 1
    for text in titles(fig):
        _wrap(fig, text)

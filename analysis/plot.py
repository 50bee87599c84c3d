"""Figures from finished runs, each with a CSV of exactly the numbers it plots.

    python -m analysis.plot runs/                          # PNGs and CSVs into runs/figures/
    python -m analysis.plot runs/ --out docs/figures --pdf # elsewhere, and a PDF of each too

One figure per model and dataset ("family"), named ``<figure>-<family>.png``:

* ``acc_vs_k``: test accuracy against the rewind point k for lth, naive, permuted (and random), mean ± std over
  seeds, dense A as a dashed line; one panel per config (the paper's Figs. 5 and 9).
* ``acc_vs_sparsity`` (one per width): test accuracy against the target sparsity, one panel per rewind point
  (Figs. 9 and 10). Needs two sparsities of one width.
* ``interpolation``: test loss and test accuracy along the straight path from A (α = 0) to B (α = 1), before
  (dashed) and after (solid) matching, one colour per width (Fig. 3).
* ``width_trend``: LTH − permuted and permuted − naive (per seed, averaged over the rewind points k > 0), and
  the test loss barrier after matching, against width. Needs two widths.
* ``training_curves-<config>-seed_<N>`` (one per run directory; ``--no-training-curves`` skips them): training
  loss and test accuracy per epoch of dense A and B, the IMP rounds and the sparse runs, from ``metrics.jsonl``.

Panels are titled by what their config computes (``ResNet20×4, CIFAR-10, 90 % (3 seeds)``), with the settings
that tell apart two configs described alike; panels of one quantity share their y-axis; the legend and titles are
fitted inside the figure; a spread over one seed is called "1 seed, no std".

A figure that the runs cannot fill is not drawn; one line says why. Every CSV has the columns
``panel, quantity, series, <x>, mean, std, seeds`` (x is ``k``, ``sparsity``, ``alpha`` or ``width``): one
row per plotted point, in the order plotted, numbers unrounded; ``std`` is empty where one seed gives none,
and the dense-A row of ``acc_vs_k`` has an empty ``k`` because it is a line across the panel.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from analysis.figure_parts import RUN_STYLE, Plot, Skip, add_legend, new_figure, plt  # sets the backend first
from analysis.table import RUN_ORDER, SeedRun, Setting, find_runs, setting_of
from models.registry import model_caption, width_text

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion-mnist": "Fashion-MNIST",
                 "svhn": "SVHN", "imagenet": "ImageNet"}
CSV_HEAD = ("panel", "quantity", "series")


@dataclass
class Config:
    """One config (one config hash): its label, setting and seeds."""

    label: str
    setting: Setting
    seeds: list[SeedRun]

    @property
    def family(self) -> tuple[str, str]:
        return (self.setting.model or "unknown model", self.setting.dataset or "unknown data")


def family_name(family: tuple[str, str]) -> str:
    return f"{family[0]} on {DATASET_NAMES.get(family[1], family[1])}"


def family_slug(family: tuple[str, str]) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{family[0]}-{family[1]}".lower()).strip("-")


def width_label(setting: Setting) -> str:
    return width_text(setting.model, setting.width)


def describe(setting: Setting) -> str:
    """What a config computes, as a paper would caption it: ``ResNet20×4, CIFAR-10, 90 %``."""
    if setting.model is None:
        return "unknown model (no config.yaml)"
    model = model_caption(setting.model, setting.width)
    parts = [model, DATASET_NAMES.get(setting.dataset or "", setting.dataset or "?")]
    if setting.sparsity is not None:
        parts.append(f"{100 * setting.sparsity:g} %")
    return ", ".join(parts)


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Keys that say where or how a run went, not what it computed: never what tells two panels apart.
_NOT_SETTINGS = ("save_path", "dataset_root", "device", "threads", "num_workers", "seed", "tracking", "project",
                 "entity", "eval_every", "compile", "rewind_points", "sparse.", "studies.")


def seeds_text(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def config_titles(group: list[Config]) -> dict[str, str]:
    """Each config's panel title: its description, plus the settings that tell it from a config described alike."""
    titles = {c.label: describe(c.setting) for c in group}
    for text in set(titles.values()):
        same = [c for c in group if titles[c.label] == text]
        if len(same) < 2:
            continue
        flats = [_flat(c.seeds[0].config) for c in same]
        keys = sorted({k for f in flats for k in f if not k.startswith(_NOT_SETTINGS)
                       and len({json.dumps(g.get(k), sort_keys=True) for g in flats}) > 1})
        for c, f in zip(same, flats, strict=True):
            extra = ", ".join(f"{k} {f.get(k)}" for k in keys[:2]) or c.label
            titles[c.label] = f"{text}\n{extra}"
    return {c.label: f"{titles[c.label]} ({seeds_text(len(c.seeds))})" for c in group}


def spread_text(counts: Iterable[int]) -> str:
    """What the bands and bars are: "mean ± std over 3 seeds", and "1 seed, no std" where there is one."""
    counts = sorted(set(counts))
    if counts == [1]:
        return "1 seed, no std"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    note = "; no std where 1" if counts[0] == 1 else ""
    return f"mean ± std over {n} seeds{note}"


def stats(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std; no std from one value (an error bar of 0 would claim a precision we lack)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def k_axis_label(configs: Iterable[Config]) -> str:
    conventions = {run.results.get("rewind_convention", "epochs") for c in configs for run in c.seeds}
    if conventions == {"epochs"}:
        return "rewind point k (weights after k epochs; 0 = initialisation)"
    if conventions == {"released"}:
        return "rewind point k (weights after k+1 epochs, as the paper's tables)"
    return "rewind point k (mixed conventions: see results.json)"


def unique_phase1(seeds: Iterable[SeedRun]) -> list[SeedRun]:
    """Seeds with distinct matching results: the sparsities of one width share dense A, B and their curves.

    Counting the same interpolation four times (once per sparsity config) would shrink its std for nothing;
    equal results are the same artifact, since two seeds never give bit-identical curves.
    """
    seen, out = set(), []
    for run in seeds:
        key = json.dumps(run.results.get("matching", {}), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


def draw_series(ax: Any, xs: list[float], means: list[float], stds: list[float | None], *, label: str, color: str,
                marker: str = "o", linestyle: str = "-", annotate: bool = False, hollow: bool = False,
                band: bool = True) -> None:
    """A line with a ± std band (or error bars, ``band=False``); one point becomes a marker with an error bar.

    ``hollow`` draws open markers, so two series of one colour differ in more than their dash pattern.
    """
    face = "white" if hollow else color
    if len(xs) > 1:
        ax.plot(xs, means, linestyle=linestyle, marker=marker, markersize=5, color=color, label=label,
                markerfacecolor=face, markeredgecolor=color)
        if any(s is not None for s in stds):
            if band:
                lo = [m - (s or 0.0) for m, s in zip(means, stds, strict=True)]
                hi = [m + (s or 0.0) for m, s in zip(means, stds, strict=True)]
                ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
            else:
                ax.errorbar(xs, means, yerr=[s or 0.0 for s in stds], fmt="none", ecolor=color, capsize=2,
                            linewidth=0.8)
    else:
        ax.errorbar(xs, means, yerr=[stds[0]] if stds[0] is not None else None, fmt=marker, color=color,
                    capsize=5, markersize=7, label=label)
        if annotate:
            text = f"{means[0]:.2f}" + (f" ± {stds[0]:.2f}" if stds[0] is not None else "")
            ax.annotate(text, (xs[0], means[0]), xytext=(10, 0), textcoords="offset points", va="center",
                        fontsize=9, color=color)


def by_family(configs: list[Config]) -> dict[tuple[str, str], list[Config]]:
    out: dict[tuple[str, str], list[Config]] = defaultdict(list)
    for c in configs:
        out[c.family].append(c)
    for group in out.values():
        group.sort(key=lambda c: (c.setting.width or 0, c.setting.sparsity or 0, c.label))
    return dict(sorted(out.items()))


def accuracies(seeds: Iterable[SeedRun], k: str, run: str) -> list[float]:
    return [s.results["sparse"][k][run]["accuracy"] for s in seeds if run in s.results.get("sparse", {}).get(k, {})]


def runs_present(configs: Iterable[Config]) -> list[str]:
    found = {run for c in configs for s in c.seeds for runs in s.results.get("sparse", {}).values() for run in runs}
    return [r for r in RUN_ORDER if r in found] + sorted(found - set(RUN_ORDER))


def style(run: str) -> tuple[str, str, str]:
    return RUN_STYLE.get(run, (run, "tab:purple", "x"))


def figure_acc_vs_k(configs: list[Config]) -> list[Plot | Skip]:
    out: list[Plot | Skip] = []
    for family, group in by_family(configs).items():
        name = f"acc_vs_k-{family_slug(family)}"
        group = [c for c in group if any(s.results.get("sparse") for s in c.seeds)]
        if not group:
            out.append(Skip(name, f"no finished sparse run for {family_name(family)}"))
            continue
        fig, axes = new_figure(len(group), ncols=4, sharey=True)
        plot = Plot(name, fig, "k")
        single_k = all(len({k for s in c.seeds for k in s.results.get("sparse", {})}) == 1 for c in group)
        panel_titles = config_titles(group)
        for ax, cfg in zip(axes, group, strict=True):
            panel = panel_titles[cfg.label]
            ks = sorted({k for s in cfg.seeds for k in s.results.get("sparse", {})}, key=int)
            dense = [s.results["dense"]["A"]["accuracy"] for s in cfg.seeds if "A" in s.results.get("dense", {})]
            if dense:
                m, sd = stats(dense)
                ax.axhline(m, color="black", linestyle="--", linewidth=1.2, label="dense A (trained)")
                ax.annotate(f"dense A {m:.2f}", (1, m), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                            textcoords="offset points", ha="right", va="bottom", fontsize=9)
                plot.rows.append({"panel": panel, "quantity": "test accuracy (%)", "series": "dense A", "k": "",
                                  "mean": m, "std": sd, "seeds": len(dense)})
            for run in runs_present([cfg]):
                points = [(int(k), accuracies(cfg.seeds, k, run)) for k in ks]
                points = [(k, v) for k, v in points if v]
                label, color, marker = style(run)
                summary = [stats(v) for _, v in points]
                draw_series(ax, [k for k, _ in points], [m for m, _ in summary], [s for _, s in summary],
                            label=label, color=color, marker=marker, annotate=single_k)
                for (k, v), (m, sd) in zip(points, summary, strict=True):
                    plot.rows.append({"panel": panel, "quantity": "test accuracy (%)", "series": run, "k": k,
                                      "mean": m, "std": sd, "seeds": len(v)})
            ax.set_title(panel, fontsize=10)
            ax.set_xlabel(k_axis_label([cfg]), fontsize=9)
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
            if len(ks) == 1:
                # One rewind point: a category, not an axis; leave room on the right for the printed values.
                k = int(ks[0])
                ax.set_xticks([k])
                ax.set_xlim(k - 1, k + 2.2)
            elif len(ks) <= 6:
                ax.set_xticks([int(k) for k in ks])
            else:  # rewind points are whole epochs: never a tick at 2.5
                ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        spread = spread_text(len(c.seeds) for c in group)
        add_legend(fig, axes, f"{family_name(family)}\nsparse training from rewind point k ({spread})")
        out.append(plot)
    return out


def figure_acc_vs_sparsity(configs: list[Config]) -> list[Plot | Skip]:
    out: list[Plot | Skip] = []
    for family, group in by_family(configs).items():
        by_width: dict[int | None, list[Config]] = defaultdict(list)
        for c in group:
            by_width[c.setting.width].append(c)
        for width, cfgs in by_width.items():
            wl = width_label(cfgs[0].setting)
            name = f"acc_vs_sparsity-{family_slug(family)}-w{width}"
            cfgs = [c for c in cfgs if c.setting.sparsity is not None and any(s.results.get("sparse") for s in c.seeds)]
            sparsities = sorted({c.setting.sparsity for c in cfgs})
            if len(sparsities) < 2:
                found = ", ".join(f"{100 * s:g}%" for s in sparsities) or "none with a finished sparse run"
                out.append(Skip(name, f"{family_name(family)} {wl} has one sparsity only ({found}); "
                                      "this figure needs two or more"))
                continue
            # A panel per k that at least two sparsities reached: one point per run is no trend.
            ks = sorted({k for c in cfgs for s in c.seeds for k in s.results.get("sparse", {})}, key=int)
            ks = [k for k in ks if sum(any(k in s.results.get("sparse", {}) for s in c.seeds) for c in cfgs) >= 2]
            if not ks:
                out.append(Skip(name, f"{family_name(family)} {wl}: no rewind point was run at two sparsities"))
                continue
            fig, axes = new_figure(len(ks), ncols=3, sharey=True)
            plot = Plot(name, fig, "sparsity")
            for ax, k in zip(axes, ks, strict=True):
                panel = f"k = {k}"
                for run in runs_present(cfgs):
                    pts = [(100 * c.setting.sparsity, accuracies(c.seeds, k, run)) for c in cfgs]
                    pts = sorted((s, v) for s, v in pts if v)
                    if not pts:
                        continue
                    label, color, marker = style(run)
                    summary = [stats(v) for _, v in pts]
                    draw_series(ax, [s for s, _ in pts], [m for m, _ in summary], [sd for _, sd in summary],
                                label=label, color=color, marker=marker)
                    for (s, v), (m, sd) in zip(pts, summary, strict=True):
                        plot.rows.append({"panel": panel, "quantity": "test accuracy (%)", "series": run,
                                          "sparsity": s, "mean": m, "std": sd, "seeds": len(v)})
                ax.set_title(panel, fontsize=10)
                ax.set_xlabel("target sparsity (%)")
                ax.set_ylabel("test accuracy (%)")
                ax.set_xticks([100 * s for s in sparsities])
                ax.grid(alpha=0.3)
            spread = spread_text(len(c.seeds) for c in cfgs)
            add_legend(fig, axes, f"{family_name(family)} {wl}\n"
                                  f"accuracy against sparsity per rewind point k ({spread})")
            out.append(plot)
    return out


def _curve_stats(seeds: list[SeedRun], side: str, key: str) -> list[tuple[float, float, float | None, int]]:
    """(alpha, mean, std, n) along one curve over seeds; seeds are joined on alpha, not on position."""
    at: dict[float, list[float]] = defaultdict(list)
    for s in seeds:
        for point in s.results.get("matching", {}).get(side, []):
            at[round(point["alpha"], 9)].append(point[key])
    return [(a, *stats(v), len(v)) for a, v in sorted(at.items())]


WIDTH_MARKERS = ("o", "s", "D", "^", "v", "P")
# Before matching: dashed, open markers; after: solid, filled. Told apart by line, marker and fill, not by dash alone.
WHEN = (("curve_before", "before matching", "--", True), ("curve_after", "after matching", "-", False))


def alpha_zero_note(seeds: list[SeedRun]) -> str | None:
    """A note when the path's α = 0 point differs from dense A as trained, which a reader would take them to be.

    Every point of the path, the ends included, is measured after BatchNorm statistics are re-estimated on
    training batches; dense A's accuracy in results.json is the trained model's, with its own running statistics.
    """
    pairs = []
    for s in seeds:
        curve = s.results.get("matching", {}).get("curve_after") or []
        start = [p for p in curve if abs(p["alpha"]) < 1e-9]
        dense = s.results.get("dense", {}).get("A", {}).get("accuracy")
        if start and dense is not None:
            pairs.append((start[0]["test_accuracy"], dense))
    if not pairs or max(abs(a - d) for a, d in pairs) < 0.5:
        return None
    path = statistics.fmean(a for a, _ in pairs)
    dense = statistics.fmean(d for _, d in pairs)
    return (f"Note: at α = 0 the path is A with its BatchNorm statistics re-estimated on training batches, as at "
            f"every α: {path:.2f} % test accuracy, against {dense:.2f} % for dense A as trained (results.json).")


def figure_interpolation(configs: list[Config]) -> list[Plot | Skip]:
    out: list[Plot | Skip] = []
    for family, group in by_family(configs).items():
        name = f"interpolation-{family_slug(family)}"
        by_width: dict[int | None, list[SeedRun]] = defaultdict(list)
        labels: dict[int | None, str] = {}
        for c in group:
            with_curves = [s for s in c.seeds if s.results.get("matching", {}).get("curve_after")]
            by_width[c.setting.width].extend(with_curves)
            labels[c.setting.width] = width_label(c.setting)
        by_width = {w: unique_phase1(s) for w, s in by_width.items() if s}
        if not by_width:
            out.append(Skip(name, f"no results.json of {family_name(family)} holds interpolation curves "
                                  "(rerun experiment.py to rebuild results.json from the artifacts)"))
            continue
        fig, axes = new_figure(2, ncols=2)
        plot = Plot(name, fig, "alpha")
        colors = plt.get_cmap("viridis")
        widths = sorted(by_width, key=lambda w: w or 0)
        quantities = (("test_loss", "test loss"), ("test_accuracy", "test accuracy (%)"))
        for ax, (key, quantity) in zip(axes, quantities, strict=True):
            for i, width in enumerate(widths):
                color = colors(0.1 + 0.75 * i / max(1, len(widths) - 1)) if len(widths) > 1 else "tab:blue"
                for side, when, ls, hollow in WHEN:
                    pts = _curve_stats(by_width[width], side, key)
                    if not pts:
                        continue
                    series = f"{labels[width]}, {when}" if len(widths) > 1 else when
                    # Several widths: bands would pile up, so error bars; one width keeps its two bands.
                    draw_series(ax, [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts], label=series,
                                color=color, linestyle=ls, marker=WIDTH_MARKERS[i % len(WIDTH_MARKERS)],
                                hollow=hollow, band=len(widths) == 1)
                    for a, m, sd, n in pts:
                        plot.rows.append({"panel": quantity, "quantity": quantity, "series": series, "alpha": a,
                                          "mean": m, "std": sd, "seeds": n})
            ax.set_title(quantity, fontsize=10)
            ax.set_xlabel("α: weights (1−α)·A + α·B  (A, or π(A) after matching, at α = 0)", fontsize=9)
            ax.set_ylabel(quantity)
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
        spread = spread_text(len(s) for s in by_width.values())
        what = labels[widths[0]] if len(widths) == 1 else "one colour and marker per width"
        note = alpha_zero_note([s for seeds in by_width.values() for s in seeds])
        if note:
            fig.supxlabel(note, fontsize=8)
        add_legend(fig, axes, f"{family_name(family)} ({what})\nthe straight path between the two dense models "
                              f"({spread})", ncols=max(2, len(widths)))  # a column per width: before above after
        out.append(plot)
    return out


def _gap(seeds: list[SeedRun], hi: str, lo: str) -> list[float]:
    """Per seed, hi − lo averaged over its rewind points k > 0 (all k when it has only k = 0)."""
    gaps = []
    for s in seeds:
        sparse = s.results.get("sparse", {})
        ks = [k for k, runs in sparse.items() if hi in runs and lo in runs]
        later = [k for k in ks if int(k) > 0] or ks
        if later:
            gaps.append(statistics.fmean(sparse[k][hi]["accuracy"] - sparse[k][lo]["accuracy"] for k in later))
    return gaps


def figure_width_trend(configs: list[Config]) -> list[Plot | Skip]:
    out: list[Plot | Skip] = []
    for family, group in by_family(configs).items():
        name = f"width_trend-{family_slug(family)}"
        widths = sorted({c.setting.width for c in group if c.setting.width is not None})
        if len(widths) < 2:
            found = ", ".join(width_label(c.setting) for c in group[:1]) if widths else "unknown (no config.yaml)"
            out.append(Skip(name, f"{family_name(family)} has one width only ({found}); this figure needs two or more"))
            continue
        fig, axes = new_figure(3, ncols=3)
        axes[1].sharey(axes[0])  # both gaps are accuracy differences in points: one scale
        plot = Plot(name, fig, "width")
        _draw_gaps_by_width(plot, axes[:2], group)
        _draw_barrier_by_width(plot, axes[2], group, widths)
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xticks(widths, [width_label(Setting(group[0].setting.model, None, w, None)) for w in widths])
            ax.minorticks_off()
            ax.set_xlabel("width")
            ax.grid(alpha=0.3)
        spread = spread_text(len(unique_phase1(c.seeds)) for c in group)
        add_legend(fig, axes, f"{family_name(family)}\nhow the gaps and the barrier change with width "
                              f"({spread})", ncols=4)
        out.append(plot)
    return out


def _draw_gaps_by_width(plot: Plot, axes: list[Any], group: list[Config]) -> None:
    """LTH − permuted and permuted − naive against width, one series per sparsity (mean ± std over seeds)."""
    sparsities = sorted({c.setting.sparsity for c in group if c.setting.sparsity is not None})
    colors = plt.get_cmap("plasma")
    panels = (("LTH − permuted", "lth", "permuted"), ("permuted − naive", "permuted", "naive"))
    for ax, (title, hi, lo) in zip(axes, panels, strict=True):
        for i, sp in enumerate(sparsities):
            pts = []
            for c in group:
                if c.setting.sparsity == sp and c.setting.width is not None:
                    gaps = _gap(c.seeds, hi, lo)
                    if gaps:
                        pts.append((c.setting.width, gaps))
            if not pts:
                continue
            pts.sort()
            summary = [stats(v) for _, v in pts]
            series = f"{100 * sp:g}% sparse"
            draw_series(ax, [w for w, _ in pts], [m for m, _ in summary], [sd for _, sd in summary],
                        label=series, color=colors(0.1 + 0.7 * i / max(1, len(sparsities) - 1)))
            for (w, v), (m, sd) in zip(pts, summary, strict=True):
                plot.rows.append({"panel": title, "quantity": "test accuracy difference (points)",
                                  "series": series, "width": w, "mean": m, "std": sd, "seeds": len(v)})
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{title} (mean over k > 0)", fontsize=10)
        ax.set_ylabel("test accuracy difference (points)")


def _draw_barrier_by_width(plot: Plot, ax: Any, group: list[Config], widths: list[int]) -> None:
    """The test loss barrier after matching against width (mean ± std over the distinct phase-1 runs)."""
    by_width: dict[int, list[SeedRun]] = defaultdict(list)
    for c in group:
        if c.setting.width is not None:
            by_width[c.setting.width].extend(c.seeds)
    pts = []
    for w in widths:
        barriers = [s.results["matching"]["test_loss_barrier_after"] for s in unique_phase1(by_width[w])
                    if "test_loss_barrier_after" in s.results.get("matching", {})]
        if barriers:
            pts.append((w, barriers))
    summary = [stats(v) for _, v in pts]
    draw_series(ax, [w for w, _ in pts], [m for m, _ in summary], [sd for _, sd in summary],
                label="test loss barrier after matching", color="tab:blue")
    for (w, v), (m, sd) in zip(pts, summary, strict=True):
        plot.rows.append({"panel": "loss barrier after matching", "quantity": "test loss barrier",
                          "series": "after matching", "width": w, "mean": m, "std": sd, "seeds": len(v)})
    ax.set_title("test loss barrier after matching", fontsize=10)
    ax.set_ylabel("test loss barrier")


FIGURES: tuple[Callable[[list[Config]], list[Plot | Skip]], ...] = (
    figure_acc_vs_k, figure_acc_vs_sparsity, figure_interpolation, figure_width_trend)


def load_configs(save_path: Path) -> list[Config]:
    return [Config(label, setting_of(seeds[0]), seeds) for label, seeds in find_runs(save_path).items()]


def write_plot(plot: Plot, out: Path, pdf: bool) -> list[Path]:
    png = out / f"{plot.name}.png"
    plot.fig.savefig(png, dpi=150)
    written = [png]
    if pdf:
        plot.fig.savefig(png.with_suffix(".pdf"))
        written.append(png.with_suffix(".pdf"))
    plt.close(plot.fig)
    columns = (*CSV_HEAD, plot.x_name, "mean", "std", "seeds")
    with open(png.with_suffix(".csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in plot.rows:
            writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    written.append(png.with_suffix(".csv"))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.plot", description=__doc__.splitlines()[0])
    p.add_argument("save_path", type=Path, nargs="?", default=Path("runs"),
                   help="the save_path of the runs (holds <config>/seed_<N>/; default: runs)")
    p.add_argument("--out", type=Path, help="where the figures go (default: SAVE_PATH/figures)")
    p.add_argument("--pdf", action="store_true", help="also save each figure as PDF")
    p.add_argument("--no-training-curves", action="store_true",
                   help="skip the training_curves figure of every run directory (one per config and seed)")
    args = p.parse_args(argv)
    configs = load_configs(args.save_path)
    if not configs:
        print(f"error: no <config>/seed_<N>/results.json under {args.save_path}", file=sys.stderr)
        return 2
    out = args.out or args.save_path / "figures"
    out.mkdir(parents=True, exist_ok=True)
    items: list[Plot | Skip] = [item for make in FIGURES for item in make(configs)]
    curves = iter(()) if args.no_training_curves else training_curve_figures(configs)
    for item in itertools.chain(items, curves):
        if isinstance(item, Skip):
            print(f"skipped {item.name}: {item.reason}")
        else:
            print("wrote " + ", ".join(str(p) for p in write_plot(item, out, args.pdf)))
    return 0


def training_curve_figures(configs: list[Config]) -> Iterator[Plot | Skip]:
    """One ``training_curves`` figure per run directory (config and seed), drawn one at a time: a sweep has many."""
    from analysis.training_curves import figure_training_curves

    for cfg in configs:
        for run in sorted(cfg.seeds, key=lambda s: s.path.name):
            name = f"training_curves-{cfg.label}-{run.path.name}"
            seed = run.results.get("seed", run.path.name.removeprefix("seed_"))
            yield figure_training_curves(run.path, name, f"{describe(cfg.setting)}, seed {seed}")


if __name__ == "__main__":
    from utils.errors import run_command

    sys.exit(run_command(main, "nothing was written"))

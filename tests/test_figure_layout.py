"""analysis.plot's figures as a reader sees them: every legend and title inside the figure for 1, 2 and 4 configs;
integer rewind-point ticks; panels captioned by what they compute; shared y-axes; before/after told apart by more
than a dash; "1 seed" said as such; the α = 0 note; the training_curves figure of a run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml

from analysis import plot
from analysis.figure_fit import titles
from analysis.training_curves import figure_training_curves, read_curves

RUNS = ("lth", "naive", "permuted", "random")


def _curve(width: int, side: str, start: float) -> list[dict[str, float]]:
    bump = (2.0 if side == "curve_before" else 0.3) / width
    return [{"alpha": a / 10, "train_loss": 0.2, "train_accuracy": 95.0,
             "test_loss": 0.3 + bump * (1 - abs(a - 5) / 5),
             "test_accuracy": (start if a == 0 else 90.0) - 10 * bump * (1 - abs(a - 5) / 5)} for a in range(11)]


def write_config(save: Path, label: str, width: int, sparsity: float, seeds: int, ks: tuple[int, ...],
                 dense_a: float = 90.0, alpha0: float = 90.0, lr: float = 0.08) -> None:
    config = {"model_type": "ResNet", "width_multiplier": width, "dataset": "cifar10",
              "pruning": {"sparsity": sparsity}, "optimizer": {"lr": lr}}
    for seed in range(seeds):
        run_dir = save / f"{label}-{label[-4:]}abcd" / f"seed_{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        results = {
            "config_hash": f"{label}h", "seed": seed, "config": label, "rewind_convention": "epochs",
            "dense": {"A": {"accuracy": dense_a + seed, "loss": 0.3}},
            "matching": {"test_loss_barrier_after": 0.3 / width, "midpoint_accuracy_before": 70.0,
                         "midpoint_accuracy_after": 88.0,
                         "curve_before": _curve(width, "curve_before", alpha0 + seed),
                         "curve_after": _curve(width, "curve_after", alpha0 + seed)},
            "sparse": {str(k): {run: {"accuracy": 80.0 + i + 0.1 * k + 0.2 * seed + width, "loss": 0.5}
                                for i, run in enumerate(RUNS)} for k in ks}}
        (run_dir / "results.json").write_text(json.dumps(results))


def draw(save: Path) -> list[plot.Plot]:
    configs = plot.load_configs(save)
    return [p for make in plot.FIGURES for p in make(configs) if isinstance(p, plot.Plot)]


def outside(fig) -> list[str]:
    """Every legend and title whose drawn extent leaves the figure, by its text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    found = []
    for artist in [*fig.legends, *titles(fig)]:
        box = artist.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > W + 1 or box.y1 > H + 1:
            found.append(getattr(artist, "get_text", lambda: "legend")())
    return found


@pytest.mark.parametrize("n_configs", [1, 2, 4])
def test_every_legend_and_title_lies_inside_the_figure(tmp_path, n_configs):
    # widths 1, 4, 16, 64 at two sparsities: long legend labels, several widths on one interpolation figure
    for i in range(n_configs):
        write_config(tmp_path, f"configs__a_long_config_file_name_{i}", width=4 ** (i // 2 + i % 2),
                     sparsity=(0.9, 0.95)[i % 2], seeds=2, ks=(0, 5, 10, 15, 20, 25, 50, 75, 100))
    plots = draw(tmp_path)
    assert {p.name.split("-")[0] for p in plots} >= {"acc_vs_k", "interpolation"}
    for p in plots:
        assert p.fig.legends, f"{p.name} has no legend"
        assert outside(p.fig) == [], f"{p.name}: outside the figure"
        plt.close(p.fig)


def test_panels_are_captioned_by_what_they_compute_and_share_their_y_axis(tmp_path):
    write_config(tmp_path, "configs__config_4_90", width=4, sparsity=0.9, seeds=2, ks=(0, 1, 2))
    write_config(tmp_path, "my__tiny", width=4, sparsity=0.8, seeds=2, ks=(0, 1, 2))
    fig = next(p for p in draw(tmp_path) if p.name.startswith("acc_vs_k")).fig
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["ResNet20×4, CIFAR-10, 80 % (2 seeds)",
                                               "ResNet20×4, CIFAR-10, 90 % (2 seeds)"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    for ax in axes:  # rewind points are whole epochs
        assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_xticks()
    plt.close("all")


def test_configs_described_alike_are_told_apart_by_their_differing_setting(tmp_path):
    write_config(tmp_path, "configs__a", width=1, sparsity=0.9, seeds=1, ks=(0,), lr=0.08)
    write_config(tmp_path, "configs__b", width=1, sparsity=0.9, seeds=1, ks=(0,), lr=0.2)
    fig = next(p for p in draw(tmp_path) if p.name.startswith("acc_vs_k")).fig
    got = sorted(ax.get_title() for ax in fig.axes if ax.get_visible())
    assert got == ["ResNet20×1, CIFAR-10, 90 %\noptimizer.lr 0.08 (1 seed)",
                   "ResNet20×1, CIFAR-10, 90 %\noptimizer.lr 0.2 (1 seed)"]
    plt.close("all")


def test_one_seed_is_said_as_such_and_no_std_is_claimed(tmp_path):
    write_config(tmp_path, "configs__config_1_90", width=1, sparsity=0.9, seeds=1, ks=(0, 5))
    for p in draw(tmp_path):
        title = p.fig._suptitle.get_text()  # noqa: SLF001
        assert "1 seed, no std" in title and "mean ± std" not in title, (p.name, title)
        plt.close(p.fig)


def test_interpolation_tells_before_from_after_and_widths_apart(tmp_path):
    for width in (1, 4):
        write_config(tmp_path, f"configs__w{width}", width=width, sparsity=0.9, seeds=2, ks=(0,))
    fig = next(p for p in draw(tmp_path) if p.name.startswith("interpolation")).fig
    lines = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]
    style = {ln.get_label(): (ln.get_linestyle(), ln.get_marker(), ln.get_markerfacecolor()) for ln in lines}
    before, after = style["×1, before matching"], style["×1, after matching"]
    assert before[0] != after[0] and before[2] != after[2]  # dash and fill
    assert style["×1, after matching"][1] != style["×4, after matching"][1]  # widths: marker, not colour alone
    assert len({tuple(map(str, s)) for s in style.values()}) == 4
    assert fig._supxlabel is None or not fig._supxlabel.get_text()  # noqa: SLF001 - α = 0 matches dense A: no note
    plt.close("all")


def test_a_note_where_alpha_zero_is_not_dense_a_as_trained(tmp_path):
    # a barely trained BatchNorm model: 10 % as trained, 100 % once BatchNorm is re-estimated on the path
    write_config(tmp_path, "configs__tiny", width=1, sparsity=0.9, seeds=1, ks=(0,), dense_a=10.0, alpha0=100.0)
    fig = next(p for p in draw(tmp_path) if p.name.startswith("interpolation")).fig
    note = fig._supxlabel.get_text()  # noqa: SLF001
    assert "BatchNorm" in note and "100.00 %" in note.replace("\n", " ") and "10.00 %" in note.replace("\n", " ")
    assert outside(fig) == []
    plt.close("all")


def test_width_trend_legend_names_every_series(tmp_path):
    for width in (1, 4):
        write_config(tmp_path, f"configs__w{width}", width=width, sparsity=0.9, seeds=2, ks=(0, 5))
    fig = next(p for p in draw(tmp_path) if p.name.startswith("width_trend")).fig
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert labels == {"90% sparse", "test loss barrier after matching"}
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert not fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[2])
    plt.close("all")


def write_metrics(run_dir: Path) -> None:
    recs = [{"run": run, "epoch": e, "train_loss": 1.0 / e, "test_accuracy": 50.0 + e}
            for run in ("dense_A", "dense_B") for e in (1, 2, 3)]
    recs += [{"run": f"imp_round_{r}", "epoch": e, "train_loss": 0.5, "test_accuracy": 60.0 + r}
             for r in (1, 2, 3) for e in (1, 2)]
    recs += [{"run": f"sparse_{run}_k{k}", "epoch": e, "train_loss": 0.4, "test_accuracy": 70.0 + k}
             for run in ("lth", "naive", "permuted") for k in (0, 2) for e in range(1, 4 - k)]
    # a run resumed after a kill logs its epoch 2 again: the later record wins
    recs.append({"run": "dense_A", "epoch": 2, "train_loss": 0.25, "test_accuracy": 99.0})
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"run": "dense_A", "ep')


def test_training_curves_of_a_run_directory(tmp_path):
    write_metrics(tmp_path / "seed_0")
    curves = read_curves(tmp_path / "seed_0" / "metrics.jsonl")
    assert [r["test_accuracy"] for r in curves["dense_A"]] == [51.0, 99.0, 53.0]
    made = figure_training_curves(tmp_path / "seed_0", "training_curves-x-seed_0", "ResNet20×1, CIFAR-10, 90 %")
    assert isinstance(made, plot.Plot)
    rows = made.rows
    imp = [(r["series"], r["epoch"]) for r in rows if r["panel"] == "IMP" and r["quantity"] == "training loss"]
    # the rounds one after another on one axis
    assert imp == [("round 1", 1), ("round 1", 2), ("round 2", 3), ("round 2", 4), ("round 3", 5), ("round 3", 6)]
    sparse = {r["series"] for r in rows if r["panel"] == "sparse"}
    assert sparse == {f"{run} k={k}" for run in ("lth", "naive", "permuted") for k in (0, 2)}
    assert len([r for r in rows if r["panel"] == "dense"]) == 2 * 2 * 3
    assert outside(made.fig) == []
    plt.close("all")


def test_training_curves_without_records_are_skipped(tmp_path):
    (tmp_path / "seed_0").mkdir()
    made = figure_training_curves(tmp_path / "seed_0", "training_curves-x-seed_0", "x")
    assert isinstance(made, plot.Skip) and "no per-epoch records" in made.reason

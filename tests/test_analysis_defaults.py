"""The three analysis commands read ``runs/`` when no save_path is given, as the README's study commands do."""

from __future__ import annotations

import contextlib
import io

import pytest

from analysis import compare, plot, table
from tests.test_figure_layout import write_config


def test_table_plot_and_compare_default_to_runs(tmp_path, monkeypatch):
    write_config(tmp_path / "runs", "configs__config_1_90", width=1, sparsity=0.9, seeds=2, ks=(0, 5))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert table.main([]) == 0
        assert plot.main(["--no-training-curves"]) == 0
        assert compare.main([]) == 0
    assert "ResNet20" in out.getvalue() or "configs__config_1_90" in out.getvalue()
    assert (tmp_path / "runs" / "figures" / "acc_vs_k-resnet20-cifar10.png").stat().st_size > 10_000


@pytest.mark.parametrize("command", [table.main, plot.main, compare.main])
def test_without_runs_the_error_names_the_default(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    assert command([]) == 2
    assert "runs" in capsys.readouterr().err

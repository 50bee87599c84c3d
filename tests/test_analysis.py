"""analysis.table: mean ± std over seeds from the runner's results.json files."""

from __future__ import annotations

import csv
import json

from analysis import table


def write(path, seed, lth, naive, perm, config_hash="h", label="configs__config_1_90"):
    res = {"config_hash": config_hash, "seed": seed, "config": label,
           "dense": {"A": {"accuracy": 90.0 + seed, "loss": 0.3}},
           "imp": {"sparsity": 0.9, "accuracy": 88.0, "loss": 0.4, "rounds": 11},
           "matching": {"method": "activation", "midpoint_accuracy_before": 20.0, "midpoint_accuracy_after": 80.0},
           "sparse": {"5": {"lth": {"accuracy": lth, "loss": 0.3}, "naive": {"accuracy": naive, "loss": 0.3},
                            "permuted": {"accuracy": perm, "loss": 0.3}}}}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(res))


def test_table_means_and_stds_over_seeds(tmp_path, capsys):
    write(tmp_path / "configs__config_1_90" / "seed_0", 0, 91.0, 88.0, 89.0)
    write(tmp_path / "configs__config_1_90" / "seed_1", 1, 93.0, 88.0, 90.0)
    assert table.main([str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "configs__config_1_90 (2 seeds)" in out
    assert "| 5 | 92.00 ± 1.41 | 88.00 ± 0.00 | 89.50 ± 0.71 | 1.50 ± 0.71 |" in out
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    perm = [r for r in rows if r["run"] == "permuted"][0]
    assert perm["k"] == "5" and perm["seeds"] == "2" and float(perm["mean_accuracy"]) == 89.5


def test_table_without_results_is_one_line_error(tmp_path, capsys):
    assert table.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_table_groups_by_config_hash_not_by_name(tmp_path, capsys):
    """Two different configs under one name are two rows, never one config with 'two seeds'."""
    write(tmp_path / "c-h1" / "seed_0", 0, 91.0, 88.0, 89.0, config_hash="h1", label="c")
    write(tmp_path / "c-h2" / "seed_0", 0, 81.0, 78.0, 79.0, config_hash="h2", label="c")
    write(tmp_path / "c-h1b" / "seed_1", 1, 93.0, 88.0, 90.0, config_hash="h1", label="c")
    assert table.main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "c [h1] (2 seeds)" in captured.out and "c [h2] (1 seed)" in captured.out
    assert "'c' names 2 different configs" in captured.err

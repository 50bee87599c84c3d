"""analysis.table: mean ± std over seeds from the runner's results.json files."""

from __future__ import annotations

import csv
import json

from analysis import table


def write(path, seed, lth, naive, perm):
    res = {"config_hash": "h", "seed": seed,
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

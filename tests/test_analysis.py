"""analysis.table: mean ± std over seeds from the runner's results.json files."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from analysis import compare, table
from models.registry import display_name


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
    assert table.main([str(tmp_path), "--summary-csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "configs__config_1_90 (2 seeds)" in out
    assert "| 5 | 92.00 ± 1.41 | 88.00 ± 0.00 | 89.50 ± 0.71 | 1.50 ± 0.71 |" in out
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    perm = [r for r in rows if r["run"] == "permuted"][0]
    assert perm["k"] == "5" and perm["seeds"] == "2" and float(perm["mean_accuracy"]) == 89.5


def test_table_long_csv_one_row_per_config_seed_k_run(tmp_path):
    """--csv: every seed's own number, with its loss and the barriers of its matching, nothing averaged."""
    for seed, (lth, naive, perm) in enumerate([(91.0, 88.0, 89.0), (93.0, 88.5, 90.25)]):
        write(tmp_path / "configs__config_1_90" / f"seed_{seed}", seed, lth, naive, perm)
        res = json.loads((tmp_path / "configs__config_1_90" / f"seed_{seed}" / "results.json").read_text())
        res["rewind_convention"] = "released"
        res["matching"].update(test_loss_barrier_before=2.5 + seed, test_loss_barrier_after=0.25 + seed,
                               train_loss_barrier_before=2.0, train_loss_barrier_after=0.125)
        res["sparse"]["5"]["naive"]["loss"] = 0.7 + seed
        (tmp_path / "configs__config_1_90" / f"seed_{seed}" / "results.json").write_text(json.dumps(res))
    assert table.main([str(tmp_path), "--csv", str(tmp_path / "long.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "long.csv")))
    assert [(r["seed"], r["k"], r["run"]) for r in rows] == [
        ("0", "5", "lth"), ("0", "5", "naive"), ("0", "5", "permuted"),
        ("1", "5", "lth"), ("1", "5", "naive"), ("1", "5", "permuted")]
    assert [float(r["accuracy"]) for r in rows] == [91.0, 88.0, 89.0, 93.0, 88.5, 90.25]
    naive1 = rows[4]
    assert naive1["config"] == "configs__config_1_90" and naive1["config_hash"] == "h"
    assert float(naive1["loss"]) == 1.7 and naive1["rewind_convention"] == "released"
    assert float(naive1["test_loss_barrier_before"]) == 3.5 and float(naive1["test_loss_barrier_after"]) == 1.25
    assert float(naive1["train_loss_barrier_after"]) == 0.125


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


def test_table_keeps_a_renamed_config_one_config(tmp_path, capsys):
    """A run directory renamed to its new hash (phases/run_dir.py): the seed rewritten since records both hashes,
    the seed not yet rewritten only the old one; they are still one config with two seeds, shown by the new hash."""
    write(tmp_path / "c-new" / "seed_0", 0, 91.0, 88.0, 89.0, config_hash="new", label="c")
    res = json.loads((tmp_path / "c-new" / "seed_0" / "results.json").read_text())
    (tmp_path / "c-new" / "seed_0" / "results.json").write_text(json.dumps({**res, "legacy_config_hash": "old"}))
    write(tmp_path / "c-old" / "seed_1", 1, 93.0, 88.0, 90.0, config_hash="old", label="c")
    write(tmp_path / "c-other" / "seed_0", 0, 81.0, 78.0, 79.0, config_hash="other", label="c")
    assert table.main([str(tmp_path), "--csv", str(tmp_path / "long.csv")]) == 0
    captured = capsys.readouterr()
    assert "c [new] (2 seeds)" in captured.out and "c [other] (1 seed)" in captured.out
    rows = list(csv.DictReader(open(tmp_path / "long.csv")))
    assert {r["config_hash"] for r in rows if r["seed"] == "1"} == {"new"}


# ---- analysis.compare: our runs beside the paper's cells -------------------------------------------------------

def write_run(save, label, seed, sparse, *, convention="released", width=1, sparsity=0.9, dataset="cifar10",
              model_type="ResNet", config_hash=None, overrides=None, data=None):
    """One seed's run directory as the runner writes it: results.json and the config.yaml beside it.

    The config is the paper config of its cell (with ``rewind_convention`` and ``overrides`` set) where there is
    one; ``data`` (train, test) is what results.json records of the examples seen (default: the real dataset's).
    """
    run_dir = save / f"{label}-{config_hash or label}" / f"seed_{seed}"
    run_dir.mkdir(parents=True)
    train, test = data or compare.REAL_SIZES.get(dataset, (1000, 100))
    res = {"config_hash": config_hash or label, "seed": seed, "config": label, "rewind_convention": convention,
           "data": {"dataset": dataset, "train": train, "test": test},
           "dense": {"A": {"accuracy": 92.0, "loss": 0.3}},
           "sparse": {str(k): {run: {"accuracy": acc, "loss": 0.4, "weight_sparsity": sparsity}
                               for run, acc in runs.items()} for k, runs in sparse.items()}}
    (run_dir / "results.json").write_text(json.dumps(res))
    paper = compare.paper_configs().get((display_name(model_type), width, dataset, round(100 * sparsity)))
    config = paper.to_dict() if paper else {"model_type": model_type, "width_multiplier": width, "dataset": dataset,
                                            "pruning": {"sparsity": sparsity}}
    config["rewind_convention"] = convention
    for key, value in (overrides or {}).items():
        config[key] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def paper_cells():
    with open(compare.PAPER_TABLES, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def paper_mean(table_no, row, column):
    [cell] = [c for c in paper_cells() if (c["table"], c["row"], c["column"]) == (table_no, row, column)]
    return float(cell["mean"])


def run_compare(save, capsys):
    assert compare.main([str(save), "--csv", str(save / "cmp.csv")]) == 0
    out = capsys.readouterr().out
    return out, list(csv.DictReader(open(save / "cmp.csv", encoding="utf-8")))


def test_paper_data_file_has_every_cell_of_tables_5_and_6_with_its_source():
    cells = paper_cells()
    for table_no in ("5", "6"):
        mine = [c for c in cells if c["table"] == table_no]
        # 4 sparsities x 3 methods x 9 rewind points, each once
        assert len(mine) == 108
        assert len({(c["sparsity"], c["method"], c["k"]) for c in mine}) == 108
    assert all(c["rewind_convention"] == "released" and c["source"] and c["row"] and c["column"] for c in cells)
    # spot checks against the paper, one per table, typed in by hand
    assert paper_mean("5", "90% perm.", "k=20") == 89.50
    assert [c["std"] for c in cells if (c["table"], c["row"], c["column"]) == ("6", "97% naive", "k=100")] == ["0.10"]
    # the derived summary's cells are best-over-k means without a std, at the k the summary names
    best = [c for c in cells if c["table"] == "summary" and c["row"] == "ResNet20×{16}/CIFAR-100 97%"]
    assert {(c["method"], c["k"], c["mean"], c["std"]) for c in best} == {
        ("lth", "100", "81.14", ""), ("naive", "25", "77.19", ""), ("permuted", "100", "79.63", "")}


def test_compare_paper_means_give_zero_difference_and_missing_cells_are_named(tmp_path, capsys):
    """Our seeds all at the paper's mean: every filled cell differs by 0, lies within 2 SE; the rest is listed."""
    filled = {k: {m: paper_mean("5", f"90% {label}", f"k={k}") for m, label in
                  (("lth", "LTH"), ("naive", "naive"), ("permuted", "perm."))} for k in (5, 20)}
    for seed in range(3):
        write_run(tmp_path, "configs__config_1_90", seed, filled)
    out, rows = run_compare(tmp_path, capsys)
    done = [r for r in rows if r["status"] == "filled"]
    assert sorted((r["method"], r["paper_k"]) for r in done) == sorted(
        (m, str(k)) for k in (5, 20) for m in ("lth", "naive", "permuted"))
    assert all(float(r["difference"]) == 0.0 and r["within_2se"] == "yes" and r["our_seeds"] == "3" for r in done)
    assert all(r["our_k"] == r["paper_k"] and r["rewind_convention"] == "released" for r in done)
    assert all(r["perm_ge_naive_paper"] == "yes" and r["perm_ge_naive_ours"] == "yes"
               for r in done if r["method"] == "permuted")
    # every other paper cell is a row of its own, marked missing, none dropped
    accuracy_cells = [c for c in paper_cells() if c["table"] != compare.ENSEMBLE_TABLE]
    assert len(rows) == len(accuracy_cells)
    assert sum(r["status"] == "missing" for r in rows) == len(accuracy_cells) - 6
    assert "| 90% | perm. | 20 | 20 | configs__config_1_90 (released) | 89.50 ± 0.27 | 89.50 ± 0.00 (3) | +0.00 " \
           "| yes | yes / yes |" in out
    assert "- Table 5, ResNet20×{1}/CIFAR-10: " in out
    assert "80% all 27 cells; 90% LTH k=0, 10, 15, 25, 50, 75, 100; 90% naive k=0, 10, 15, 25, 50, 75, 100" in out
    assert "- Table 6, ResNet20×{4}/CIFAR-10: all 108 cells (S 80, 90, 95, 97 %; k 0, 5, 10, 15, 20, 25, 50, 75, " \
           "100)" in out


def test_compare_shifts_k_under_the_epochs_convention(tmp_path, capsys):
    """Under `epochs` our k=6 (after 6 epochs) is the paper's k=5 (saved after its 6th epoch); our k=0 has no cell.

    The same numbers at our k=5 under `released` sit in the paper's k=5; under `epochs` at k=5 they would sit in
    a k=4 column that the paper does not have.
    """
    values = {m: paper_mean("5", f"95% {label}", "k=5") for m, label in
              (("lth", "LTH"), ("naive", "naive"), ("permuted", "perm."))}
    init = {"lth": 80.0, "naive": 79.0, "permuted": 79.5}
    for seed in range(2):
        write_run(tmp_path, "epochs_run", seed, {0: init, 6: values}, convention="epochs", sparsity=0.95)
        write_run(tmp_path, "released_run", seed, {5: values}, convention="released", sparsity=0.95)
        write_run(tmp_path, "epochs_at_5", seed, {5: values}, convention="epochs", sparsity=0.95)
    out, rows = run_compare(tmp_path, capsys)
    done = [r for r in rows if r["status"] == "filled"]
    assert {(r["config"], r["our_k"], r["paper_k"]) for r in done} == {("released_run", "5", "5")}
    assert all(float(r["difference"]) == 0.0 for r in done)
    # the epochs run's k=6 lands in the paper's k=5 column, but trains one sparse epoch less: no verdict
    other = [r for r in rows if r["status"] == "not comparable"]
    assert {(r["config"], r["our_k"], r["paper_k"]) for r in other} == {("epochs_run", "6", "5")}
    assert all(r["not_comparable"] == "rewind_convention: epochs (paper: released)" and r["within_2se"] == ""
               and r["difference"] == "" for r in other)
    assert "epochs_run (ResNet20, width 1, cifar10, 95 %, epochs): lth k=0, naive k=0, permuted k=0; under `epochs` " \
           "our k=0 is the initialisation" in out
    assert "epochs_at_5 (ResNet20, width 1, cifar10, 95 %, epochs): lth k=5, naive k=5, permuted k=5" in out


def test_compare_two_standard_errors_and_perm_below_naive(tmp_path, capsys):
    """Table 5, 90% at k=0: LTH 89.45 ± 0.10, naive 88.47 ± 0.21, perm. 88.59 ± 0.11 (paper, 3 seeds)."""
    seeds = [{"lth": 88.9, "naive": 88.6, "permuted": 88.4}, {"lth": 89.0, "naive": 88.8, "permuted": 88.5},
             {"lth": 89.1, "naive": 89.0, "permuted": 88.6}]
    for seed, accs in enumerate(seeds):
        write_run(tmp_path, "c", seed, {0: accs})
    out, rows = run_compare(tmp_path, capsys)
    done = {r["method"]: r for r in rows if r["status"] == "filled"}
    # LTH: ours 89.00 ± 0.10; |diff| 0.45 > 2·sqrt(0.10²/3 + 0.10²/3) = 0.163
    assert float(done["lth"]["difference"]) == pytest.approx(-0.45) and done["lth"]["within_2se"] == "no"
    # naive: ours 88.80 ± 0.20; |diff| 0.33 <= 2·sqrt(0.21²/3 + 0.20²/3) = 0.335
    assert float(done["naive"]["difference"]) == pytest.approx(0.33) and done["naive"]["within_2se"] == "yes"
    # permuted 88.50 < naive 88.80 in ours; the paper has 88.59 >= 88.47
    assert done["permuted"]["perm_ge_naive_ours"] == "no" and done["permuted"]["perm_ge_naive_paper"] == "yes"
    assert "| 90% | perm. | 0 | 0 | c (released) | 88.59 ± 0.11 | 88.50 ± 0.10 (3) | -0.09 | yes " \
           "| yes / **no** |" in out


def test_compare_names_settings_the_paper_lacks(tmp_path, capsys):
    demo = write_run(tmp_path, "demo", 0, {1: {"lth": 89.3, "naive": 87.7, "permuted": 89.0, "random": 85.6}},
                     convention="epochs", model_type="MLP", dataset="fashion-mnist", sparsity=0.97)
    config = yaml.safe_load((demo / "config.yaml").read_text())
    (demo / "config.yaml").write_text(yaml.safe_dump({**config, "mlp_hidden": [512, 512]}))
    bare = write_run(tmp_path, "bare", 0, {5: {"lth": 90.0}})
    (bare / "config.yaml").unlink()
    out, rows = run_compare(tmp_path, capsys)
    assert all(r["status"] == "missing" for r in rows)
    assert "No run under this save_path fills a cell of the paper's tables." in out
    assert "- demo (MLP, width 512, fashion-mnist, 97 %, epochs): a setting the paper's tables do not have" in out
    assert "- bare: no config.yaml beside results.json, so its setting is unknown" in out


def test_standard_errors_come_from_variances_not_standard_deviations(tmp_path, capsys):
    """Hand-computed: Table 5, 90 % naive at k=0 is 88.47 ± 0.21 over 3 seeds; ours 88.60, 89.00, 89.40
    (89.00 ± 0.40), 0.53 above it. From variances SE = sqrt(0.21²/3 + 0.40²/3) = 0.26083, 2 SE = 0.522 < 0.53:
    not within. With s/n in place of s²/n, 2·sqrt(0.21/3 + 0.40/3) = 0.902 would call it within.
    """
    assert compare.standard_error(0.21, 3, 0.40, 3) == pytest.approx(0.26083, abs=1e-5)
    assert compare.standard_error(None, 3, 0.40, 4) == pytest.approx(0.2)
    assert paper_mean("5", "90% naive", "k=0") == 88.47
    for seed, acc in enumerate((88.60, 89.00, 89.40)):
        write_run(tmp_path, "c", seed, {0: {"naive": acc}})
    _, rows = run_compare(tmp_path, capsys)
    [naive] = [r for r in rows if r["status"] == "filled"]
    assert float(naive["difference"]) == pytest.approx(0.53) and naive["within_2se"] == "no"


def test_a_toy_run_is_not_comparable_in_any_cell(tmp_path, capsys):
    """Two epochs on generated data, the paper config otherwise: listed at its cells, never judged."""
    accs = {"lth": 30.0, "naive": 25.0, "permuted": 28.0}
    for seed in range(2):
        write_run(tmp_path, "toy", seed, {0: accs}, overrides={"epochs": 2, "rewind_points": [0]}, data=(1024, 256))
    out, rows = run_compare(tmp_path, capsys)
    other = [r for r in rows if r["status"] == "not comparable"]
    assert len(other) == 3 and not [r for r in rows if r["status"] == "filled"]
    assert {r["not_comparable"] for r in other} == {"epochs: 2 (paper: 200)"}
    assert "| 90% | LTH | 0 | 0 | toy (released) | 89.45 ± 0.10 | 30.00 ± 0.00 (2) |  | not comparable: epochs: 2 " \
           "(paper: 200) |  |" in out
    assert "Filled cells" not in out and "Not comparable: 3 cells" in out
    # the same run on the right epochs but generated data of 1024 images: the data is named
    for seed in range(2):
        write_run(tmp_path, "fake_data", seed, {5: accs}, data=(1024, 256))
    _, rows = run_compare(tmp_path, capsys)
    assert {r["not_comparable"] for r in rows if r["config"] == "fake_data"} == {
        "data: 1024 training and 256 test examples (paper: the real cifar10, 50000 and 10000)"}


@pytest.mark.parametrize(("key", "value", "named"), [
    ("normalization", "dataset", "normalization: dataset (paper: imagenet)"),
    ("precision", "bf16", "precision: bf16 (paper: fp32)"),
    ("matching", {"method": "activation", "num_batches": 390, "augment": True, "stream": "pooled",
                  "std": "batch_mean"}, "matching.stream: pooled (paper: released)"),
    ("train_subset", 5000, "train_subset: 5000 (paper: None)"),
])
def test_each_paper_setting_is_checked(tmp_path, capsys, key, value, named):
    write_run(tmp_path, "c", 0, {5: {"lth": 90.0}}, overrides={key: value})
    _, rows = run_compare(tmp_path, capsys)
    assert [r["not_comparable"] for r in rows if r["config"] == "c"] == [named]


# ---- analysis.compare --study ensemble: the ensemble study beside Table 1 ----------------------------------------

def write_ensemble_report(run_dir, values, members=5):
    """studies/ensemble.json as the study writes it, its rows holding ``values[group][our metric]``."""
    (run_dir / "studies").mkdir()
    rows = [{"group": g, "mask": g, "members": members, **metrics} for g, metrics in values.items()]
    (run_dir / "studies" / "ensemble.json").write_text(json.dumps(
        {"study": "ensemble", "seed": 0, "key": ["group", "mask"], "rows": rows, "members": members}))


def table1(setting):
    out = {}
    for c in paper_cells():
        if c["table"] == "1" and c["setting"] == setting:
            out.setdefault(c["method"], {})[compare.ENSEMBLE_METRICS[c["column"]]] = float(c["mean"])
    return out


def test_paper_table_1_has_its_42_numbers():
    cells = [c for c in paper_cells() if c["table"] == "1"]
    assert len(cells) == 42
    assert {c["setting"] for c in cells} == {"ResNet20×{1}/CIFAR-10", "ResNet20×{4}/CIFAR-100"}
    # spot checks typed from the paper; JS/KL between 0.28 and 0.37 in every row
    assert table1("ResNet20×{1}/CIFAR-10")["permuted"] == {"mean_accuracy": 89.38, "ensemble_accuracy": 91.75,
                                                           "disagreement": 0.107, "kl": 0.273,
                                                           "js_midpoint_first": 0.091}
    for setting in ("ResNet20×{1}/CIFAR-10", "ResNet20×{4}/CIFAR-100"):
        for group, m in table1(setting).items():
            if group != "dense":
                assert 0.28 <= m["js_midpoint_first"] / m["kl"] <= 0.375


def test_compare_ensemble_study_at_the_paper_means_and_a_toy_study(tmp_path, capsys):
    values = table1("ResNet20×{4}/CIFAR-100")
    for seed in range(2):
        run = write_run(tmp_path, "configs_cifar100__config_4_90", seed, {}, width=4, dataset="cifar100")
        write_ensemble_report(run, values)
        toy = write_run(tmp_path, "toy", seed, {}, width=4, dataset="cifar100", data=(512, 128),
                        overrides={"epochs": 3, "rewind_points": [0]})
        write_ensemble_report(toy, values, members=2)
    assert compare.main([str(tmp_path), "--study", "ensemble", "--csv", str(tmp_path / "e.csv")]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "e.csv", encoding="utf-8")))
    ours = [r for r in rows if r["config"] == "configs_cifar100__config_4_90"]
    assert len(ours) == 21 and all(float(r["difference"]) == 0.0 and r["within_2se"] == "True" for r in ours)
    toy_rows = [r for r in rows if r["config"] == "toy"]
    assert len(toy_rows) == 21 and {r["not_comparable"] for r in toy_rows} == {"epochs: 3 (paper: 200)"}
    assert "| ResNet20×{4}/CIFAR-100 | naive | js | configs_cifar100__config_4_90 | 0.35 | 0.35 ± 0.00 (2) " \
           "| +0.000 | yes |" in out

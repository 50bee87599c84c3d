"""``python -m sweep --grid``: the product of values, configs and seeds, each point its own run directory,
shared artifacts made once across points."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from sweep.grid import grid_points, parse_grid, point_label, split_values
from tests.test_sweep import all_logs, numbers, run_sweep, sweep_config, trained_once
from utils.config import ConfigError


def test_values_split_on_top_level_commas_only():
    assert split_values("0.1, 0.2,3") == ["0.1", "0.2", "3"]
    assert split_values("[0,5],[0,10]") == ["[0,5]", "[0,10]"]
    assert split_values("{a: 1, b: 2},'x,y'") == ["{a: 1, b: 2}", "'x,y'"]


def test_points_are_the_cartesian_product_first_key_slowest():
    grid = parse_grid(["optimizer.sparse_lr=0.1,0.2", "rewind_points=[0],[0,1],[1]"], [])
    points = grid_points(grid)
    assert len(points) == 6 and len({tuple(p) for p in points}) == 6
    assert points[0] == ["optimizer.sparse_lr=0.1", "rewind_points=[0]"]
    assert points[3] == ["optimizer.sparse_lr=0.2", "rewind_points=[0]"]
    assert grid_points([]) == [[]]
    assert point_label("s50", points[1]) == "s50__optimizer.sparse_lr=0.1__rewind_points=_0_1_"
    long = point_label("s50", [f"model_kwargs.k{i}={'x' * 30}" for i in range(8)])
    assert len(long) <= 160 and long != point_label("s50", [f"model_kwargs.k{i}={'y' * 30}" for i in range(8)])


@pytest.mark.parametrize("items, overrides, message", [
    (["optimizer.sparse_lrr=0.1,0.2"], [], "did you mean 'optimizer.sparse_lr'"),
    (["epochs=3,three"], [], "--grid epochs=three: epochs: expected an integer"),
    (["epochs"], [], "expected KEY=V1,V2"),
    (["epochs=3,,4"], [], "an empty value"),
    (["epochs=3,3"], [], "a value is repeated"),
    (["epochs=3", "epochs=4"], [], "given twice"),
    (["epochs=3,4"], ["epochs=5"], "--grid epochs and --set epochs both given"),
])
def test_a_bad_grid_is_one_line(items, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_grid(items, overrides)
    assert "\n" not in str(err.value)


def test_grid_of_two_values_and_two_seeds_makes_four_run_directories_sharing_phase_one(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    (tmp_path / "s50.yaml").write_text(yaml.safe_dump(sweep_config(fake_cifar10, save, 0.5)))
    args = ["s50.yaml", "-seeds", "0,1", "--grid", "optimizer.sparse_lr=0.05,0.1", "-threads", "1"]
    dry = run_sweep(tmp_path, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "grid: 2 points x 1 configs x 2 seeds = 4 (config, seed) pairs" in dry.stdout
    assert "s50__optimizer.sparse_lr=0.1" in dry.stdout and not save.exists()

    proc = run_sweep(tmp_path, *args, "--executor", "local", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dirs = sorted(save.glob("s50__*/seed_*"))
    assert len(run_dirs) == 4
    lrs = Counter(yaml.safe_load((d / "config.yaml").read_text())["optimizer"]["sparse_lr"] for d in run_dirs)
    assert lrs == {0.05: 2, 0.1: 2}
    for d in run_dirs:  # each run directory's name shows its value, and its config holds it
        assert f"sparse_lr={yaml.safe_load((d / 'config.yaml').read_text())['optimizer']['sparse_lr']}-" in \
            d.parent.name
    manifests = [json.loads(p.read_text()) for p in (save / "artifacts").glob("*/manifest.json")]
    kinds = Counter(m["kind"] for m in manifests)
    # Dense A and B once per seed, IMP and pi once per seed, whatever the grid; the sparse runs once per point.
    assert kinds["dense"] == 4 and kinds["perm"] == 2 and kinds["imp"] == 2 and kinds["sparse"] == 2 * 2 * 2
    assert sorted({(m["settings"]["seed"], m["settings"]["role"]) for m in manifests if m["kind"] == "dense"}) == \
        [(0, "A"), (0, "B"), (1, "A"), (1, "B")]
    trained_once(save, all_logs(save))
    results = numbers(save)
    for seed in (0, 1):  # the same phase 1 in both points of a seed; their sparse runs differ
        a, b = (results[(f"s50__optimizer.sparse_lr={lr}", seed)] for lr in (0.05, 0.1))
        assert a["dense"] == b["dense"] and a["imp"] == b["imp"] and a["matching"] == b["matching"]
        assert a["sparse"] != b["sparse"]
    status = run_sweep(tmp_path, "status", str(save))
    assert status.returncode == 0 and len([line for line in status.stdout.splitlines() if "/seed_" in line]) == 4
    assert not list((save / "sweep" / "logs").rglob("%j"))  # no empty folder named after a submitit pattern

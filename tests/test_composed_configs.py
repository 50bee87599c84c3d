"""Composed configs (``base:``): chains, cycles, deep merges, and the paper's grids as one base + thin files.

``paper_configs_expected.json`` holds what every paper config of ``configs/`` and ``configs_cifar100/``
resolved to when each was a flat file (its values, run directory and artifact keys), frozen before they
became thin files over one base each; the test holds the thin files to it. A deliberate change of a paper
value updates that file with ``python -m tests.test_composed_configs --freeze`` (and says so in its commit).
The run directory names changed once on purpose, when they came to be derived from artifact keys
(``phases/identity.py``): ``run_dir`` holds the new name, ``legacy_run_dir`` the one from before (which
``phases/legacy_run_dirs.py`` must still give); nothing else moved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from utils.config import ConfigError, config_from_dict, read_config_file

REPO = Path(__file__).resolve().parent.parent
EXPECTED = Path(__file__).with_name("paper_configs_expected.json")
PAPER_GRIDS = ("configs/config_*_*.yaml", "configs_cifar100/config_*_*.yaml")


def paper_config_files() -> list[Path]:
    return sorted(p for pattern in PAPER_GRIDS for p in REPO.glob(pattern))


def config_facts(path: Path) -> dict:
    """What a config file means to the runner: its resolved values, run directory and every artifact key."""
    from phases import graph
    from phases.legacy_run_dirs import legacy_run_dir_name
    from phases.run_dir import run_dir_name

    cfg = config_from_dict(read_config_file(path), check_data=False)
    label = "__".join(path.relative_to(REPO).with_suffix("").parts)
    return {"config": cfg.to_dict(), "run_dir": run_dir_name(label, cfg),
            "legacy_run_dir": legacy_run_dir_name(label, cfg),
            "artifacts": {name: art.name for name, art in graph.run_artifacts(cfg, 0).items()}}


def freeze() -> None:
    facts = {str(p.relative_to(REPO)): config_facts(p) for p in paper_config_files()}
    EXPECTED.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED} ({len(facts)} configs)")


if __name__ == "__main__" and sys.argv[1:] == ["--freeze"]:
    freeze()


# ------------------------------------------------------------------ the paper's grids through their bases


def test_the_paper_grids_are_thin_files_over_one_base_each():
    files = paper_config_files()
    assert len(files) == 32
    for path in files:
        text = yaml.safe_load(path.read_text())
        assert set(text) == {"base", "width_multiplier", "pruning"} and set(text["pruning"]) == {"sparsity"}


@pytest.mark.parametrize("path", paper_config_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_each_paper_config_loads_to_the_values_and_keys_it_had_as_a_flat_file(path):
    expected = json.loads(EXPECTED.read_text())[str(path.relative_to(REPO))]
    got = config_facts(path)
    assert got["config"] == expected["config"]
    assert got["run_dir"] == expected["run_dir"]
    assert got["legacy_run_dir"] == expected["legacy_run_dir"]
    assert got["artifacts"] == expected["artifacts"]


def test_the_cifar100_base_is_the_cifar10_recipe_on_another_dataset():
    c10 = read_config_file(REPO / "configs" / "config_4_95.yaml")
    c100 = read_config_file(REPO / "configs_cifar100" / "config_4_95.yaml")
    assert c100.pop("dataset") == "cifar100" and c10.pop("dataset") == "cifar10"
    # the released loaders normalised CIFAR-10 with ImageNet's statistics, CIFAR-100 with its own
    assert c100.pop("normalization") == "dataset" and c10.pop("normalization") == "imagenet"
    assert c10 == c100


# ------------------------------------------------------------------ composition rules


def write(folder: Path, name: str, raw: dict) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_chain_merges_sections_key_by_key_and_replaces_lists(tmp_path):
    write(tmp_path / "recipes", "root.yaml", {"epochs": 9, "rewind_points": [0, 1, 2],
                                              "optimizer": {"lr": 0.5, "sparse_lr": 0.25}})
    write(tmp_path / "recipes", "mid.yaml", {"base": "root.yaml", "optimizer": {"lr": 0.125},
                                             "pruning": {"sparsity": 0.75}})
    leaf = write(tmp_path / "cells", "leaf.yaml", {"base": "../recipes/mid.yaml", "rewind_points": [0],
                                                  "pruning": {"prune_perc": 0.5}})
    raw = read_config_file(leaf)
    assert raw == {"epochs": 9, "rewind_points": [0], "optimizer": {"lr": 0.125, "sparse_lr": 0.25},
                   "pruning": {"sparsity": 0.75, "prune_perc": 0.5}}


def test_a_base_relative_path_is_relative_to_the_file_not_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "a", "base.yaml", {"epochs": 3})
    write(tmp_path / "a", "leaf.yaml", {"base": "base.yaml"})
    monkeypatch.chdir(tmp_path)
    assert read_config_file(Path("a") / "leaf.yaml") == {"epochs": 3}


def test_mask_from_in_a_base_is_relative_to_the_base_file(tmp_path):
    source = write(tmp_path / "recipes", "source.yaml", {"epochs": 3})
    write(tmp_path / "recipes", "base.yaml", {"pruning": {"mask_from": {"config": "source.yaml"}}})
    leaf = write(tmp_path / "cells", "leaf.yaml", {"base": "../recipes/base.yaml"})
    assert read_config_file(leaf)["pruning"]["mask_from"]["config"] == str(source.resolve())


def test_a_null_in_the_file_replaces_the_base_section(tmp_path):
    write(tmp_path, "base.yaml", {"studies": {"ensemble": {"members": 3}}})
    leaf = write(tmp_path, "leaf.yaml", {"base": "base.yaml", "studies": {"ensemble": None}})
    assert read_config_file(leaf) == {"studies": {"ensemble": None}}


@pytest.mark.parametrize("links, message", [
    ({"a.yaml": "a.yaml"}, "base configs form a cycle: "),
    ({"a.yaml": "b.yaml", "b.yaml": "c.yaml", "c.yaml": "b.yaml"}, "base configs form a cycle: "),
    ({"a.yaml": "nowhere.yaml"}, "base: 'nowhere.yaml' not found"),
    ({"a.yaml": 3}, "base: expected the path of a config file"),
])
def test_a_base_that_cannot_be_followed_is_one_line(tmp_path, links, message):
    for name, base in links.items():
        write(tmp_path, name, {"base": base, "epochs": 3})
    with pytest.raises(ConfigError, match=message) as err:
        read_config_file(tmp_path / "a.yaml")
    assert "\n" not in str(err.value)
    if "cycle" in message:
        assert str(err.value).count(" -> ") >= 1


def test_a_bad_key_in_a_base_is_reported_like_one_in_a_flat_file(tmp_path):
    write(tmp_path, "base.yaml", {"epoch": 3})
    leaf = write(tmp_path, "leaf.yaml", {"base": "base.yaml"})
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        config_from_dict(read_config_file(leaf), check_data=False)


def test_print_config_shows_the_resolved_config(capsys):
    import experiment

    assert experiment.main(["-config", str(REPO / "configs" / "config_8_95.yaml"), "--print-config",
                            "--set", "optimizer.lr=0.5"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["width_multiplier"] == 8 and shown["pruning"]["sparsity"] == 0.95
    assert shown["pruning"]["prune_lr"] == 0.01 and shown["optimizer"]["lr"] == 0.5 and "base" not in shown


def test_sweep_print_config_shows_every_config_resolved(capsys):
    from sweep import cli

    assert cli.main([str(REPO / "configs_cifar100" / "config_1_97.yaml"), str(REPO / "configs" / "config_4_80.yaml"),
                     "--print-config", "-device", "cpu"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["dataset"], d["width_multiplier"], d["pruning"]["sparsity"], d["device"]) for d in docs] == \
        [("cifar100", 1, 0.97, "cpu"), ("cifar10", 4, 0.8, "cpu")]

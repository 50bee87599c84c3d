"""A save_path whose run directory has the name from before (``phases/legacy_run_dirs.py``) stays valid.

Phase 1 runs; its run directory is then given the old name and the results.json the old code wrote (the old
config hash, no ``legacy_config_hash``), as a save_path of before the change holds. ``sweep status`` and
``analysis.table`` read it as it is (a study report too); phase 2 renames it to the new name (one log line),
reuses every phase-1 artifact (no dense model trained again) and writes the new hash into its results.json.
"""

from __future__ import annotations

import json
import shutil

from analysis.runs import find_runs
from phases.identity import config_hash
from phases.legacy_run_dirs import legacy_config_hash, legacy_run_dir_name
from phases.run_dir import adopt_run_dir, existing_run_dir, run_dir_name
from sweep.status import status
from tests.test_pipeline import artifacts, run, tiny_config
from utils.config import config_from_dict


def test_old_run_directory_is_renamed_and_phase2_reuses_phase1(tmp_path, fake_cifar10, capsys):
    save = tmp_path / "runs"
    raw = tiny_config(fake_cifar10, save)
    assert run(tmp_path, raw, "-pretrain", "True") == 0
    cfg = config_from_dict(raw, check_data=False)
    new_name, old_name = run_dir_name("cfg", cfg), legacy_run_dir_name("cfg", cfg)
    assert new_name != old_name
    new, old = save / new_name / "seed_0", save / old_name / "seed_0"
    old.parent.mkdir()
    shutil.move(new, old)
    (save / new_name).rmdir()
    res = json.loads((old / "results.json").read_text())
    assert res.pop("legacy_config_hash") == legacy_config_hash(cfg) and res["config_hash"] == config_hash(cfg)
    (old / "results.json").write_text(json.dumps({**res, "config_hash": legacy_config_hash(cfg)}))
    dense = {p.name: (p / "manifest.json").read_text() for p in artifacts(save, "dense")}
    capsys.readouterr()

    # Read where it is, before anything renames it.
    assert list(find_runs(save)) == ["cfg"]
    report, _ = status(save)
    assert f"{new_name}/seed_0" in report and "1 (config, seed) pairs" in report

    assert run(tmp_path, raw, "-pretrain", "False", "--rewind", "1") == 0
    out = capsys.readouterr().out
    assert sum("[run dir] renamed" in line for line in out.splitlines()) == 1
    assert f"{old} to {new}" in out
    assert not old.parent.exists() and (new / "config.yaml").is_file()
    assert {p.name: (p / "manifest.json").read_text() for p in artifacts(save, "dense")} == dense  # none retrained
    made = [line for line in out.splitlines() if " making " in line]
    assert made and not [line for line in made if "/dense-" in line or "/imp" in line]
    res = json.loads((new / "results.json").read_text())
    assert res["config_hash"] == config_hash(cfg) and res["legacy_config_hash"] == legacy_config_hash(cfg)
    assert set(res["sparse"]["1"]) == {"lth", "naive", "permuted", "random"}
    assert list(find_runs(save)) == ["cfg"]


def test_rename_leaves_a_new_run_directory_alone(tmp_path):
    """Both names exist (another seed already renamed, or a new run): the new one is used, the old one kept."""
    cfg = config_from_dict(tiny_config(tmp_path, tmp_path), check_data=False)
    for name in (run_dir_name("cfg", cfg), legacy_run_dir_name("cfg", cfg)):
        (tmp_path / name / "seed_0").mkdir(parents=True)
    (tmp_path / legacy_run_dir_name("cfg", cfg) / "seed_1").mkdir()
    assert adopt_run_dir(tmp_path, "cfg", cfg, 0) == tmp_path / run_dir_name("cfg", cfg) / "seed_0"
    assert (tmp_path / legacy_run_dir_name("cfg", cfg) / "seed_0").is_dir()
    # Seed 1 exists only under the old name: moved into the existing new folder; the old folder keeps seed 0.
    assert adopt_run_dir(tmp_path, "cfg", cfg, 1) == tmp_path / run_dir_name("cfg", cfg) / "seed_1"
    assert (tmp_path / run_dir_name("cfg", cfg) / "seed_1").is_dir()
    assert not (tmp_path / legacy_run_dir_name("cfg", cfg) / "seed_1").exists()


def test_sweep_status_reads_a_study_report_under_the_old_name(tmp_path):
    """Before anything renames it, a run directory's study report counts as done where it is."""
    from utils.config import dump_config

    raw = {**tiny_config(tmp_path, tmp_path), "studies": {"imp_barriers": {}}}
    cfg = config_from_dict(raw, check_data=False)
    old = tmp_path / legacy_run_dir_name("cfg", cfg) / "seed_0"
    (old / "studies").mkdir(parents=True)
    (old / "config.yaml").write_text(dump_config(cfg))
    (old / "studies" / "imp_barriers.json").write_text("{}")
    assert existing_run_dir(tmp_path, "cfg", cfg, 0) == old
    report, _ = status(tmp_path, details=True)
    (line,) = [line for line in report.splitlines() if "imp_barriers: report" in line]
    assert " done " in line and str(old) in line
    (tmp_path / run_dir_name("cfg", cfg) / "seed_0").mkdir(parents=True)
    assert existing_run_dir(tmp_path, "cfg", cfg, 0) == tmp_path / run_dir_name("cfg", cfg) / "seed_0"

"""Config checks get their model and dataset facts from ``models.registry`` and ``data.info``, which register
them at import (``utils/facts.py``: ``utils`` may not import them). A config checked before that is a loud
error, and every command-line entry point registers them: each is run here in a fresh interpreter."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAD_MODEL = "model_type: ResNet21\ndevice: cpu\n"
UNKNOWN = "model_type: unknown model 'ResNet21'"


def _python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_a_config_checked_before_the_facts_are_registered_is_a_loud_error() -> None:
    code = ("from utils.config import config_from_dict\n"
            "try:\n    config_from_dict({'device': 'cpu'}, check_data=False)\n"
            "except Exception as err:\n    print(type(err).__name__, err)\n")
    out = _python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("FactsMissing a config was checked before the models facts were registered: "
                                 "import models.registry"), out.stdout
    # Importing the registry is all it takes (it registers data.info's facts too).
    out = _python("-c", "import models.registry\nfrom utils.config import config_from_dict\n"
                  "print(config_from_dict({'device': 'cpu'}, check_data=False).pruning.tolerance_for('VGG11'))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5e-07"


def test_importing_utils_config_loads_no_model_or_data_code() -> None:
    out = _python("-c", "import sys, utils.config, utils.overrides, utils.config_reference\n"
                  "print(sorted(m for m in sys.modules if m.split('.')[0] in ('models', 'data', 'torch')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_MODEL)
    return path


def test_experiment_checks_a_config_against_the_registry(bad_config: Path) -> None:
    out = _python("experiment.py", "-config", str(bad_config), "-seed", "0", "-pretrain", "True")
    assert out.returncode == 2 and UNKNOWN in out.stderr and "FactsMissing" not in out.stderr, out.stderr


def test_sweep_checks_a_config_against_the_registry(bad_config: Path) -> None:
    out = _python("-m", "sweep", str(bad_config), "--print-config")
    assert out.returncode == 2 and UNKNOWN in out.stderr and "FactsMissing" not in out.stderr, out.stderr
    out = _python("-m", "sweep", str(bad_config), "--print-config", "--set", "model_type=VGG11", "--set",
                  "download=true")
    assert out.returncode == 0, out.stderr
    assert "model_type: VGG11" in out.stdout


@pytest.mark.parametrize("module", ["analysis.compare", "analysis.plot", "analysis.table", "sweep.job"])
def test_the_other_entry_points_register_the_facts_on_import(module: str) -> None:
    # Each reads configs (a run directory's config.yaml, a paper config) once its command line is parsed.
    out = _python("-c", f"import {module}\nfrom utils.config import config_from_dict\n"
                  "config_from_dict({'model_type': 'VGG11', 'dataset': 'svhn'}, check_data=False)")
    assert out.returncode == 0, out.stderr


def test_config_reference_and_derive_need_no_facts() -> None:
    # The reference documents the schema alone; matching.derive takes a plug-in path (utils/plugins.py).
    assert _python("-m", "utils.config_reference", "--check").returncode == 0
    out = _python("-m", "matching.derive", "examples.my_cnn:MyCNN", "--input-shape", "1,28,28")
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------ the IMP tolerance: a fact of each registry row

def _keys(raw: dict) -> dict[str, str]:
    from phases import graph
    from utils.config import config_from_dict

    return {name: art.key for name, art in graph.phase1_artifacts(config_from_dict(raw, check_data=False), 0).items()}


def test_each_model_s_tolerance_comes_from_its_registry_row() -> None:
    from models import registry
    from phases.keys import imp_target_settings
    from utils.config import config_from_dict

    assert {n: (e.tolerance_field, e.tolerance) for n, e in registry.MODELS.items()} == {
        "ResNet": ("tolerance_resnet20", 0.005), "VGG11": ("tolerance_vgg11", 5e-7),
        "ResNet50": ("tolerance_resnet20", 0.005), "MLP": ("tolerance_resnet20", 0.005)}
    assert registry.tolerance("my_pkg.nets:Net") == ("tolerance_resnet20", 0.005)  # plug-ins: the paper code's
    for model_type, expected in (("VGG11", 5e-7), ("ResNet20", 0.005), ("MLP", 0.005)):
        cfg = config_from_dict({"model_type": model_type}, check_data=False)
        assert cfg.pruning.tolerance_resnet20 is None and cfg.pruning.tolerance_vgg11 is None  # no copy in config
        assert imp_target_settings(cfg).tolerance == expected  # what the IMP target key hashes
    # The row is the one place: a VGG11 row with ResNet20's tolerance would change what VGG11 stops at.
    vgg = registry.MODELS["VGG11"]
    try:
        registry._BY_NAME["VGG11"] = dataclasses.replace(vgg, tolerance=0.005)
        assert config_from_dict({"model_type": "VGG11"}, check_data=False).pruning.tolerance_for("VGG11") == 0.005
    finally:
        registry._BY_NAME["VGG11"] = vgg


def test_the_original_tolerance_keys_keep_loading_with_their_meaning() -> None:
    base = {"model_type": "VGG11", "device": "cpu", "pruning": {"sparsity": 0.5}}
    given = {**base, "pruning": {"sparsity": 0.5, "tolerance_vgg11": 5e-7, "tolerance_resnet20": 0.005}}
    assert _keys(given) == _keys(base)  # the defaults written out are the defaults: same artifacts
    vgg = {**base, "pruning": {"sparsity": 0.5, "tolerance_vgg11": 1e-3}}
    resnet = {**base, "pruning": {"sparsity": 0.5, "tolerance_resnet20": 1e-3}}
    assert _keys(vgg)["imp"] != _keys(base)["imp"]  # overrides VGG11's tolerance...
    assert _keys(resnet) == _keys(base)  # ...which the ResNet20 key does not
    assert _keys({**resnet, "model_type": "MLP"})["imp"] != _keys({**base, "model_type": "MLP"})["imp"]
    # pruning.tolerance overrides whichever applies, and keys as that same value given the original way.
    assert _keys({**base, "pruning": {"sparsity": 0.5, "tolerance": 1e-3}}) == _keys(vgg)


@pytest.mark.parametrize(("pruning", "message"), [
    ({"tolerance_vgg11": 0.7}, "pruning.tolerance_vgg11: must be in [0, pruning.sparsity=0.5) "
                               "(the IMP tolerance for VGG11), got 0.7"),
    ({"tolerance_resnet20": -1.0}, "pruning.tolerance_resnet20: must be >= 0, got -1.0"),  # unused, still wrong
    ({"tolerance": 0.5}, "pruning.tolerance: must be in [0, pruning.sparsity=0.5) (the IMP tolerance for VGG11), "
                         "got 0.5"),
    ({"tolerance_vgg11": "x"}, "pruning.tolerance_vgg11: expected a number (or null), got 'x'"),
])
def test_bad_tolerances_are_named(pruning: dict, message: str) -> None:
    from utils.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError) as err:
        config_from_dict({"model_type": "VGG11", "pruning": {"sparsity": 0.5, **pruning}}, check_data=False)
    assert str(err.value) == message


# ------------------------------------------------------------------ architecture fields: declared by the rows

def test_architecture_fields_keep_loading_with_the_rows_defaults() -> None:
    from utils.config import Config, config_from_dict
    from utils.overrides import apply_overrides

    mlp = {"model_type": "MLP", "device": "cpu"}
    # Written out, left out, or null: one config, one set of artifacts (the row's default is the value).
    for same in ({**mlp, "mlp_hidden": [512, 512]}, {**mlp, "mlp_hidden": None}):
        assert config_from_dict(same, check_data=False) == config_from_dict(mlp, check_data=False)
        assert _keys(same) == _keys(mlp)
    vgg = {"model_type": "VGG11", "device": "cpu"}
    assert _keys({**vgg, "batchnorm": False, "init_weights": False}) == _keys(vgg)
    assert _keys({**vgg, "batchnorm": True})["dense_A"] != _keys(vgg)["dense_A"]
    assert Config().mlp_hidden is None and config_from_dict(vgg, check_data=False).batchnorm is False
    # --set still reaches the top-level key, and changes the dense key of the model that reads it only.
    narrow = apply_overrides(dict(mlp), ["mlp_hidden=[16, 8]"])
    assert config_from_dict(narrow, check_data=False).mlp_hidden == [16, 8]
    assert _keys(narrow)["dense_A"] != _keys(mlp)["dense_A"]
    assert _keys(apply_overrides(dict(vgg), ["mlp_hidden=[16]"])) == _keys(vgg)


@pytest.mark.parametrize(("raw", "message"), [
    ({"mlp_hidden": [16, 0]}, "mlp_hidden: must be a non-empty list of positive widths, got [16, 0]"),
    ({"mlp_hidden": [], "model_type": "ResNet"}, "mlp_hidden: must be a non-empty list of positive widths, got []"),
    ({"batchnorm": "yes"}, "batchnorm: expected true or false (or null), got 'yes'"),
])
def test_bad_architecture_fields_are_named(raw: dict, message: str) -> None:
    from utils.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError) as err:
        config_from_dict({"model_type": "MLP", **raw}, check_data=False)
    assert str(err.value) == message

"""Every artifact key, and every run directory name, of today's configs stays what it was.

A user's save_path of yesterday must stay valid: a refactor of how the graph is
built, or a new setting at its default, must not move one artifact. The
expected names in ``tests/artifact_keys.json`` were computed once, before the
stage table existed; they are frozen, never regenerated (a key changed on
purpose is a breaking change, to be named in the changelog and updated here by
hand). The paper configs are frozen copies under ``tests/frozen_configs/``:
the live ``configs/`` files may change their values on purpose.

Run directory names changed once, on purpose: they are derived from the main
artifacts' keys (``phases/identity.py``) instead of a hash of the config minus
a hand-kept list of keys. The new names (``run_dir``) were written into
``artifact_keys.json`` by hand in that change; ``legacy_run_dir`` keeps each
case's name from before, which ``phases/legacy_run_dirs.py`` must still give
(it finds, and renames, run directories that users made before the change).
Every artifact key stayed as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phases import graph
from phases.demo import DEMO_CONFIG
from phases.legacy_run_dirs import legacy_run_dir_name
from phases.run_dir import run_dir_name
from phases.studies import get_study
from utils.config import config_from_dict, read_config_file
from utils.overrides import apply_overrides

HERE = Path(__file__).resolve().parent
FROZEN = HERE / "frozen_configs"
EXPECTED = HERE / "artifact_keys.json"


def science_base() -> dict[str, Any]:
    """A small MLP config on CIFAR-10 whose IMP mask comes from tests/mask_source.yaml (SVHN)."""
    return {"model_type": "MLP", "mlp_hidden": [32, 32], "dataset": "cifar10", "dataset_root": "/data",
            "train_subset": 512, "test_subset": 256, "epochs": 3, "model_b_epochs": 3, "sparse_epochs": 3,
            "batch_size": 64, "device": "cpu", "rewind_points": [0, 1], "save_path": "/runs",
            "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
            "pruning": {"mask_from": {"config": str(HERE / "mask_source.yaml")}},
            "matching": {"method": "activation", "num_batches": 4, "interpolation_batches": 2}}


# case -> (config mapping, --set overrides, studies)
CASES: dict[str, tuple[Any, list[str], list[str]]] = {
    "demo": (DEMO_CONFIG, [], ["ensemble", "imp_barriers"]),
    "demo_rescale_repair_weight": (DEMO_CONFIG, ["sparse.rescale_init=true", "matching.repair=true",
                                                 "matching.method=weight", "rewind_points=[0,1,3]",
                                                 "rewind_convention=released"], []),
    "demo_early_matching": (DEMO_CONFIG, ["studies.early_matching.epochs=[1,3]"], ["early_matching"]),
    "resnet20_cifar10": ("resnet20_cifar10.yaml", [], []),
    "resnet20_cifar100": ("resnet20_cifar100.yaml", [], ["imp_barriers"]),
    "vgg11_cifar10": ("vgg11_cifar10.yaml", [], []),
    "resnet50_imagenet": ("resnet50_imagenet.yaml", [], []),
    "mask_transfer": (science_base(), [], ["mask_transfer"]),
}


def artifact_names(case: str, seed: int = 0) -> dict[str, Any]:
    """The run directory name, every main artifact (and the IMP round chain) by name, and each study's artifacts."""
    source, overrides, studies = CASES[case]
    raw = read_config_file(str(FROZEN / source)) if isinstance(source, str) else source
    cfg = config_from_dict(apply_overrides(raw, overrides), check_data=False)
    arts = graph.run_artifacts(cfg, seed)
    out: dict[str, Any] = {"run_dir": run_dir_name("label", cfg), "legacy_run_dir": legacy_run_dir_name("label", cfg),
                           **{n: a.name for n, a in arts.items()},
                           "impchain": arts["imp"].parents["chain"].name}
    for study in studies:
        out[f"study {study}"] = sorted(closure(need.artifact for need in get_study(study).needs(cfg, seed)))
    return out


def closure(arts) -> set[str]:
    """The names of ``arts`` and all their ancestors."""
    out: set[str] = set()
    todo = list(arts)
    while todo:
        art = todo.pop()
        if art.name not in out:
            out.add(art.name)
            todo += art.parents.values()
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_artifact_keys_and_run_directory_names_are_unchanged(case):
    expected = json.loads(EXPECTED.read_text())[case]
    got = artifact_names(case)
    assert sorted(got) == sorted(expected)
    changed = {name: (expected[name], got[name]) for name in expected if expected[name] != got[name]}
    assert not changed, f"artifact keys moved (users' save_paths would be orphaned): {changed}"

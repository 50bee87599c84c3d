"""The run directory's identity (``phases/identity.py``) is read off the main artifacts' keys, nothing else.

Property: perturb any config field, at any depth (the ``Config`` dataclass's
fields, enumerated, none named here), from a base config. Compare the main
experiment's artifact keys (the stage table's targets and their ancestry) at a
fixed run seed before and after. When the two key sets are equal, or one holds
the other (the field only adds or drops rows: rewind points, sparse runs), the
identity stays; when some key changed, it changes.

The bases ask for every sparse run type: the identity reads the settings of all
of them (a run directory may gain any run later), so at a base that lacks a run
type, that type's own settings (``sparse.rescale_bn_batches`` without
``rescale_init``) rename the directory though no key of the base moves; that
direction of "iff" is deliberately not asked for.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

import pytest

from phases import graph, stages
from phases.demo import DEMO_CONFIG
from phases.identity import config_hash
from tests.test_artifact_keys import science_base
from utils import config as config_module
from utils.config import Config, _section_type, config_from_dict
from utils.errors import UserError

SEED = 3  # a run seed other than the identity's own reference seed
EVERY_RUN = {"runs": list(config_module.SPARSE_RUNS), "random_control": True, "rescale_init": True}
BASES = {
    "demo": {**DEMO_CONFIG, "sparse": EVERY_RUN},
    "mask_transfer": {**science_base(), "sparse": EVERY_RUN},
    "weight_step": {**DEMO_CONFIG, "sparse": EVERY_RUN, "matching": {"method": "weight"},
                    "optimizer": {**DEMO_CONFIG["optimizer"], "schedule": "step", "milestones": [2]},
                    "pruning": {**DEMO_CONFIG["pruning"], "rewind_epoch": 1}},
}
# Other values a string field may take: the config module's own choices, and a few model and dataset names.
STRINGS = sorted({v for value in vars(config_module).values() if isinstance(value, tuple | dict)
                  for v in value if isinstance(v, str)} | {"ResNet", "VGG", "MLP", "cifar100", "svhn", "cpu", "cuda"})


def fields(cls: type = Config, where: str = "") -> list[str]:
    """Every dotted field of the config schema; a section's own fields, and the section itself when optional."""
    out = []
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        section = _section_type(typing.get_type_hints(cls)[f.name])
        if section is None:
            out.append(key)
        else:
            out += [key, *fields(section, key)]
    return out


def get(raw: dict, key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def put(raw: dict, key: str, value: Any) -> dict:
    out = copy.deepcopy(raw)
    node = out
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return out


def candidates(value: Any) -> list[Any]:
    """Values to try instead of ``value``, by its type; the first the config accepts is used."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value * 1.5, value / 2]
    if isinstance(value, str):
        return [s for s in STRINGS if s != value] + [value + "x"]
    if isinstance(value, list):  # one more entry: for rows, the key set grows
        return [value + [c] for c in (candidates(value[-1]) if value else [1, "lth", "wandb", 0.5, "fc"])]
    if isinstance(value, dict):
        return [{**value, "extra": 1}] if value else [{}, {"config": science_base()["pruning"]["mask_from"]["config"]}]
    return [1, 2, 0.5, True, "x", [1], {}, {"config": science_base()["pruning"]["mask_from"]["config"]}]


def main_keys(cfg: Config) -> set[str]:
    return set(stages.closure(stages.main_artifacts(cfg, SEED)))


def perturbed(base: dict, key: str, current: Any) -> tuple[Config, set[str]] | None:
    for value in candidates(current):
        try:
            cfg = config_from_dict(put(base, key, value), check_data=False)
            return cfg, main_keys(cfg)
        except (UserError, ValueError, TypeError, KeyError):
            continue  # not a valid config, or one whose graph cannot be built (a mask of other shapes)
    return None


@pytest.mark.parametrize("base", sorted(BASES))
def test_identity_changes_iff_a_main_artifact_key_changes(base):
    raw = BASES[base]
    cfg0 = config_from_dict(raw, check_data=False)
    keys0, ident0 = main_keys(cfg0), config_hash(cfg0)
    resolved = cfg0.to_dict()
    seen = {"same": [], "rows": [], "changed": []}
    for key in fields():
        found = perturbed(raw, key, get(resolved, key))
        if found is None:
            continue
        cfg, keys = found
        kind = "same" if keys == keys0 else "rows" if keys < keys0 or keys > keys0 else "changed"
        seen[kind].append(key)
        if kind == "changed":
            assert config_hash(cfg) != ident0, f"{key} changes a main artifact key but not the run directory"
        else:
            assert config_hash(cfg) == ident0, f"{key} changes no main artifact key ({kind}) but renames the run " \
                                               "directory"
    # The walk reached every kind of field: some move keys, some only rows, some nothing.
    assert len(seen["changed"]) >= 15 and seen["rows"] and len(seen["same"]) >= 5, seen


def test_identity_ignores_the_run_seed():
    cfg = config_from_dict(DEMO_CONFIG, check_data=False)
    other = config_from_dict({**DEMO_CONFIG, "seed": 7}, check_data=False)
    assert config_hash(cfg) == config_hash(other)


def lth(raw: dict, seed: int):
    cfg = config_from_dict(raw, check_data=False)
    return graph.sparse(cfg, seed, 1, "lth")


def test_fixed_mask_source_seed_gives_each_run_seed_its_own_lth():
    """Under a fixed ``pruning.mask_from.seed``, lth trains the source's A under the source's mask whatever the
    run seed, but each run seed's data order: two run seeds are two artifacts, and the maker reads the seed from
    the key."""
    raw = science_base()
    fixed = put(raw, "pruning.mask_from.seed", 5)
    a, b = lth(fixed, 0), lth(fixed, 1)
    assert a.parents["weights"].name == b.parents["weights"].name  # the same source A...
    assert a.name != b.name  # ...but two runs
    assert (a.settings["seed"], b.settings["seed"]) == (0, 1)
    assert "seed" not in lth(fixed, 5).settings  # the source's own seed: nothing to add
    # Without a fixed source seed, the keys are what they were (tests/artifact_keys.json pins them too).
    assert "seed" not in lth(raw, 0).settings and lth(raw, 0).name != lth(raw, 1).name


def test_sparse_maker_reads_the_run_seed_from_the_key():
    from phases.sparse_step import run_seed

    raw = science_base()
    fixed = put(raw, "pruning.mask_from.seed", 5)
    assert [run_seed(lth(fixed, s)) for s in (0, 1, 5)] == [0, 1, 5]
    assert [run_seed(lth(raw, s)) for s in (0, 4)] == [0, 4]
    cfg = config_from_dict(DEMO_CONFIG, check_data=False)
    # An ensemble member: B of seed s + 2 under the mask of seed s, data order of seed s.
    member = graph.sparse(cfg, 4, 1, "naive", b_seed=6, data_order=2)
    assert member.parents["weights"].settings["seed"] == 6 and "seed" not in member.settings
    assert run_seed(member) == 4


def test_permutation_reads_the_run_seed_from_its_key():
    """Augmented matching batches come from the run seed: under a fixed ``pruning.mask_from.seed`` the
    permutation's key holds it (A no longer tells it), and its maker reads it from the key, not the context."""
    from phases.match_step import match_seed

    augmented = put(science_base(), "matching.augment", True)
    fixed = put(augmented, "pruning.mask_from.seed", 5)
    perm = {s: graph.permutation(config_from_dict(fixed, check_data=False), s) for s in (0, 1, 5)}
    assert [p.settings.get("run_seed") for p in perm.values()] == [0, 1, None]  # 5: the source's own seed
    assert [match_seed(p) for p in perm.values()] == [0, 1, 5]
    # Without a fixed source seed, or without augmented batches, the key is what it was: A tells the seed.
    for raw in (augmented, put(science_base(), "pruning.mask_from.seed", 5)):
        assert "run_seed" not in graph.permutation(config_from_dict(raw, check_data=False), 1).settings
    cfg = config_from_dict(put(DEMO_CONFIG, "matching.augment", True), check_data=False)
    member = graph.permutation(cfg, 4, b_seed=6)  # an ensemble member: A of seed 4 to B of seed 6, run seed 4
    assert "run_seed" not in member.settings and match_seed(member) == 4


@pytest.mark.parametrize("base", sorted(BASES))
def test_identity_reads_every_main_stage(base):
    """The identity's artifacts (from the graph, which the run context can import) are the stage table's main
    targets, ancestry included: a stage added to the main experiment must enter ``graph.run_artifacts`` too."""
    from phases.identity import REFERENCE_REWIND, REFERENCE_SEED, identity_artifacts

    cfg = config_from_dict(BASES[base], check_data=False)
    table = stages.closure(stages.main_artifacts(graph.every_run(cfg), REFERENCE_SEED, [REFERENCE_REWIND]))
    assert set(stages.closure(identity_artifacts(cfg))) == set(table)

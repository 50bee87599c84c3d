"""The run-directory names of before: used only to find (and rename) run directories named that way.

Until run directories were named by their artifacts' keys (``phases/identity.py``),
``<label>-<hash>`` hashed the config itself, minus a hand-kept list of keys that
do not count. That computation is kept here, frozen, so a save_path written then
stays valid: ``phases/run_dir.py`` looks for a run directory under this name
when the new one does not exist, and renames it. Nothing else may use it;
``tests/test_artifact_keys.py`` pins that it still gives the old names.
"""

from __future__ import annotations

from typing import Any

from models.registry import model_settings
from phases.mask_source import source_config
from utils.config import Config, SparseConfig
from utils.hashing import stable_hash

# Frozen: the keys the old name left out. Never extend it; new config keys simply did not exist then.
NOT_IDENTITY = ("dataset_root", "save_path", "device", "num_workers", "compile", "project", "entity", "tracking",
                "download", "seed", "threads", "eval_every", "rewind_points", "sparse", "studies")


def legacy_science_config(cfg: Config) -> dict[str, Any]:
    """The config as the old name hashed it: without NOT_IDENTITY, with its canonicalisations."""
    d = cfg.to_dict()
    for k in NOT_IDENTITY:
        d.pop(k, None)
    if cfg.sparse.rescale_bn_batches != SparseConfig().rescale_bn_batches:
        d["rescale_bn_batches"] = cfg.sparse.rescale_bn_batches
    d["model"] = model_settings(cfg)
    for k in ("model_type", "width_multiplier", "mlp_hidden", "batchnorm", "init_weights", "model_kwargs"):
        d.pop(k, None)
    if d.get("prune_exclude") is None:
        d.pop("prune_exclude", None)
    if d.get("normalization") == "dataset":
        d.pop("normalization")
    for k, before in (("stream", "pooled"), ("std", "pooled")):
        if d["matching"].get(k) == before:
            d["matching"].pop(k)
    d["pruning"] = {**d["pruning"], "tolerance": cfg.pruning.tolerance_for(cfg.model_type)}
    for k in ("tolerance_resnet20", "tolerance_vgg11"):
        d["pruning"].pop(k, None)
    if d["pruning"].pop("mask_from", None) is not None:
        src = source_config(cfg)
        d["pruning"] = {"mask_from": {"config": legacy_config_hash(src), "seed": cfg.pruning.mask_from.seed}}
    d["epochs"], d["model_b_epochs"], d["sparse_epochs"] = cfg.epochs, cfg.b_epochs, cfg.total_sparse_epochs
    return d


def legacy_config_hash(cfg: Config) -> str:
    """The old ``config_hash``: what results.json files written before the change record."""
    return stable_hash(legacy_science_config(cfg), 10)


def legacy_run_dir_name(label: str, cfg: Config) -> str:
    return f"{label}-{legacy_config_hash(cfg)}"

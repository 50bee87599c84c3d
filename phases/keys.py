"""Artifact keys: the exact part of the config each artifact depends on.

Paths, device, worker counts and logging names are deliberately absent: they
change where or how fast a result is made, not what it is.
"""

from __future__ import annotations

from typing import Any

from utils.config import Config
from utils.hashing import stable_hash


def model_key(cfg: Config) -> dict[str, Any]:
    model_type = "ResNet" if cfg.model_type == "ResNet20" else cfg.model_type
    key: dict[str, Any] = {"model_type": model_type, "width_multiplier": cfg.width_multiplier}
    if model_type == "MLP":
        key["mlp_hidden"] = list(cfg.mlp_hidden)
    if model_type == "VGG11":
        key.update(batchnorm=cfg.batchnorm, init_weights=cfg.init_weights)
    return key


def data_key(cfg: Config) -> dict[str, Any]:
    return {"dataset": cfg.dataset, "train_subset": cfg.train_subset, "test_subset": cfg.test_subset,
            "batch_size": cfg.batch_size}


def dense_key(cfg: Config, seed: int, role: str) -> dict[str, Any]:
    o = cfg.optimizer
    return {
        "model": model_key(cfg), "data": data_key(cfg),
        "optimizer": {"type": o.type.lower(), "lr": o.lr, "momentum": o.momentum,
                      "weight_decay": o.weight_decay, "nesterov": o.nesterov},
        "epochs": cfg.epochs if role == "A" else cfg.b_epochs, "seed": seed, "role": role,
    }


def imp_key(cfg: Config, seed: int) -> dict[str, Any]:
    p = cfg.pruning
    return {
        "dense_a": dense_key(cfg, seed, "A"),
        "pruning": {"sparsity": p.sparsity, "prune_perc": p.prune_perc, "max_rounds": p.prune_epochs,
                    "prune_lr": p.prune_lr, "train_epochs_per_prune": p.train_epochs_per_prune,
                    "tolerance": p.tolerance_for(cfg.model_type), "momentum": p.momentum,
                    "weight_decay": p.weight_decay, "rewind_epoch": p.rewind_epoch},
    }


def imp_chain_key(cfg: Config, seed: int) -> dict[str, Any]:
    """IMP's key without the target: the rounds of runs towards different targets are shared."""
    key = imp_key(cfg, seed)
    key["pruning"] = {k: v for k, v in key["pruning"].items() if k not in ("sparsity", "tolerance")}
    return key


def match_key(cfg: Config, seed: int) -> dict[str, Any]:
    m = cfg.matching
    matching: dict[str, Any] = {"method": m.method, "alphas": list(m.alphas),
                                "interpolation_batches": m.interpolation_batches}
    if m.method == "activation":
        matching["num_batches"] = m.num_batches
    else:
        matching.update(max_iter=m.max_iter, seed=m.seed)
    return {"imp": imp_key(cfg, seed), "dense_b": dense_key(cfg, seed, "B"), "matching": matching}


def sparse_key(cfg: Config, seed: int, k: int, run: str) -> dict[str, Any]:
    # Each run depends only on what it uses: lth on A, naive/random on B, permuted on the matching too.
    o = cfg.optimizer
    source: dict[str, Any] = {"imp": imp_key(cfg, seed)}
    if run in ("naive", "random"):
        source["dense_b"] = dense_key(cfg, seed, "B")
    if run == "permuted":
        source = {"match": match_key(cfg, seed)}
    return {"source": source, "run": run, "rewind": k, "sparse_lr": o.sparse_lr,
            "sparse_epochs": cfg.total_sparse_epochs, "momentum": o.momentum,
            "weight_decay": o.weight_decay, "nesterov": o.nesterov}


def science_config(cfg: Config) -> dict[str, Any]:
    """The config without the keys that do not change results (paths, device, logging)."""
    d = cfg.to_dict()
    for k in ("dataset_root", "save_path", "device", "num_workers", "compile", "project", "entity",
              "download", "seed", "threads"):
        d.pop(k, None)
    d["model_type"] = model_key(cfg)["model_type"]
    return d


def config_hash(cfg: Config) -> str:
    return stable_hash(science_config(cfg))


# Keys whose change invalidates phase 1's artifacts (everything but what only phase 2 uses).
PHASE2_ONLY = ("rewind_points", "sparse_epochs", "optimizer.sparse_lr", "sparse.runs", "sparse.random_control")

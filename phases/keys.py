"""Per-stage settings: for each artifact of the graph, exactly the config values it uses.

An artifact's key is its settings plus its parents' keys (``phases/graph.py``),
so each setting lives in the one stage that uses it and reaches the stages
below through the parent hashes. Paths, device, worker counts, evaluation
frequency and logging names are absent: they change where or how fast a
result is made, not what it is. Saved epochs are absent from the dense
settings too: they are what a dense artifact holds (listed in its manifest),
and a new rewind point adds a checkpoint to the same artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from models.registry import model_settings
from utils.config import RESCALED, Config


@dataclass(frozen=True)
class DenseSettings:
    model: dict[str, Any]
    data: dict[str, Any]
    optimizer: dict[str, Any]
    epochs: int
    precision: str
    seed: int
    role: str  # "A" or "B": the init and data order derive from (seed, role)


@dataclass(frozen=True)
class ImpChainSettings:
    """IMP without its target: rounds towards 80 % and 97 % are the same until the capped last one."""

    prune_perc: float
    prune_lr: float
    train_epochs_per_prune: int
    momentum: float
    weight_decay: float
    rewind_epoch: int | None
    schedule: str  # each round's schedule from prune_lr: cosine or constant
    prune_exclude: tuple[str, ...] | None = None  # weights left dense (by name); absent when unset


@dataclass(frozen=True)
class ImpTargetSettings:
    sparsity: float
    tolerance: float
    max_rounds: int


@dataclass(frozen=True)
class MatchSettings:
    method: str
    num_batches: int | None = None  # activation matching
    augment: bool | None = None  # activation matching: augmented, shuffled batches instead of a fixed order
    # Activation matching's residual-stream activations (matching.stream); absent at `pooled`, so keys made
    # before the setting existed stay.
    stream: str | None = None
    std: str | None = None  # activation matching's std estimate (matching.std); absent at `pooled`, likewise
    max_iter: int | None = None  # weight matching
    seed: int | None = None  # weight matching's group order
    # Early matching (the paper's Table 15): B's checkpoint after this many epochs instead of its final model.
    b_epoch: int | None = None
    # The run seed the augmented matching batches are drawn from, only when it is not the seed of dense A (the
    # same rule as SparseSettings.seed): a fixed `pruning.mask_from.seed` matches the source's A for every run seed.
    run_seed: int | None = None


@dataclass(frozen=True)
class PermutedMaskSettings:
    """pi(M_A) is determined by its parents (the permutation and the IMP mask) alone."""


@dataclass(frozen=True)
class InterpolationSettings:
    alphas: tuple[float, ...]
    batches: int
    repair: bool | None = None  # matching.repair; absent (None) when false, so keys made without it stay


@dataclass(frozen=True)
class SparseSettings:
    run: str
    rewind: int
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    epochs: int  # sparse_epochs - rewind
    schedule: dict[str, Any]  # a fresh schedule of the optimizer's type over `epochs`, from `lr`
    # The same k is another checkpoint under each convention (after k or k + 1 epochs of dense training).
    rewind_convention: str
    # Mask transfer only: the data the run trains on, which its weights' parent no longer implies (lth trains the
    # source's A on this config's data; without it, it would share its key with the source's own lth run).
    data: dict[str, Any] | None = None
    rescale_bn_batches: int | None = None  # `<run>+rescale` runs only: batches re-estimating BN after rescaling
    # Another data order than the main runs' (phases/sparse_step.sparse_data_seed): ensemble members 1, 2, ...
    data_order: int | None = None
    # The run seed (data order, random mask), only when it is not the seed of the dense A its mask was pruned from
    # (phases/graph.mask_seed): under a fixed `pruning.mask_from.seed` two run seeds' lth runs differ in nothing
    # else. Absent otherwise, so every other key stays as it was.
    seed: int | None = None


def as_key(settings: Any) -> dict[str, Any]:
    """The settings as a JSON-able dict; unset optional fields are dropped so they never enter a hash."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items() if v is not None}


def schedule_settings(cfg: Config) -> dict[str, Any]:
    """The optimizer's schedule as dense and sparse training run it: a step schedule's parameters only with it."""
    o = cfg.optimizer
    if o.schedule == "cosine":
        return {"schedule": "cosine"}
    return {"schedule": o.schedule, "warmup_epochs": o.warmup_epochs, "milestones": list(o.milestones),
            "gamma": o.gamma}


def data_settings(cfg: Config) -> dict[str, Any]:
    """The data a stage trains or measures on; ``normalization`` only when it is not the dataset's own, so keys
    made before the setting existed stay."""
    settings = {"dataset": cfg.dataset, "train_subset": cfg.train_subset, "test_subset": cfg.test_subset,
                "batch_size": cfg.batch_size}
    if cfg.normalization != "dataset":
        settings["normalization"] = cfg.normalization
    return settings


def dense_settings(cfg: Config, seed: int, role: str) -> DenseSettings:
    o = cfg.optimizer
    return DenseSettings(
        model=model_settings(cfg),
        data=data_settings(cfg),
        optimizer={"type": o.type.lower(), "lr": o.lr, "momentum": o.momentum, "weight_decay": o.weight_decay,
                   "nesterov": o.nesterov, **schedule_settings(cfg)},
        epochs=cfg.epochs if role == "A" else cfg.b_epochs, precision=cfg.precision, seed=seed, role=role)


def imp_chain_settings(cfg: Config) -> ImpChainSettings:
    p = cfg.pruning
    return ImpChainSettings(prune_perc=p.prune_perc, prune_lr=p.prune_lr,
                            train_epochs_per_prune=p.train_epochs_per_prune, momentum=p.momentum,
                            weight_decay=p.weight_decay, rewind_epoch=p.rewind_epoch, schedule=p.schedule,
                            prune_exclude=tuple(cfg.prune_exclude) if cfg.prune_exclude else None)


def imp_target_settings(cfg: Config) -> ImpTargetSettings:
    p = cfg.pruning
    return ImpTargetSettings(sparsity=p.sparsity, tolerance=p.tolerance_for(cfg.model_type),
                             max_rounds=p.prune_epochs)


def match_settings(cfg: Config) -> MatchSettings:
    m = cfg.matching
    if m.method == "activation":
        return MatchSettings(method=m.method, num_batches=m.num_batches, augment=m.augment,
                             stream=None if m.stream == "pooled" else m.stream,
                             std=None if m.std == "pooled" else m.std)
    return MatchSettings(method=m.method, max_iter=m.max_iter, seed=m.seed)


def early_match_settings(cfg: Config, b_epoch: int | None) -> MatchSettings:
    """The permutation's settings with B at epoch ``b_epoch`` (in epochs trained); None or B's last: the main ones."""
    base = match_settings(cfg)
    return base if b_epoch is None or b_epoch == cfg.b_epochs else replace(base, b_epoch=b_epoch)


def interpolation_settings(cfg: Config) -> InterpolationSettings:
    m = cfg.matching
    return InterpolationSettings(alphas=tuple(m.alphas), batches=m.interpolation_batches, repair=m.repair or None)


def sparse_settings(cfg: Config, k: int, run: str) -> SparseSettings:
    o = cfg.optimizer
    return SparseSettings(run=run, rewind=k, lr=o.sparse_lr, momentum=o.momentum, weight_decay=o.weight_decay,
                          nesterov=o.nesterov, epochs=cfg.total_sparse_epochs - k, schedule=schedule_settings(cfg),
                          rewind_convention=cfg.rewind_convention,
                          data=data_settings(cfg) if cfg.pruning.mask_from is not None else None,
                          rescale_bn_batches=cfg.sparse.rescale_bn_batches if run.endswith(RESCALED) else None)

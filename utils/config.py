"""YAML config -> typed, validated dataclasses.

Every check runs before any work or write: a bad config costs the user one
clear line, never a half-made run directory. Keys of the original research
configs keep their meaning; new keys have defaults that keep those configs
valid.

What a config is checked against about models and datasets (which exist, each model's IMP tolerance and
architecture fields, a plug-in's signature) is theirs to say, and this lowest floor may not import them:
``models.registry`` and ``data.info`` register those facts at import (``utils/facts.py``, which says why a
registration rather than moving these checks up). No model's default or rule lives here: the original code's
``pruning.tolerance_resnet20``/``tolerance_vgg11`` stay as keys only, their meaning is the registry rows'.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from utils import facts
from utils.compose import compose
from utils.errors import ConfigError
from utils.paths import path_problem
from utils.plugins import is_plugin, plugin_arguments
from utils.safe_yaml import YamlRefused, read_yaml_file

MATCHING_METHODS = ("activation", "weight")
# matching.stream: which activations stand for a residual stream in activation matching (the model's spec,
# models/*.py): `pooled`, every block output of a stage and the stem's pooled into one correlation; `released`,
# one block output per stage, as the paper's released code chose them.
MATCHING_STREAMS = ("pooled", "released")
# normalization: the per-channel mean and std inputs are normalised with (data/info.py): `dataset`, the
# dataset's own; `imagenet`, ImageNet's, as the released loaders did for CIFAR-10.
NORMALIZATIONS = ("dataset", "imagenet")
# matching.std: how activation matching estimates each unit's standard deviation (matching/activation_matching.py):
# `pooled`, over all matching samples; `batch_mean`, the mean of per-batch ones (the released ResNet20 code's).
MATCHING_STDS = ("pooled", "batch_mean")
SPARSE_RUNS = ("lth", "naive", "permuted", "random")
RESCALED = "+rescale"  # a sparse run name suffix: the same run from rescaled initialization (pruning/rescale.py)
PRECISIONS = ("fp32", "bf16")
TRACKING_BACKENDS = ("wandb", "tensorboard")  # `tracking:` (see tracking/)
# rewind_convention -> how many epochs past k the checkpoint of rewind point k is taken. `epochs`: the paper's
# text (k = 0 is the initialisation); `released`: the released code that made the tables, which saved its "epoch
# k" after that epoch's training, i.e. after k + 1 epochs (docs/paper.md).
REWIND_CONVENTIONS = {"epochs": 0, "released": 1}
SCHEDULES = ("cosine", "step")  # optimizer.schedule: dense and sparse training
PRUNE_SCHEDULES = ("cosine", "constant")  # pruning.schedule: IMP fine-tuning
# Where Debian's dataset-fashion-mnist package puts its files; the data layer
# falls back to it, so validation must accept it too.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class _NotFinite(ConfigError):
    """A float key holding NaN or ±inf: reported as is, not as "expected a number (or null)"."""


@dataclass
class OptimizerConfig:
    type: str = "SGD"
    lr: float = 0.08
    sparse_lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    # cosine: to 0 over each run, stepped per epoch (the CIFAR code). step: the released ResNet50 recipe, a linear
    # warm-up over `warmup_epochs`, then lr * gamma^(milestones passed); milestones count a run's own epochs.
    # Dense training and every sparse run (a fresh schedule over sparse_epochs - k) use it.
    schedule: str = "cosine"
    warmup_epochs: int = 0  # step only
    milestones: list[int] = field(default_factory=list)  # step only: epochs after which lr is multiplied by gamma
    gamma: float = 0.1  # step only


@dataclass
class MaskFromConfig:
    """``pruning.mask_from``: mask transfer, the IMP mask (and dense A, the model it was pruned from) of another
    config, e.g. a CIFAR-10 mask for SVHN; B, matching and the sparse runs stay this config's (phases/mask_source.py).
    """

    config: str = ""  # the source config file; a relative path is relative to this config file's folder
    seed: int | None = None  # the source's run seed; null: this run's seed


@dataclass
class PruningConfig:
    sparsity: float = 0.9
    prune_perc: float = 0.2
    prune_epochs: int = 5000  # the original key: the most IMP rounds to run
    prune_lr: float = 0.01
    train_epochs_per_prune: int = 50
    # IMP stops once within the tolerance of its target. Each model's comes from its registry row
    # (models/registry.py); `tolerance` overrides it for any model. The original code's per-architecture keys
    # (the `tolerance_` ones) override it for the models whose row names that key; null: the row's.
    tolerance_resnet20: float | None = None
    tolerance_vgg11: float | None = None
    tolerance: float | None = None
    # The paper's code fine-tuned with plain SGD (no momentum, no weight decay).
    momentum: float = 0.0
    weight_decay: float = 0.0
    # Each round's schedule from prune_lr: cosine to 0 (the CIFAR code) or constant (the released ResNet50 IMP).
    schedule: str = "cosine"
    rewind_epoch: int | None = None  # IMP with weight rewinding instead of fine-tuning (in epochs, any convention)
    # Mask transfer: take dense A and the IMP mask from another config; this section's other keys then go unused.
    mask_from: MaskFromConfig | None = None

    def tolerance_key(self, model_type: str) -> str:
        """The key (under ``pruning``) that sets ``model_type``'s tolerance: the override, else the one its
        registry row names (which, unset, stands for the row's own value)."""
        return "tolerance" if self.tolerance is not None else facts.models().tolerance(model_type)[0]

    def tolerance_for(self, model_type: str) -> float:
        """IMP's stopping tolerance for ``model_type`` (ValueError if the model is unknown)."""
        key, default = facts.models().tolerance(model_type)
        given = self.tolerance if self.tolerance is not None else getattr(self, key, None)
        return default if given is None else given


# The original code's per-architecture tolerance keys (which model each serves is its registry row's say).
_TOLERANCE_KEYS = tuple(f.name for f in dataclasses.fields(PruningConfig) if f.name.startswith("tolerance_"))


@dataclass
class MatchingConfig:
    method: str = "activation"
    num_batches: int = 50  # training batches used for activation matching
    # false: the training set in a fixed order, un-augmented; true: augmented, shuffled training batches (the
    # paper's choice), drawn from a seed derived from the run seed.
    augment: bool = False
    stream: str = "pooled"  # MATCHING_STREAMS: a residual stream's activations; `released` as the paper's code
    std: str = "pooled"  # MATCHING_STDS: each unit's standard deviation; `batch_mean` as the released ResNet20 code
    max_iter: int = 100  # weight matching sweeps
    seed: int = 0  # weight matching's group order
    # 11 points, as the paper's Fig. 3; only the interpolation artifact depends on it (no training does).
    alphas: list[float] = field(default_factory=lambda: [i / 10 for i in range(11)])
    interpolation_batches: int = 20  # training batches used to reset BN and measure train loss
    # REPAIR (matching/repair.py) at every alpha of the interpolation curves: each channel's pre-activation mean
    # and std set to the alpha-interpolation of the endpoints'. Enters only the interpolation key, when true.
    repair: bool = False


@dataclass
class SparseConfig:
    runs: list[str] = field(default_factory=lambda: ["lth", "naive", "permuted"])
    random_control: bool = False  # adds the `random` run (random mask, M_A's per-layer density)
    # Rescaled initialization (pruning/rescale.py): adds the `<run>+rescale` twin of every run, whose rewound
    # weights get each unit's kept weights to variance 2 / kept fan-in, then BN statistics re-estimated.
    rescale_init: bool = False
    rescale_bn_batches: int = 50  # training batches (un-augmented) re-estimating BN statistics after rescaling


@dataclass
class EnsembleStudyConfig:
    """``studies.ensemble``: the paper's Table 1 (ensembles and diversity), ``phases/studies/ensemble.py``."""

    members: int = 5  # M: models per group; member 0 is the main experiment's own runs
    rewind: int | None = None  # k of the members' sparse runs; null: the config's first rewind point


@dataclass
class EarlyMatchingStudyConfig:
    """``studies.early_matching``: the paper's Table 15, ``phases/studies/early_matching.py``."""

    # Epochs i of dense B to match trained A against, in the config's rewind_convention (like rewind points).
    epochs: list[int] = field(default_factory=list)


@dataclass
class ImpBarriersStudyConfig:
    """``studies.imp_barriers``: the paper's Fig. 4a, ``phases/studies/imp_barriers.py``."""

    repair: list[bool] = field(default_factory=lambda: [False, True])  # one curve set per entry
    alphas: list[float] | None = None  # null: matching.alphas


@dataclass
class StudiesConfig:
    """``studies``: the paper's further studies (``phases/studies``), each off (null) unless its section is given.

    Not part of the run directory's identity (``phases/identity.py``): a study only adds artifacts,
    and its settings enter the keys of its own artifacts alone.
    """

    ensemble: EnsembleStudyConfig | None = None
    early_matching: EarlyMatchingStudyConfig | None = None
    imp_barriers: ImpBarriersStudyConfig | None = None


@dataclass
class Config:
    model_type: str = "ResNet"
    width_multiplier: int = 1
    # Architecture fields. Which models read each one, and its default, is their registry rows' say
    # (utils/facts.py); null until the config is loaded, then that default.
    mlp_hidden: list[int] | None = None
    batchnorm: bool | None = None
    init_weights: bool | None = None
    # A plug-in model_type ("package.module:ClassName") is built with these keyword arguments.
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Name patterns of weights IMP leaves dense (a dotted name component such as `downsample`, or a glob).
    prune_exclude: list[str] | None = None
    dataset: str = "cifar10"
    dataset_root: str | dict[str, str] = "datasets"
    download: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    normalization: str = "dataset"  # NORMALIZATIONS: inputs' mean and std; `imagenet` as the released CIFAR-10 loader
    epochs: int = 200
    model_b_epochs: int | None = None  # defaults to `epochs`
    sparse_epochs: int | None = None  # defaults to `epochs`
    batch_size: int = 128
    num_workers: int = 8
    device: str = "cuda"
    compile: bool = False
    # fp32 | bf16: train and evaluate under bf16 autocast. Part of the dense artifact key; bf16 autocast
    # runs on CPU too.
    precision: str = "fp32"
    threads: int | None = None  # CPU threads for PyTorch; null: one per core but one (see training/device.py)
    eval_every: int = 1
    rewind_points: list[int] = field(default_factory=lambda: [0, 5, 10, 15, 20, 25, 50, 75, 100])
    # What rewind point k means (REWIND_CONVENTIONS): `epochs`, the weights after k epochs (k = 0: the
    # initialisation); `released`, after k + 1 epochs, as the released code that produced the paper's tables.
    rewind_convention: str = "epochs"
    save_path: str = "runs"
    seed: int = 0
    project: str | None = None  # wandb project (as in the original code); used when `tracking` has wandb
    entity: str | None = None
    # Experiment-tracking backends that mirror metrics.jsonl (TRACKING_BACKENDS); none by default. Changes no result.
    tracking: list[str] = field(default_factory=list)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)

    @property
    def data_root(self) -> Path:
        """The dataset root for `dataset`, expanded (`~`, `$VARS`)."""
        root = self.dataset_root
        if isinstance(root, dict):
            root = root[self.dataset]
        return Path(_expand(root))

    @property
    def b_epochs(self) -> int:
        return self.epochs if self.model_b_epochs is None else self.model_b_epochs

    @property
    def total_sparse_epochs(self) -> int:
        return self.epochs if self.sparse_epochs is None else self.sparse_epochs

    def checkpoint_epoch(self, k: int) -> int:
        """The training epoch whose checkpoint rewind point ``k`` means under ``rewind_convention``."""
        return k + REWIND_CONVENTIONS[self.rewind_convention]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + " (or null)" if type(None) in typing.get_args(tp) else " or ".join(parts)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are."""
    if tp is Any:
        return _plain_value(value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except _NotFinite:
                raise
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond float's range
                number = math.inf
        # YAML 1.1 reads `5e-4` as a string; accept what is clearly a number.
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            # Every float of the config goes through here, so this one check covers them all: YAML's
            # `.nan`/`.inf`, and strings float() accepts ("nan", "inf", "1e999"). A NaN would pass
            # every range check below (all comparisons with it are false) and poison a whole run.
            if not math.isfinite(number):
                raise _NotFinite(f"{where}: must be a finite number, got {_show(value)}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)} ({type(value).__name__})")


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxdict = 6
_SHOWN.maxlevel = 3


def _show(value: Any) -> str:
    """``repr(value)`` cut to a short line: an error names the value it refuses, never prints all of a huge one."""
    return _SHOWN.repr(value)


def _plain_value(value: Any, where: str) -> Any:
    """A free-form YAML value (``model_kwargs``): numbers (finite), strings, booleans, null, lists, mappings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _coerce(value, float, where)
    if isinstance(value, list):
        return [_plain_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain_value(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}: expected a number, string, boolean, list or mapping, got {_show(value)}")


def _unknown_key(cls: type, key: Any, where: str) -> ConfigError:
    """The error for ``key`` not being a field of the section ``cls`` (at ``where``), with a "did you mean"."""
    fields = sorted(f.name for f in dataclasses.fields(cls))
    near = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.5)
    hint = f"; did you mean '{(where + '.') if where else ''}{near[0]}'?" if near else ""
    return ConfigError(f"unknown config key '{_join(where, key)}'{hint}")


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _require_mapping(raw: Any, where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {_show(raw)}")


def _section_type(tp: Any) -> type | None:
    """The section dataclass of a field typed ``Section`` or ``Section | None`` (an optional section), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    _require_mapping(raw, where)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        path = _join(where, key)
        if key not in fields:
            raise _unknown_key(cls, key, where)
        tp = hints[key]
        section = _section_type(tp)
        if section is not None:
            # An optional section written as null stays off; a required one written empty means its defaults.
            kwargs[key] = None if value is None and section is not tp else _build(section, value, path)
        else:
            kwargs[key] = _coerce(value, tp, path)
    return cls(**kwargs)


def _check(cfg: Config, *, check_data: bool) -> None:
    def fail(msg: str) -> None:
        raise ConfigError(msg)

    _check_sizes(cfg, fail)
    _check_training(cfg, fail)
    _check_matching_and_rewinds(cfg, fail)
    _check_sources_and_runtime(cfg, fail)
    _check_studies(cfg, fail)
    if check_data and not cfg.download:
        root = cfg.data_root
        fallback = cfg.dataset == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir()
        if not root.exists() and not fallback:
            fail(f"dataset_root: {str(root)!r} does not exist; {facts.datasets()[cfg.dataset].how_to_get}")


def _check_sizes(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    """The model, the dataset, and every count or size that must be positive."""
    _check_model(cfg, fail)
    datasets = facts.datasets()
    if cfg.dataset not in datasets:
        near = difflib.get_close_matches(cfg.dataset, list(datasets), n=1, cutoff=0.4)
        fail(f"dataset: unknown dataset {cfg.dataset!r}; choose one of {', '.join(datasets)}"
             + (f" (did you mean {near[0]!r}?)" if near else ""))
    positive = {
        "width_multiplier": cfg.width_multiplier, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "eval_every": cfg.eval_every, "pruning.train_epochs_per_prune": cfg.pruning.train_epochs_per_prune,
        "pruning.prune_epochs": cfg.pruning.prune_epochs, "matching.num_batches": cfg.matching.num_batches,
        "matching.max_iter": cfg.matching.max_iter,
        "matching.interpolation_batches": cfg.matching.interpolation_batches,
        "sparse.rescale_bn_batches": cfg.sparse.rescale_bn_batches,
    }
    for key, value in positive.items():
        if value <= 0:
            fail(f"{key}: must be positive, got {value}")
    if cfg.model_b_epochs is not None and cfg.model_b_epochs <= 0:
        fail(f"model_b_epochs: must be positive, got {cfg.model_b_epochs}")
    if cfg.sparse_epochs is not None and cfg.sparse_epochs <= 0:
        fail(f"sparse_epochs: must be positive, got {cfg.sparse_epochs}")
    if cfg.threads is not None and cfg.threads <= 0:
        fail(f"threads: must be positive (or null for PyTorch's default), got {cfg.threads}")
    if cfg.num_workers < 0:
        fail(f"num_workers: must be >= 0, got {cfg.num_workers}")
    for key in ("train_subset", "test_subset"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            fail(f"{key}: must be positive, got {value}")


def _check_training(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    """Pruning targets, IMP tolerance, learning rates, momentum, weight decay, schedules."""
    if not 0.0 < cfg.pruning.sparsity < 1.0:
        fail(f"pruning.sparsity: must be strictly between 0 and 1 (a fraction, 0.9 = 90%), "
             f"got {cfg.pruning.sparsity}")
    if not 0.0 < cfg.pruning.prune_perc < 1.0:
        fail(f"pruning.prune_perc: must be strictly between 0 and 1, got {cfg.pruning.prune_perc}")
    # IMP stops once within the tolerance of the target: one at or above the target stops it before its
    # first round ("sparse" runs that are dense), a negative one is never met (it runs every allowed round).
    applies = cfg.pruning.tolerance_key(cfg.model_type)
    tol = cfg.pruning.tolerance_for(cfg.model_type)
    if not 0.0 <= tol < cfg.pruning.sparsity:
        fail(f"pruning.{applies}: must be in [0, pruning.sparsity={cfg.pruning.sparsity}) "
             f"(the IMP tolerance for {cfg.model_type}), got {tol}")
    for key in _TOLERANCE_KEYS:  # one unused by this model is never meaningful negative either
        value = getattr(cfg.pruning, key)
        if value is not None and value < 0:
            fail(f"pruning.{key}: must be >= 0, got {value}")
    for key in ("lr", "sparse_lr"):
        if getattr(cfg.optimizer, key) <= 0:
            fail(f"optimizer.{key}: must be positive, got {getattr(cfg.optimizer, key)}")
    if cfg.pruning.prune_lr <= 0:
        fail(f"pruning.prune_lr: must be positive, got {cfg.pruning.prune_lr}")
    for where, opt in (("optimizer", cfg.optimizer), ("pruning", cfg.pruning)):
        if not 0.0 <= opt.momentum < 1.0:
            fail(f"{where}.momentum: must be in [0, 1), got {opt.momentum}")
        if opt.weight_decay < 0:
            fail(f"{where}.weight_decay: must be >= 0, got {opt.weight_decay}")
    _check_schedules(cfg, fail)


def _check_matching_and_rewinds(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    """Optimizer type, matching method and grid, sparse runs, rewind points."""
    if cfg.optimizer.type.lower() != "sgd":
        fail(f"optimizer.type: only SGD is supported (the paper's optimizer), got {cfg.optimizer.type!r}")
    if cfg.matching.method not in MATCHING_METHODS:
        fail(f"matching.method: must be one of {', '.join(MATCHING_METHODS)}, got {cfg.matching.method!r}")
    if cfg.matching.stream not in MATCHING_STREAMS:
        fail(f"matching.stream: must be one of {', '.join(MATCHING_STREAMS)}, got {cfg.matching.stream!r}")
    if cfg.matching.std not in MATCHING_STDS:
        fail(f"matching.std: must be one of {', '.join(MATCHING_STDS)}, got {cfg.matching.std!r}")
    if cfg.normalization not in NORMALIZATIONS:
        fail(f"normalization: must be one of {', '.join(NORMALIZATIONS)}, got {cfg.normalization!r}")
    if not cfg.matching.alphas or any(not 0.0 <= a <= 1.0 for a in cfg.matching.alphas):
        fail(f"matching.alphas: must be a non-empty list of numbers in [0, 1], got {cfg.matching.alphas}")
    if not {0.0, 0.5, 1.0} <= set(cfg.matching.alphas):
        fail(f"matching.alphas: must include 0, 0.5 and 1 (the end points and the midpoint), "
             f"got {cfg.matching.alphas}")
    for run in cfg.sparse.runs:
        if run.removesuffix(RESCALED) not in SPARSE_RUNS:
            fail(f"sparse.runs: unknown run {run!r}; choose from {', '.join(SPARSE_RUNS)}, each optionally "
                 f"with {RESCALED!r} (rescaled initialization)")
    if cfg.rewind_convention not in REWIND_CONVENTIONS:
        fail(f"rewind_convention: must be one of {', '.join(REWIND_CONVENTIONS)}, got {cfg.rewind_convention!r}")
    if len(set(cfg.rewind_points)) != len(cfg.rewind_points):
        fail(f"rewind_points: duplicates in {cfg.rewind_points}")
    for k in cfg.rewind_points:
        # A rewind point needs A's and B's checkpoint at k (after k + 1 epochs under `released`) and at least
        # one sparse epoch after it.
        if k < 0:
            fail(f"rewind_points: rewind point {k} is negative")
        at = cfg.checkpoint_epoch(k)
        if at > cfg.epochs or at > cfg.b_epochs or k >= cfg.total_sparse_epochs:
            meaning = f" (under rewind_convention: released, k={k} is the checkpoint after {at} epochs)" \
                if at != k else ""
            fail(f"rewind_points: rewind point {k} is past the end of training "
                 f"(epochs={cfg.epochs}, model_b_epochs={cfg.b_epochs}, "
                 f"sparse_epochs={cfg.total_sparse_epochs}){meaning}")


def _check_sources_and_runtime(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    """Mask transfer source, IMP rewinding, data root entry, device, tracking, precision."""
    mf = cfg.pruning.mask_from
    if mf is not None:
        if not mf.config:
            fail("pruning.mask_from.config: required: the path of the config whose IMP mask this one takes")
        if not Path(_expand(mf.config)).is_file():
            fail(f"pruning.mask_from.config: {mf.config!r} not found (a relative path is relative to the folder of "
                 "the config file that names it)")
        if mf.seed is not None and mf.seed < 0:
            fail(f"pruning.mask_from.seed: must be >= 0 (or null for this run's seed), got {mf.seed}")
    rw = cfg.pruning.rewind_epoch
    if rw is not None and not 0 <= rw < cfg.epochs:
        fail(f"pruning.rewind_epoch: must be in [0, epochs={cfg.epochs}), got {rw}")
    if isinstance(cfg.dataset_root, dict) and cfg.dataset not in cfg.dataset_root:
        have = ", ".join(cfg.dataset_root) or "none"
        fail(f"dataset_root: no entry for dataset {cfg.dataset!r} (has {have})")
    if not (cfg.device in ("cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", cfg.device)):
        fail(f"device: must be cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    for backend in cfg.tracking:
        if backend not in TRACKING_BACKENDS:
            fail(f"tracking: unknown backend {backend!r}; choose from {', '.join(TRACKING_BACKENDS)}")
    if len(set(cfg.tracking)) != len(cfg.tracking):
        fail(f"tracking: duplicates in {cfg.tracking}")
    if cfg.precision not in PRECISIONS:
        fail(f"precision: must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")


def _check_studies(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    """Ranges of the ``studies.<name>`` sections that are given (each study adds its own checks here)."""
    ens = cfg.studies.ensemble
    if ens is not None:
        if ens.members < 2:
            fail(f"studies.ensemble.members: an ensemble needs at least 2 members, got {ens.members}")
        k = ens.rewind
        if k is not None and (k < 0 or cfg.checkpoint_epoch(k) > min(cfg.epochs, cfg.b_epochs)
                              or k >= cfg.total_sparse_epochs):
            fail(f"studies.ensemble.rewind: {k} is not a rewind point within training (epochs={cfg.epochs}, "
                 f"model_b_epochs={cfg.b_epochs}, sparse_epochs={cfg.total_sparse_epochs})")
    early = cfg.studies.early_matching
    if early is not None:
        if not early.epochs:
            fail("studies.early_matching.epochs: give at least one epoch i of dense B to match at")
        if len(set(early.epochs)) != len(early.epochs):
            fail(f"studies.early_matching.epochs: duplicates in {early.epochs}")
        for i in early.epochs:
            if i < 0 or cfg.checkpoint_epoch(i) > cfg.b_epochs:
                fail(f"studies.early_matching.epochs: {i} is not an epoch of dense B (model_b_epochs={cfg.b_epochs}, "
                     f"rewind_convention: {cfg.rewind_convention})")
    bar = cfg.studies.imp_barriers
    if bar is not None:
        if not bar.repair or len(set(bar.repair)) != len(bar.repair):
            fail(f"studies.imp_barriers.repair: a non-empty list of distinct true/false, got {bar.repair}")
        if bar.alphas is not None and (any(not 0.0 <= a <= 1.0 for a in bar.alphas)
                                       or not {0.0, 1.0} <= set(bar.alphas)):
            fail(f"studies.imp_barriers.alphas: numbers in [0, 1] including 0 and 1, got {bar.alphas}")


def _check_model(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    """model_type (a built-in name, or a plug-in class that must import), model_kwargs, prune_exclude."""
    models = facts.models()
    if is_plugin(cfg.model_type):
        info = facts.datasets().get(cfg.dataset)
        try:  # imports the class and checks model_kwargs against its signature, building nothing
            plugin_arguments(cfg.model_type, cfg.model_kwargs, in_channels=info.in_channels if info else 1,
                             num_classes=info.num_classes if info else 1)
        except ValueError as err:
            fail(str(err))
        if cfg.width_multiplier != 1:
            fail(f"width_multiplier: applies to the built-in models; give {cfg.model_type}'s size in model_kwargs")
    else:
        try:
            models.canonical(cfg.model_type)
        except ValueError:
            near = difflib.get_close_matches(cfg.model_type, models.model_types, n=1, cutoff=0.4)
            fail(f"model_type: unknown model {cfg.model_type!r}; choose one of {', '.join(models.model_types)} or a "
                 "class of your own as 'package.module:ClassName'" + (f" (did you mean {near[0]!r}?)" if near else ""))
        if cfg.model_kwargs:
            fail("model_kwargs: applies to a model_type of your own ('package.module:ClassName') only")
    for key, problem in models.arch_checks.items():  # any model's field: set, it must make sense
        value = getattr(cfg, key, None)
        complaint = None if value is None else problem(value)
        if complaint:
            fail(f"{key}: {complaint}")
    if cfg.prune_exclude is not None and (not cfg.prune_exclude or any(not p for p in cfg.prune_exclude)):
        fail(f"prune_exclude: must be a non-empty list of non-empty name patterns (or null), got {cfg.prune_exclude}")


def _check_schedules(cfg: Config, fail: typing.Callable[[str], None]) -> None:
    o = cfg.optimizer
    if o.schedule not in SCHEDULES:
        fail(f"optimizer.schedule: must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}")
    if cfg.pruning.schedule not in PRUNE_SCHEDULES:
        fail(f"pruning.schedule: must be one of {', '.join(PRUNE_SCHEDULES)}, got {cfg.pruning.schedule!r}")
    if o.warmup_epochs < 0:
        fail(f"optimizer.warmup_epochs: must be >= 0, got {o.warmup_epochs}")
    if any(m <= 0 for m in o.milestones) or o.milestones != sorted(set(o.milestones)):
        fail(f"optimizer.milestones: must be positive epochs in increasing order, got {o.milestones}")
    if not 0.0 < o.gamma <= 1.0:
        fail(f"optimizer.gamma: must be in (0, 1] (the factor at each milestone), got {o.gamma}")
    if o.schedule == "cosine":
        # Set but unused would silently train another schedule than the one the user wrote down.
        default = OptimizerConfig()
        for key in ("warmup_epochs", "milestones", "gamma"):
            if getattr(o, key) != getattr(default, key):
                fail(f"optimizer.{key}: applies to optimizer.schedule: step only (the schedule is cosine)")


def _expand(path: str) -> str:
    """``~`` and ``$VARS`` expanded, as a shell would (an unset ``$VAR`` stays as written)."""
    return os.path.expandvars(os.path.expanduser(path))


_VARIABLE = re.compile(r"\$(\w+|\{([^}]*)\})")


def _check_variables(cfg: Config, *, check_data: bool) -> None:
    """Refuse a path naming an unset ``$VAR`` (expanded as is, it would write into a literal ``./$VAR`` folder), or
    one no file system takes (``utils/paths.py``).

    ``dataset_root`` only with ``check_data``: a sweep resolves its configs where the jobs' variables (a
    cluster's ``$SLURM_TMPDIR``) are not set yet; the job itself checks them before reading any data.
    """
    paths = {"save_path": cfg.save_path, "pruning.mask_from.config": cfg.pruning.mask_from and
             cfg.pruning.mask_from.config}
    if check_data:
        roots = cfg.dataset_root if isinstance(cfg.dataset_root, dict) else {"": cfg.dataset_root}
        paths.update({_join("dataset_root", k) if k else "dataset_root": v
                      for k, v in roots.items() if k in ("", cfg.dataset)})
    for key, path in paths.items():
        problem = path_problem(path or "")
        if problem:
            raise ConfigError(f"{key}: {problem}, got {_show(path)}")
        for match in _VARIABLE.finditer(path or ""):
            name = match.group(2) if match.group(2) is not None else match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{key}: the environment variable ${name} is not set (in {_show(path)}); set it, "
                                  "or write the path out")


def config_from_dict(raw: Any, *, check_data: bool = True) -> Config:
    """Build and validate a Config from a parsed YAML mapping; ``save_path`` comes back expanded."""
    cfg = _build(Config, raw, "")
    _check_variables(cfg, check_data=check_data)
    # Expanded here, once, so every user of cfg.save_path (artifacts, run directories, messages) sees
    # the same path; dataset_root stays as written (it may be a mapping) and `data_root` expands it.
    cfg.save_path = _expand(cfg.save_path)
    _check(cfg, check_data=check_data)
    _fill_arch_fields(cfg)
    return cfg


def _fill_arch_fields(cfg: Config) -> None:
    """Architecture fields left null take the registry rows' defaults: the loaded config (and the config.yaml
    written from it) says what was built."""
    own = {f.name for f in dataclasses.fields(Config)}
    for name, default in facts.models().arch_defaults.items():
        if name in own and getattr(cfg, name) is None:
            setattr(cfg, name, copy.deepcopy(default))


def _accepts_mapping(tp: Any) -> bool:
    """Whether a (non-section) field of type ``tp`` may hold a mapping, as ``dataset_root`` may."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_accepts_mapping(arg) for arg in typing.get_args(tp))
    return typing.get_origin(tp) is dict


def validate_setting(key: str, value: Any) -> None:
    """Check one dotted key and its value as the same key written in a YAML file would be checked.

    Raises the same ConfigError as the file would give (unknown key with its
    "did you mean", wrong type, non-finite number), so an override on the
    command line is held to the YAML's rules by the same code. Only the key
    and the value's type are checked here: ranges and relations between keys
    (a rewind point past the epochs) need the whole config, which
    ``config_from_dict`` checks.
    """
    parts = key.split(".")
    cls, where = Config, ""
    for i, part in enumerate(parts[:-1]):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise _unknown_key(cls, part, where)
        tp, where = hints[part], _join(where, part)
        if _section_type(tp) is not None:
            cls = _section_type(tp)
            continue
        if _accepts_mapping(tp):  # dataset_root.cifar10: the rest of the path is a key of that mapping
            nested: Any = value
            for inner in reversed(parts[i + 1:]):
                nested = {inner: nested}
            _coerce(nested, tp, where)
            return
        raise ConfigError(f"'{key}' is not a config key: '{where}' holds {_type_name(tp)}, not a mapping of keys")
    _build(cls, {parts[-1]: value}, where)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The YAML mapping of a config file, ``base:`` chain resolved (``utils/compose.py``), unvalidated (overrides
    may still change it); ConfigError if unreadable."""
    return compose(Path(path), _read_one_file)


def _read_one_file(path: Path) -> dict[str, Any]:
    """One YAML file as a mapping, its own relative paths fixed (every file of a ``base:`` chain comes here)."""
    try:
        raw = read_yaml_file(path)
    except YamlRefused as err:
        raise ConfigError(str(err)) from None
    if raw is None:
        raise ConfigError(f"{path}: the config is empty")
    _require_mapping(raw, "")
    _resolve_mask_source(raw, path.parent)
    return raw


def _resolve_mask_source(raw: dict[str, Any], folder: Path) -> None:
    """``pruning.mask_from.config`` made absolute against the folder of the file that names it.

    Unlike ``dataset_root`` and ``save_path`` (working-directory relative, as the original code had them), it
    names a sibling config, which must be found wherever the command runs from (a sweep job, another folder).
    """
    source = (raw.get("pruning") or {}).get("mask_from") if isinstance(raw.get("pruning"), dict) else None
    # A path no file system takes (resolve() would raise): left as written, for the check that names it.
    if isinstance(source, dict) and isinstance(source.get("config"), str) and source["config"] \
            and path_problem(source["config"]) is None:
        path = Path(_expand(source["config"]))
        if not path.is_absolute():
            source["config"] = str((folder / path).resolve())


def load_config(path: str | os.PathLike, *, check_data: bool = True) -> Config:
    """Read and validate a YAML config; raises ConfigError with a one-line message.

    Relative `dataset_root` and `save_path` stay relative to the working
    directory (as the original code had them), after `~` and `$VAR` expansion.
    """
    return config_from_dict(read_config_file(path), check_data=check_data)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (what `config.yaml` in a run directory holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

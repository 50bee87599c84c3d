"""The config reference page (docs/config-reference.md), generated from the config schema itself.

Keys, types and defaults come from the dataclasses in ``utils.config``; only the meanings are written here, one per
key. A key without a meaning, or a meaning for a key the schema does not have, is an error, and a test checks that
the page on disk is what this module renders, so the page cannot drift from the code.

    python -m utils.config_reference           # rewrite docs/config-reference.md
    python -m utils.config_reference --check   # exit 1 when the page is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from utils.config import Config

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"

# Links are relative to docs/, where the page lives.
MEANINGS: dict[str, str] = {
    "model_type": "`ResNet` (= ResNet20), `VGG11`, `ResNet50`, `MLP`, or a model of your own, "
    '`"package.module:ClassName"` or a builder function such as `"torchvision.models:resnet18"` '
    "([your own model](own-model.md))",
    "width_multiplier": "channel multiplier (ResNet20 ×1/4/8/16; ResNet50 via `width_per_group`)",
    "mlp_hidden": "MLP hidden widths; null: the MLP's default, `[512, 512]` (each model's architecture fields and "
    "defaults are its row in `models/registry.py`)",
    "batchnorm": "VGG11 with BatchNorm (the paper's VGG11 has none); null: `false`",
    "init_weights": "VGG11 Kaiming initialisation instead of PyTorch's default; null: `false`",
    "model_kwargs": "your own model's constructor arguments (plug-in models only); part of the dense key",
    "prune_exclude": "name patterns of weights IMP leaves dense, any model: a dotted name component (`downsample`) "
    "or a glob over the key (`fc*`); part of the IMP chain key when set",
    "dataset": "`cifar10`, `cifar100`, `svhn`, `fashion-mnist`, `imagenet`",
    "dataset_root": "a path, or a mapping dataset → path as in the original configs; relative to the working "
    "directory, `~` and `$VARS` expanded",
    "download": "let torchvision download a missing dataset (not ImageNet)",
    "train_subset": "use only N training examples (quick trials): the first N, or for ImageNet's class-sorted "
    "folders a fixed seeded random N",
    "test_subset": "the same for the test set",
    "normalization": "the inputs' per-channel mean and std: `dataset` (its own) or `imagenet` (ImageNet's, as the "
    "released loader used for CIFAR-10; a grey dataset takes their channel average). In the dense keys when not "
    "`dataset`",
    "epochs": "dense A epochs",
    "model_b_epochs": "dense B epochs (null: `epochs`; the run's first lines say when A and B differ)",
    "sparse_epochs": "sparse runs train `sparse_epochs − k` epochs from rewind point k, under either convention, "
    "as the released code did (null: `epochs`)",
    "batch_size": "all training (the last partial batch is dropped); under torchrun the global batch",
    "num_workers": "DataLoader workers (ImageNet only; the other datasets live on the device)",
    "device": "`cpu`, `cuda`, `cuda:N`, `mps`; `-device` overrides it",
    "compile": "`torch.compile` the training forward pass (pays off on GPU)",
    "precision": "`fp32`, or `bf16` autocast for training and evaluation (CUDA or CPU); part of the dense key",
    "threads": "CPU threads for PyTorch; null: one per core but one ([performance](performance.md))",
    "eval_every": "test evaluation every N epochs (and always after the last)",
    "rewind_points": "rewind points k at which dense A and B are checkpointed and sparse runs start",
    "rewind_convention": "what k means: `epochs`, the weights after k epochs (0 = initialisation, the paper's "
    "text); `released`, after k + 1 epochs (the released code; the paper configs). A rewind point must exist: "
    "k ≤ `epochs` − 1 under `released`. Part of the sparse key ([method](method.md))",
    "save_path": "where artifacts and run directories go; relative to the working directory; `-save_path` "
    "overrides it",
    "seed": "replaced by the command line's `-seed` (default 0); kept so the original configs load",
    "project": "the wandb project (null: `sparse-rebasin`), as in the original configs; used with "
    "`tracking: [wandb]`",
    "entity": "the wandb entity (team or user); null: your default",
    "tracking": "experiment-tracking backends that mirror `metrics.jsonl`: `wandb`, `tensorboard` "
    "([tracking](scaling-out.md#tracking-weights-biases-tensorboard)); in no key",
    "optimizer": "dense and sparse training",
    "optimizer.type": "the optimizer (`SGD`, the paper's)",
    "optimizer.lr": "dense training's learning rate",
    "optimizer.sparse_lr": "every sparse run's learning rate",
    "optimizer.momentum": "momentum, dense and sparse",
    "optimizer.weight_decay": "weight decay, dense and sparse",
    "optimizer.nesterov": "Nesterov momentum",
    "optimizer.schedule": "dense training and every sparse run (a fresh schedule over its own epochs): `cosine` "
    "to 0 per run, or `step`, the released ResNet50 recipe",
    "optimizer.warmup_epochs": "`step` only (an error with `cosine`): epoch e < `warmup_epochs` trains at "
    "(e+1)/`warmup_epochs` of the lr",
    "optimizer.milestones": "`step` only: the lr is multiplied by `gamma` after each milestone (epochs of the run)",
    "optimizer.gamma": "`step` only: the factor at each milestone",
    "pruning": "iterative magnitude pruning (IMP) of dense A",
    "pruning.sparsity": "target fraction of pruned weights, in (0, 1)",
    "pruning.prune_perc": "fraction of the remaining weights removed per IMP round",
    "pruning.prune_epochs": "most IMP rounds (the original key)",
    "pruning.prune_lr": "learning rate of the fine-tuning after each round",
    "pruning.train_epochs_per_prune": "fine-tuning epochs after each round",
    "pruning.tolerance_resnet20": "IMP stops once within this of the target, for ResNet20, ResNet50, MLP and your "
    "own models (the original key); null: the model's own, 0.005 (its row in `models/registry.py`); "
    "`0 <= tolerance < sparsity`",
    "pruning.tolerance_vgg11": "the same for VGG11; null: its own, 5e-7",
    "pruning.tolerance": "overrides every model's tolerance when set",
    "pruning.momentum": "fine-tuning momentum: **plain SGD, as the paper's code ran IMP fine-tuning** "
    "([method](method.md))",
    "pruning.weight_decay": "fine-tuning weight decay (0, as the paper's code)",
    "pruning.schedule": "each round's fresh schedule from `prune_lr`: `cosine` to 0 (the CIFAR code) or "
    "`constant` (the released ResNet50 IMP)",
    "pruning.rewind_epoch": "IMP with weight rewinding to A's weights after this many epochs each round (in "
    "epochs, whatever `rewind_convention`), instead of fine-tuning",
    "pruning.mask_from": "mask transfer: dense A and the IMP mask of another config (same architecture, another "
    "dataset); off when null ([studies](studies.md#mask-transfer-the-rebuttals-cifar-10-mask-on-svhn))",
    "pruning.mask_from.config": "the source config; a relative path is relative to this file's folder",
    "pruning.mask_from.seed": "the source's run seed; null: this run's seed",
    "matching": "matching A to B, and the interpolation curves",
    "matching.method": "`activation` (the paper's) or `weight` (Git Re-Basin weight matching)",
    "matching.num_batches": "training batches for activation matching",
    "matching.augment": "false: the training set in a fixed order, un-augmented; true: augmented, shuffled "
    "training batches (the paper's choice) from a seed derived from the run seed. Part of the permutation key "
    "(activation matching only)",
    "matching.stream": "the activations standing for a residual stream in activation matching: `pooled` (the stem "
    "and every block output of a stage, pooled) or `released` (one block output per stage, as the released code "
    "chose; docs/paper.md). In the permutation key when not `pooled`",
    "matching.std": "each unit's standard deviation in the activation correlations: `pooled` (over all samples) or "
    "`batch_mean` (the mean of per-batch ones plus 1e-4 in the product, as the released ResNet20 code). In the "
    "permutation key when not `pooled`",
    "matching.max_iter": "weight matching sweeps",
    "matching.seed": "weight matching's group order",
    "matching.alphas": "interpolation grid (must include 0, 0.5, 1)",
    "matching.interpolation_batches": "training batches (fixed order, un-augmented; ImageNet: a fixed shuffle "
    "covering the classes) used to reset BatchNorm statistics and measure train loss along the path",
    "matching.repair": "REPAIR every interpolated network of the curves ([studies](studies.md#repair-matchingrepair)); "
    "part of the interpolation key only when true",
    "sparse": "phase 2: which sparse runs to train",
    "sparse.runs": "the phase-2 runs; a name may carry `+rescale`",
    "sparse.random_control": "add the `random` run (a random mask of M_A's per-layer density)",
    "sparse.rescale_init": "add the `<run>+rescale` twin of every run: rescaled initialization, then BatchNorm "
    "statistics re-estimated ([studies](studies.md#rescaled-initialization))",
    "sparse.rescale_bn_batches": "training batches re-estimating BatchNorm statistics after rescaling",
    "studies": "the paper's further studies, each off (null) unless its section is given; in no key of the main "
    "run ([studies](studies.md))",
    "studies.ensemble": "`--study ensemble`: ensembles and diversity (the paper's Table 1)",
    "studies.ensemble.members": "models per group",
    "studies.ensemble.rewind": "the rewind point of the members' sparse runs (null: the first of `rewind_points`)",
    "studies.early_matching": "`--study early_matching` (the paper's Table 15); the section is required",
    "studies.early_matching.epochs": "epochs i of dense B to match trained A against, counted like rewind points",
    "studies.imp_barriers": "`--study imp_barriers` (the paper's Fig. 4a)",
    "studies.imp_barriers.repair": "curves without and/or with REPAIR",
    "studies.imp_barriers.alphas": "the grid (null: `matching.alphas`)",
}


def _section(tp: Any) -> type | None:
    """The dataclass a field holds (directly or as ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
    return found[0] if found else None


def _type_text(tp: Any) -> str:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join("null" if a is type(None) else _type_text(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "section"
    if typing.get_origin(tp) in (list, dict):
        return repr(tp).replace("typing.", "")
    return getattr(tp, "__name__", repr(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _yaml(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "(section)"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def keys(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """Every key of the schema as (dotted key, type, default as YAML), sections before their keys."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = _default(f)
        yield prefix + f.name, _type_text(tp), _yaml(default)
        sub = _section(tp)
        if sub is not None:
            yield from keys(sub, prefix + f.name + ".")


def render() -> str:
    """The whole page; ValueError names a key without a meaning or a meaning without a key."""
    rows = list(keys())
    names = {k for k, _, _ in rows}
    missing = [k for k in names if k not in MEANINGS]
    extra = [k for k in MEANINGS if k not in names]
    if missing or extra:
        raise ValueError(f"utils/config_reference.py MEANINGS: no meaning for {sorted(missing)}; "
                         f"no such key for {sorted(extra)}")
    out = [
        "# Every config key",
        "",
        "<!-- Generated by `python -m utils.config_reference` from the config schema (utils/config.py); "
        "do not edit. -->",
        "",
        "Every key a config file may hold, its type, its default (what a key left out means) and what it does. "
        "Dotted keys are keys of a section (`optimizer.lr` is `lr:` under `optimizer:`), and the same dotted "
        "form works on the command line: `--set optimizer.lr=0.1`. An unknown key, a wrong type or a value out "
        "of range is one line and exit status 2, before anything runs. A section whose default is null is off "
        "until it is given; its keys' defaults apply once it is. One more key, `base:`, names a config file this "
        "one extends ([composed configs](configs.md#composed-configs)); it is resolved before the keys below.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, tp, default in rows:
        meaning = MEANINGS[key].replace("|", "\\|")
        shown = "—" if default == "(section)" else f"`{default}`"
        out.append(f"| `{key}` | {tp} | {shown} | {meaning} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.config_reference", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 when docs/config-reference.md is out of date")
    ns = p.parse_args(argv)
    text = render()
    if ns.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python -m utils.config_reference", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

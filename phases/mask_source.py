"""Mask transfer: dense A and its IMP mask from another config (``pruning.mask_from``).

The paper's rebuttal transferred a CIFAR-10 mask to SVHN: the mask M was found
by IMP on the source dataset, B is trained on the target dataset, and

    lth      = W_A(k) ⊙ M        (the source's whole ticket, trained on the target data)
    naive    = W_B(k) ⊙ M
    permuted = W_B(k) ⊙ π(M),    π matching the *source's* dense A to this config's B

π must map the units of the model the mask was pruned from (the source's A)
to B's: a permutation of this config's own A would reorder a basis M does not
live in. The matching runs on this config's data, the only data B knows.

In the graph, A and the IMP artifacts simply *are* the source config's (its
keys, its data, its settings), so a run that has them reuses them and one that
lacks them makes them with the source config, as a sweep of the source would.
Everything else keeps this config's settings. This module only resolves the
source config and checks it fits; ``phases/graph.py`` and the step functions
route through ``mask_owner``.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from data.info import dataset_info
from models.registry import model_settings
from utils.config import Config, config_from_dict, read_config_file
from utils.errors import UserError

# How and where things run, taken from this config: the source's artifacts live under this config's save_path
# (one artifact store per command; their keys keep them apart) and train on this machine's device.
RUNTIME_KEYS = ("save_path", "device", "threads", "num_workers", "compile", "eval_every")


class MaskTransferError(UserError):
    """A ``pruning.mask_from`` source that cannot give this config a mask; the message is one line."""


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int) -> Config:  # mtime_ns: an edited source is read again
    try:
        return config_from_dict(read_config_file(path), check_data=False)
    except UserError as err:
        raise MaskTransferError(f"pruning.mask_from.config {path}: {err}") from None


def source_config(cfg: Config) -> Config | None:
    """The config whose dense A and IMP mask ``cfg`` takes (with ``cfg``'s runtime keys), or None."""
    mf = cfg.pruning.mask_from
    if mf is None:
        return None
    path = Path(mf.config).expanduser().resolve()
    if not path.is_file():
        raise MaskTransferError(f"pruning.mask_from.config: {str(path)!r} not found")
    src = copy.deepcopy(_load(str(path), path.stat().st_mtime_ns))
    if src.pruning.mask_from is not None:
        raise MaskTransferError(f"pruning.mask_from.config: {path} takes its own mask from "
                                f"{src.pruning.mask_from.config}; name that config instead (one level only)")
    for key in RUNTIME_KEYS:
        setattr(src, key, getattr(cfg, key))
    check_transfer(cfg, src, str(path))
    return src


def mask_owner(cfg: Config, seed: int) -> tuple[Config, int]:
    """The (config, seed) that own dense A and the IMP mask of ``cfg`` at ``seed``: ``cfg`` itself without
    ``pruning.mask_from``."""
    src = source_config(cfg)
    if src is None:
        return cfg, seed
    owner_seed = seed if cfg.pruning.mask_from.seed is None else cfg.pruning.mask_from.seed
    src.seed = owner_seed
    return src, owner_seed


def check_transfer(cfg: Config, src: Config, path: str) -> None:
    """One clear line when ``src``'s mask cannot apply to ``cfg``'s model, or its A lacks a rewind point."""
    _check_shapes(json.dumps(model_settings(cfg)), cfg.dataset, json.dumps(model_settings(src)), src.dataset, path)
    for k in cfg.rewind_points:
        at = cfg.checkpoint_epoch(k)
        if at > src.epochs:
            raise MaskTransferError(f"rewind_points: lth at k={k} needs the source's dense A after {at} epochs, but "
                                    f"pruning.mask_from.config {path} trains epochs={src.epochs}")


@functools.lru_cache(maxsize=64)
def _check_shapes(ours: str, dataset: str, theirs: str, src_dataset: str, path: str) -> None:
    mine, other = json.loads(ours), json.loads(theirs)
    for key in ["model_type", "width_multiplier", *sorted((mine.keys() | other.keys()) - {"model_type",
                                                                                        "width_multiplier"})]:
        if mine.get(key) != other.get(key):
            raise MaskTransferError(f"pruning.mask_from: {key} differs: {other.get(key)!r} in the source "
                                    f"{path}, {mine.get(key)!r} here; a mask transfers between the same "
                                    "architecture only")
    shapes = _weight_shapes(ours, dataset)
    src_shapes = _weight_shapes(theirs, src_dataset)
    wrong = [n for n in shapes if shapes[n] != src_shapes.get(n)]
    if not wrong:
        return
    a, b = dataset_info(dataset), dataset_info(src_dataset)
    why = [f"{what} {getattr(b, attr)} vs {getattr(a, attr)}" for what, attr in
           (("classes", "num_classes"), ("input channels", "in_channels"), ("image size", "image_size"))
           if getattr(a, attr) != getattr(b, attr)]
    name = wrong[0]
    raise MaskTransferError(
        f"pruning.mask_from: dataset differs in shape: the source {path} has dataset {src_dataset!r}, this config "
        f"{dataset!r} ({', '.join(why) or 'other input'}), so weight {name} is {list(src_shapes.get(name, []))} "
        f"there and {list(shapes[name])} here; a mask transfers only between datasets whose weights have the same "
        "shapes")


def _weight_shapes(settings: str, dataset: str) -> dict[str, tuple[int, ...]]:
    """Shapes of the prunable weights, from a model built on the meta device (no memory, no init cost)."""
    import torch

    from models import build_model

    fields = json.loads(settings)
    probe = Config(dataset=dataset, **{k: v for k, v in fields.items()})
    with torch.device("meta"):
        model = build_model(probe)
    return {n: tuple(model.get_parameter(n).shape) for n in model.prunable_parameters()}

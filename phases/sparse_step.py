"""Phase-2 step: one sparse training run from rewind point k.

``lth``, ``naive``, ``permuted`` and ``random`` are one run type with
different weight and mask sources (``graph.SOURCES``, DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from data import Batch
from matching.interpolation import reset_bn_stats
from phases import graph
from phases.context import RunContext
from phases.dense import checkpoint_name
from phases.imp_step import load_masks
from phases.match_step import PERMUTED_MASK
from pruning.masks import Masks, random_masks_like, sparsity, weight_sparsity
from pruning.rescale import rescale_to_fan_in
from training.evaluate import accuracy_text
from training.loop import TrainSpec, train
from utils.artifacts import Artifact
from utils.config import RESCALED, REWIND_CONVENTIONS
from utils.seeding import derive_seed


def run_seed(art: Artifact) -> int:
    """A sparse run's run seed (its data order, its random mask): from its settings when they hold it, else the
    seed of the dense A its mask was pruned from (``SparseSettings.seed``), never the context's."""
    s = art.settings
    return s["seed"] if s.get("seed") is not None else graph.mask_seed(art.parents["mask"])


def run_masks(run: str, mask_art: Artifact, seed: int) -> Masks:
    """The mask ``run`` trains under: M_A, pi(M_A), or a random mask with M_A's per-layer density, drawn from
    the run seed ``seed``.

    From ``mask_art``, the run's ``mask`` parent: an IMP or a permuted-mask artifact.
    """
    which = graph.SOURCES[run][1]
    if which == "permuted_mask":
        return load_masks(mask_art, PERMUTED_MASK)
    mask_a = load_masks(mask_art)
    if which == "imp":
        return mask_a
    gen = torch.Generator().manual_seed(derive_seed(seed, "random-mask"))
    return random_masks_like(mask_a, gen)


@torch.no_grad()
def rescale_initialization(model: nn.Module, masks: Masks, bn_batches: Iterable[Batch]) -> None:
    """The rewound weights rescaled to variance 2 / kept fan-in per unit under ``masks``, then BN re-estimated.

    The BatchNorm running statistics were those of the dense network at k; after rescaling (and masking)
    they describe another network, so they are recomputed on ``bn_batches`` as interpolation does.
    """
    params = dict(model.named_parameters())
    for name, w in rescale_to_fan_in({n: params[n] for n in masks}, masks).items():
        params[name].copy_(w)
    reset_bn_stats(model, bn_batches)


def sparse_data_seed(seed: int, k: int, data_order: int | None) -> int:
    """The data order of a sparse run: the same for every run of one rewind point, or another one by index
    (``SparseSettings.data_order``: an ensemble's members train on data orders 1, 2, ...)."""
    if data_order is None:
        return derive_seed(seed, "sparse", k)
    return derive_seed(seed, "sparse", k, "order", data_order)


def checkpoint_epoch(settings: dict) -> int:
    """The dense epoch a sparse run's rewind point k means: k itself, or k + 1 under ``rewind_convention: released``."""
    return settings["rewind"] + REWIND_CONVENTIONS[settings["rewind_convention"]]


def make_sparse(ctx: RunContext, art: Artifact) -> None:
    s = art.settings
    run, k, epochs = s["run"], s["rewind"], s["epochs"]
    role, which = graph.SOURCES[run]
    at = checkpoint_epoch(s)
    model = ctx.load_model(art.parents["weights"], checkpoint_name(at))
    seed = run_seed(art)
    masks = {n: m.to(ctx.device) for n, m in run_masks(run, art.parents["mask"], seed).items()}
    if run.endswith(RESCALED):
        rescale_initialization(model, masks, ctx.data.eval_train_batches(s["rescale_bn_batches"]))
    # sparse_epochs - k under either convention, as the released code trained from its checkpoint "k" (the
    # weights after k + 1 epochs): `adjusted_sparse_epochs = sparse_epochs - k` on CIFAR, `89 - k` for ResNet50
    # (docs/paper.md). A released-convention run thus sees one dense epoch more in all.
    # The same data order for every run of one rewind point: the runs differ only in weights and mask. A fresh
    # schedule of the optimizer's type (cosine, or the released ResNet50 warm-up and steps) from sparse_lr.
    spec = TrainSpec(epochs=epochs, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"],
                     nesterov=s["nesterov"], seed=sparse_data_seed(seed, k, s.get("data_order")),
                     eval_every=ctx.cfg.eval_every, tag=f"sparse-{run}-{k}", **s["schedule"])
    print(f"[sparse k={k} {run}] W_{role}(k={k}: after {at} epochs) with mask {which}, {epochs} epochs at lr "
          f"{s['lr']}", flush=True)
    outcome = train(model, ctx.data, spec, name=f"sparse_{run}_k{k}", device=ctx.device, masks=masks,
                    state_path=art.path("train_state.safetensors"), metrics=ctx.metrics_for(art.dir),
                    step_fn=ctx.step_fn(model), progress=ctx.progress)
    ctx.save_model(art.path("final.safetensors"), model, {"run": run, "rewind": k})
    prunable = model.prunable_parameters()
    result = {**outcome.final.as_dict(), "rewind": k, "checkpoint_epoch": at, "run": run, "epochs": epochs,
              "mask_sparsity": sparsity(masks), "weight_sparsity": weight_sparsity(model.state_dict(), prunable)}
    art.finish(result)
    print(f"[sparse k={k} {run}] {accuracy_text(outcome.final, ctx.data.num_classes)}  "
          f"loss {result['loss']:.4f}")

"""Phase-2 step: one sparse training run from rewind point k.

``lth``, ``naive``, ``permuted`` and ``random`` are one run type with
different weight and mask sources (DESIGN §6).
"""

from __future__ import annotations

import torch

from phases.context import RunContext
from phases.dense import check_checkpoints, checkpoint_name, dense_artifact
from phases.imp_step import imp_artifact, load_masks
from phases.keys import sparse_key
from phases.match_step import match_artifact
from pruning.masks import Masks, random_masks_like, sparsity, weight_sparsity
from training.loop import TrainSpec, train
from utils.artifacts import Artifact
from utils.seeding import derive_seed

# run -> (whose weights at epoch k, which mask)
SOURCES = {
    "lth": ("A", "mask_a"),
    "naive": ("B", "mask_a"),
    "permuted": ("B", "mask_a_permuted"),
    "random": ("B", "random"),
}


def sparse_artifact(ctx: RunContext, k: int, run: str) -> Artifact:
    return Artifact(ctx.save_path, "sparse", sparse_key(ctx.cfg, ctx.seed, k, run))


def run_masks(ctx: RunContext, which: str) -> Masks:
    mask_a = load_masks(imp_artifact(ctx).path("mask.safetensors"))
    if which == "mask_a":
        return mask_a
    if which == "mask_a_permuted":
        return load_masks(match_artifact(ctx).path("mask_a_permuted.safetensors"))
    gen = torch.Generator().manual_seed(derive_seed(ctx.seed, "random-mask"))
    return random_masks_like(mask_a, gen)


def ensure_sparse(ctx: RunContext, k: int, run: str) -> Artifact:
    art = sparse_artifact(ctx, k, run)
    if art.complete:
        print(f"[sparse k={k} {run}] reusing {art.dir}")
        return art
    role, which = SOURCES[run]
    dense = dense_artifact(ctx, role)
    check_checkpoints(dense, (k,))
    art.begin()
    model = ctx.load_model(dense.path(checkpoint_name(k)))
    masks = {n: m.to(ctx.device) for n, m in run_masks(ctx, which).items()}
    o = ctx.cfg.optimizer
    epochs = ctx.cfg.total_sparse_epochs - k
    # The same data order for every run of one rewind point: the runs differ only in weights and mask.
    spec = TrainSpec(epochs=epochs, lr=o.sparse_lr, momentum=o.momentum, weight_decay=o.weight_decay,
                     nesterov=o.nesterov, seed=derive_seed(ctx.seed, "sparse", k),
                     eval_every=ctx.cfg.eval_every, tag=f"sparse-{run}-{k}")
    print(f"[sparse k={k} {run}] W_{role}(k={k}) with {which}, {epochs} epochs at lr {o.sparse_lr}")
    outcome = train(model, ctx.data, spec, name=f"sparse_{run}_k{k}", device=ctx.device, masks=masks,
                    state_path=art.path("train_state.safetensors"), metrics=ctx.metrics_for(art.dir),
                    step_fn=ctx.step_fn(model), progress=ctx.progress)
    ctx.save_model(art.path("final.safetensors"), model, {"run": run, "rewind": k})
    prunable = model.prunable_parameters()
    result = {**outcome.final.as_dict(), "rewind": k, "run": run, "epochs": epochs,
              "mask_sparsity": sparsity(masks), "weight_sparsity": weight_sparsity(model.state_dict(), prunable)}
    art.finish(result)
    art.remove_file("train_state.safetensors")
    print(f"[sparse k={k} {run}] test accuracy {result['accuracy']:.2f}%  loss {result['loss']:.4f}")
    return art

"""Phase-2 step: one sparse training run from rewind point k.

``lth``, ``naive``, ``permuted`` and ``random`` are one run type with
different weight and mask sources (``graph.SOURCES``, DESIGN §6).
"""

from __future__ import annotations

import torch

from phases import graph
from phases.context import RunContext
from phases.dense import checkpoint_name, ensure_checkpoint
from phases.imp_step import load_masks
from phases.match_step import PERMUTED_MASK
from pruning.masks import Masks, random_masks_like, sparsity, weight_sparsity
from training.loop import TrainSpec, train
from utils.artifacts import Artifact
from utils.seeding import derive_seed


def run_masks(ctx: RunContext, run: str) -> Masks:
    """The mask ``run`` trains under: M_A, pi(M_A), or a random mask with M_A's per-layer density."""
    which = graph.SOURCES[run][1]
    if which == "permuted_mask":
        return load_masks(graph.permuted_mask(ctx.cfg, ctx.seed), PERMUTED_MASK)
    mask_a = load_masks(graph.imp(ctx.cfg, ctx.seed))
    if which == "imp":
        return mask_a
    gen = torch.Generator().manual_seed(derive_seed(ctx.seed, "random-mask"))
    return random_masks_like(mask_a, gen)


def ensure_sparse(ctx: RunContext, k: int, run: str) -> Artifact:
    art = graph.sparse(ctx.cfg, ctx.seed, k, run)
    if not art.complete:
        ensure_checkpoint(ctx, graph.SOURCES[run][0], k)  # adds epoch k to the dense model if it lacks it
    return art.make_once(lambda a: make_sparse(ctx, a, k, run), f"[sparse k={k} {run}]")


def make_sparse(ctx: RunContext, art: Artifact, k: int, run: str) -> None:
    role, which = graph.SOURCES[run]
    model = ctx.load_model(art.parents["weights"], checkpoint_name(k))
    masks = {n: m.to(ctx.device) for n, m in run_masks(ctx, run).items()}
    o = ctx.cfg.optimizer
    epochs = ctx.cfg.total_sparse_epochs - k
    # The same data order for every run of one rewind point: the runs differ only in weights and mask.
    spec = TrainSpec(epochs=epochs, lr=o.sparse_lr, momentum=o.momentum, weight_decay=o.weight_decay,
                     nesterov=o.nesterov, seed=derive_seed(ctx.seed, "sparse", k),
                     eval_every=ctx.cfg.eval_every, tag=f"sparse-{run}-{k}")
    print(f"[sparse k={k} {run}] W_{role}(k={k}) with mask {which}, {epochs} epochs at lr {o.sparse_lr}",
          flush=True)
    outcome = train(model, ctx.data, spec, name=f"sparse_{run}_k{k}", device=ctx.device, masks=masks,
                    state_path=art.path("train_state.safetensors"), metrics=ctx.metrics_for(art.dir),
                    step_fn=ctx.step_fn(model), progress=ctx.progress)
    ctx.save_model(art.path("final.safetensors"), model, {"run": run, "rewind": k})
    prunable = model.prunable_parameters()
    result = {**outcome.final.as_dict(), "rewind": k, "run": run, "epochs": epochs,
              "mask_sparsity": sparsity(masks), "weight_sparsity": weight_sparsity(model.state_dict(), prunable)}
    art.finish(result)
    print(f"[sparse k={k} {run}] test accuracy {result['accuracy']:.2f}%  loss {result['loss']:.4f}")

"""Phase-1 step: match A to B, permute A's mask, check pi(A), measure interpolation."""

from __future__ import annotations

import copy
import warnings

import torch

from matching import activation_matching, interpolation_curve, loss_barrier, midpoint_accuracy, permute
from matching.weight_matching import weight_matching
from phases.context import RunContext
from phases.dense import dense_artifact
from phases.imp_step import imp_artifact, load_masks
from phases.keys import match_key
from training.evaluate import evaluate
from utils.artifacts import Artifact
from utils.checkpoint import load_tensors, save_tensors


def match_artifact(ctx: RunContext) -> Artifact:
    return Artifact(ctx.save_path, "match", match_key(ctx.cfg, ctx.seed))


def ensure_matching(ctx: RunContext) -> Artifact:
    art = match_artifact(ctx)
    if art.complete:
        print(f"[match] reusing {art.dir}")
        return art
    m = ctx.cfg.matching
    art.begin()
    a_art, b_art, imp_art = dense_artifact(ctx, "A"), dense_artifact(ctx, "B"), imp_artifact(ctx)
    model_a = ctx.load_model(a_art.path("final.safetensors"))
    model_b = ctx.load_model(b_art.path("final.safetensors"))
    spec = model_a.permutation_spec()
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    print(f"[match] {m.method} matching of A to B")
    if m.method == "activation":
        perms = activation_matching(model_a, model_b, ctx.data.eval_train_batches(m.num_batches), spec=spec)
    else:
        perms = weight_matching(spec, sd_a, sd_b, seed=m.seed, max_iter=m.max_iter)
    perms = {g: p.cpu() for g, p in perms.items()}
    sd_a_perm = permute(spec, sd_a, perms)

    # One scratch copy evaluates the permuted states, instead of reading A's file again for each.
    scratch = copy.deepcopy(model_a)
    # pi(A) is the same function as A: its accuracy must equal A's (up to float summation order).
    scratch.load_state_dict(sd_a_perm)
    a_result, ap_result = a_art.result(), evaluate(scratch, ctx.data.test_batches())
    if abs(ap_result.accuracy - a_result["accuracy"]) > 0.1:
        warnings.warn(f"pi(A) accuracy {ap_result.accuracy:.2f}% differs from A's {a_result['accuracy']:.2f}%: "
                      "the model's permutation spec may be wrong", stacklevel=1)

    masks = load_masks(imp_art.path("mask.safetensors"), device=ctx.device)
    masks_perm = {k: v.bool() for k, v in permute(spec, masks, perms).items()}
    sparse_a, _ = load_tensors(imp_art.path("model.safetensors"), device=ctx.device)
    scratch.load_state_dict(permute(spec, sparse_a, perms))
    sparse_perm_result = evaluate(scratch, ctx.data.test_batches())

    def train_batches():
        return ctx.data.eval_train_batches(m.interpolation_batches)

    print(f"[match] interpolating at alphas {m.alphas} (before and after matching)")
    before = interpolation_curve(model_b, sd_a, sd_b, m.alphas, train_batches, ctx.data.test_batches)
    after = interpolation_curve(model_b, sd_a_perm, sd_b, m.alphas, train_batches, ctx.data.test_batches)

    save_tensors(art.path("permutation.safetensors"), {g: p.long() for g, p in perms.items()},
                 {"groups": list(perms), "convention": "new unit i = old unit perm[i]"})
    save_tensors(art.path("mask_a_permuted.safetensors"), masks_perm)
    result = {
        "method": m.method,
        "A_permuted": ap_result.as_dict(),
        "A_sparse_permuted": sparse_perm_result.as_dict(),
        "midpoint_accuracy_before": midpoint_accuracy(before),
        "midpoint_accuracy_after": midpoint_accuracy(after),
        "test_loss_barrier_before": loss_barrier(before, "test_loss"),
        "test_loss_barrier_after": loss_barrier(after, "test_loss"),
        "train_loss_barrier_before": loss_barrier(before, "train_loss"),
        "train_loss_barrier_after": loss_barrier(after, "train_loss"),
        "curve_before": before,
        "curve_after": after,
        "moved_units": {g: int((p != torch.arange(p.numel())).sum()) for g, p in perms.items()},
    }
    art.finish(result)
    print(f"[match] pi(A) {ap_result.accuracy:.2f}% (A {a_result['accuracy']:.2f}%); midpoint accuracy "
          f"{result['midpoint_accuracy_before']:.2f}% before, {result['midpoint_accuracy_after']:.2f}% after")
    return art

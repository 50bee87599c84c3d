"""Phase-1 steps after IMP: the permutation pi (A to B), the permuted mask pi(M_A), interpolation curves.

Three artifacts, because they depend on different things: pi on dense A, dense
B and the matching settings only (so the four sparsities of one width share
it); pi(M_A) on pi and the IMP mask; the interpolation curves, a diagnostic,
on A, B, pi and their own grid, so changing the grid trains nothing.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator

import torch

from data import Batch, DataBundle
from matching import activation_matching, interpolation_curve, loss_barrier, midpoint_accuracy, permute
from matching.weight_matching import weight_matching
from phases.context import RunContext
from phases.dense import checkpoint_name
from phases.imp_step import load_masks
from training.device import autocast
from training.evaluate import evaluate
from utils.artifacts import Artifact
from utils.checkpoint import save_tensors
from utils.seeding import derive_seed

PERMUTATION = "permutation.safetensors"
PERMUTED_MASK = "mask_a_permuted.safetensors"


def load_permutation(art: Artifact) -> dict[str, torch.Tensor]:
    perms, _ = art.tensors(PERMUTATION)
    return perms


def b_model_file(art: Artifact) -> str:
    """The file of dense B a permutation artifact matches to: the final model, or the early-matching checkpoint."""
    b_epoch = art.settings.get("b_epoch")
    return "final.safetensors" if b_epoch is None else checkpoint_name(b_epoch)


def make_permutation(ctx: RunContext, art: Artifact) -> None:
    """pi matching dense A to dense B (or B's early checkpoint), by the method and batches its settings name."""
    m = art.settings
    a_art, b_art = art.parents["dense_a"], art.parents["dense_b"]
    model_a = ctx.load_model(a_art, "final.safetensors")
    model_b = ctx.load_model(b_art, b_model_file(art))
    spec = model_a.permutation_spec()
    when = "" if art.settings.get("b_epoch") is None else f" after {art.settings['b_epoch']} epochs"
    print(f"[match] {m['method']} matching of A to B{when}", flush=True)
    if m["method"] == "activation":
        batches = matching_batches(ctx.data, m["num_batches"], m["augment"], match_seed(art))
        perms = activation_matching(model_a, model_b, batches, spec=spec, std=m.get("std") or "pooled")
    else:
        perms = weight_matching(spec, model_a.state_dict(), model_b.state_dict(), seed=m["seed"],
                                max_iter=m["max_iter"])
    perms = {g: p.cpu() for g, p in perms.items()}
    # Under mask transfer A is the source config's, its recorded accuracy on the source's test set: measure it here.
    a_here = evaluate(model_a, ctx.data.test_batches()).as_dict() if ctx.owner() is not ctx else None
    # pi(A) is the same function as A: its accuracy must equal A's (up to float summation order).
    model_a.load_state_dict(permute(spec, model_a.state_dict(), perms))
    a_result, ap_result = a_here or a_art.result(), evaluate(model_a, ctx.data.test_batches())
    if abs(ap_result.accuracy - a_result["accuracy"]) > 0.1:
        warnings.warn(f"pi(A) accuracy {ap_result.accuracy:.2f}% differs from A's {a_result['accuracy']:.2f}%: "
                      "the model's permutation spec may be wrong", stacklevel=1)
    save_tensors(art.path(PERMUTATION), {g: p.long() for g, p in perms.items()},
                 {"groups": list(perms), "convention": "new unit i = old unit perm[i]"})
    art.finish({"method": m["method"], "A_permuted": ap_result.as_dict(), **({"A": a_here} if a_here else {}),
                "moved_units": {g: int((p != torch.arange(p.numel())).sum()) for g, p in perms.items()}})
    print(f"[match] pi(A) {ap_result.accuracy:.2f}% (A {a_result['accuracy']:.2f}%)")


def match_seed(art: Artifact) -> int:
    """The run seed a permutation's augmented batches come from: from its settings when they hold it, else the
    seed of its dense A (``MatchSettings.run_seed``), never the context's. An ensemble member matches A of seed s
    to B of seed s + i under run seed s, A's."""
    s = art.settings
    return s["run_seed"] if s.get("run_seed") is not None else art.parents["dense_a"].settings["seed"]


def matching_batches(data: DataBundle, num_batches: int, augment: bool, seed: int) -> Iterator[Batch]:
    """The ``matching.num_batches`` training batches activation matching correlates, as ``matching.augment`` says.

    Un-augmented: the training set in its fixed order (``eval_train_batches``).
    Augmented: shuffled, augmented training batches as training sees them (the
    paper matched on its augmented training loader), from a seed of their own
    derived from the run seed ``seed``, so the same run always matches on the
    same batches; past one epoch they continue into the next.
    """
    if not augment:
        return data.eval_train_batches(num_batches)
    return augmented_batches(data, num_batches, derive_seed(seed, "matching"))


def augmented_batches(data: DataBundle, count: int, seed: int) -> Iterator[Batch]:
    """The first ``count`` augmented training batches of epochs 0, 1, ... of a run seeded ``seed``."""
    left = count
    epoch = 0
    while left > 0:
        for batch in itertools.islice(data.train_batches(epoch, seed), left):
            left -= 1
            yield batch
        epoch += 1


def make_permuted_mask(ctx: RunContext, art: Artifact) -> None:
    perm_art, imp_art = art.parents["perm"], art.parents["imp"]
    model = ctx.new_model(0)
    spec = model.permutation_spec()
    perms = load_permutation(perm_art)
    masks = load_masks(imp_art)
    masks_perm = {k: v.bool() for k, v in permute(spec, masks, perms).items()}
    sparse_a, _ = imp_art.tensors("model.safetensors", device=ctx.device)
    model.load_state_dict(permute(spec, sparse_a, perms))
    result = evaluate(model, ctx.data.test_batches())  # the permuted sparse A: must equal IMP's accuracy
    save_tensors(art.path(PERMUTED_MASK), masks_perm)
    art.finish({"A_sparse_permuted": result.as_dict()})


def make_interpolation(ctx: RunContext, art: Artifact) -> None:
    s = art.settings
    model_b = ctx.load_model(art.parents["dense_b"], "final.safetensors")
    sd_a, _ = art.parents["dense_a"].tensors("final.safetensors", device=ctx.device)
    sd_b = model_b.state_dict()
    perms = load_permutation(art.parents["perm"])
    sd_a_perm = permute(model_b.permutation_spec(), sd_a, perms)

    def train_batches():
        return ctx.data.eval_train_batches(s["batches"])

    repair = bool(art.settings.get("repair"))
    print(f"[interp] interpolating at alphas {s['alphas']} (before and after matching{', REPAIR' if repair else ''})",
          flush=True)
    before = interpolation_curve(model_b, sd_a, sd_b, s["alphas"], train_batches, ctx.data.test_batches,
                                 repair=repair, evaluate=evaluate, autocast=autocast)
    after = interpolation_curve(model_b, sd_a_perm, sd_b, s["alphas"], train_batches, ctx.data.test_batches,
                                repair=repair, evaluate=evaluate, autocast=autocast)
    result = {
        "repair": repair,
        "midpoint_accuracy_before": midpoint_accuracy(before),
        "midpoint_accuracy_after": midpoint_accuracy(after),
        "test_loss_barrier_before": loss_barrier(before, "test_loss"),
        "test_loss_barrier_after": loss_barrier(after, "test_loss"),
        "train_loss_barrier_before": loss_barrier(before, "train_loss"),
        "train_loss_barrier_after": loss_barrier(after, "train_loss"),
        "curve_before": before,
        "curve_after": after,
    }
    art.finish(result)
    print(f"[interp] midpoint accuracy {result['midpoint_accuracy_before']:.2f}% before, "
          f"{result['midpoint_accuracy_after']:.2f}% after matching")

"""Global unstructured magnitude pruning over a model's prunable weights."""

from __future__ import annotations

import torch

from pruning.masks import Masks


@torch.no_grad()
def prune_global_magnitude(weights: dict[str, torch.Tensor], masks: Masks, amount: float) -> Masks:
    """Remove ``amount`` (a fraction) of the still-unmasked weights with the smallest |w|, globally.

    Like ``torch.nn.utils.prune.global_unstructured`` with L1Unstructured, the
    number removed is ``round(amount * remaining)``; exactly that many go, ties
    broken by position, so the reached sparsity is exact.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    names = sorted(masks)
    scores = torch.cat([
        torch.where(masks[n], weights[n].detach().abs().float(), torch.full_like(weights[n], float("inf"),
                                                                                 dtype=torch.float)).flatten()
        for n in names
    ])
    remaining = int(sum(int(masks[n].sum()) for n in names))
    n_prune = round(amount * remaining)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune > 0:
        # topk(largest=False) returns exactly n_prune indices; already-masked weights score +inf
        # so they are never chosen again.
        idx = torch.topk(scores, n_prune, largest=False, sorted=False).indices
        keep[idx] = False
    out, offset = {}, 0
    for n in names:
        size = masks[n].numel()
        out[n] = keep[offset:offset + size].view_as(masks[n]).to(masks[n].device) & masks[n]
        offset += size
    return out

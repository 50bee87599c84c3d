"""Rescaled initialization: each unit's kept weights to He-init variance under its sparse fan-in.

The released ``experiment_with_scaling.py`` ("the algorithm we constructed
for scaling the weights") meant to give every unit (output channel or output
neuron) of a masked weight the variance ``2 / fan_in``, with ``fan_in`` the
number of inputs its mask keeps: Kaiming-normal initialisation of the sparse
network, rather than of the dense one whose weights it was rewound to. As
released, its statistics are looked up under ``<layer>.weight_orig`` in a
dense model, whose parameters are named ``<layer>.weight``, so every layer is
skipped and the scaling never happens (docs/studies.md, "Rescaled
initialization"). This is what it meant, generic over masks.
"""

from __future__ import annotations

import torch

from pruning.masks import Masks


def fan_in_kept(mask: torch.Tensor) -> torch.Tensor:
    """Kept inputs per unit: ``mask[unit].sum()`` for every unit on axis 0 (int64, one per unit)."""
    if mask.dim() < 2:
        raise ValueError(f"a fan-in needs a weight of at least 2 dimensions, got shape {tuple(mask.shape)}")
    return mask.reshape(mask.shape[0], -1).sum(dim=1)


@torch.no_grad()
def rescale_to_fan_in(weights: dict[str, torch.Tensor], masks: Masks, gain: float = 2.0) -> dict[str, torch.Tensor]:
    """Every masked weight with each unit's kept entries at mean 0 and variance ``gain / fan_in_kept``.

    Unit = index on axis 0 (a conv's output channel, a linear layer's output
    neuron). Each unit's kept weights are centred and scaled by their own
    empirical (population) statistics, so the variance comes out exactly
    ``gain / fan_in_kept``, whatever the mask kept: the released script took
    the statistics of the whole dense row instead, which gives the target only
    in expectation and only for masks independent of the weights (not for an
    LTH mask, which keeps the largest ones). Masked entries are exactly zero.
    A unit whose kept weights have no spread (one kept input, or all equal)
    keeps their signs at magnitude ``sqrt(gain / fan_in_kept)`` (the target's
    second moment), a unit with no kept input is all zero. Tensors not in
    ``masks`` are not returned; the inputs are not modified.
    """
    out = {}
    for name, mask in masks.items():
        w = weights[name]
        if mask.shape != w.shape:
            raise ValueError(f"mask {name} has shape {tuple(mask.shape)}, weight {tuple(w.shape)}")
        keep = mask.reshape(mask.shape[0], -1).to(torch.float64)
        rows = w.reshape(w.shape[0], -1).to(torch.float64) * keep
        n = keep.sum(dim=1, keepdim=True)
        count = n.clamp(min=1)
        centred = (rows - rows.sum(dim=1, keepdim=True) / count) * keep
        var = (centred**2).sum(dim=1, keepdim=True) / count
        target = gain / count
        spread = var > 0
        scaled = torch.where(spread, centred * torch.sqrt(target / torch.where(spread, var, 1.0)),
                             torch.where(rows < 0, -1.0, 1.0) * torch.sqrt(target) * keep)
        out[name] = scaled.reshape(w.shape).to(w.dtype)
    return out

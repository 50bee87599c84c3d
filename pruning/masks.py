"""Masks: plain dicts of bool tensors keyed by parameter name, and their sparsity."""

from __future__ import annotations

import torch

Masks = dict[str, torch.Tensor]


def full_masks(weights: dict[str, torch.Tensor]) -> Masks:
    return {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}


def sparsity(masks: Masks) -> float:
    """Fraction of masked-out entries over all masked tensors (the paper's overall sparsity)."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


def layer_sparsity(masks: Masks) -> dict[str, float]:
    return {k: 1.0 - float(m.sum()) / m.numel() for k, m in masks.items()}


def weight_sparsity(state: dict[str, torch.Tensor], names: list[str]) -> float:
    """Fraction of exact zeros among the named weights (measures a model, not a mask)."""
    total = sum(state[n].numel() for n in names)
    zeros = sum(int((state[n] == 0).sum()) for n in names)
    return zeros / total if total else 0.0


def random_masks_like(masks: Masks, generator: torch.Generator) -> Masks:
    """Random masks with exactly the same number of kept weights per layer as ``masks``."""
    out = {}
    for name, m in masks.items():
        kept = int(m.sum())
        order = torch.randperm(m.numel(), generator=generator)
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[order[:kept]] = True
        out[name] = flat.view_as(m)
    return out

"""Keeping masked weights at exactly zero during training.

Masks are plain dicts of bool tensors keyed by parameter name. Gradients of
masked weights are zeroed before each optimizer step (so momentum buffers stay
zero there and weight decay has nothing to act on), and the weights are
multiplied by the mask after it, which makes "exactly zero" hold by
construction rather than by arithmetic luck. Both are single fused
``_foreach_mul_`` calls over all masked tensors.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskEnforcer:
    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        params = dict(model.named_parameters())
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise KeyError(f"masks name parameters the model does not have: {unknown[:5]}")
        self.names = sorted(masks)
        self.params = [params[n] for n in self.names]
        for name, p in zip(self.names, self.params, strict=True):
            if masks[name].shape != p.shape:
                raise ValueError(f"mask {name} has shape {tuple(masks[name].shape)}, weight {tuple(p.shape)}")
        # Factors take their weight's strides (e.g. channels_last), so the in-place products are
        # plain elementwise loops rather than strided gathers.
        self.factors = [torch.empty_like(p).copy_(masks[n]) for n, p in zip(self.names, self.params, strict=True)]

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.factors)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if len(grads) == len(self.params):
            torch._foreach_mul_(grads, self.factors)
        else:
            for p, f in zip(self.params, self.factors, strict=True):
                if p.grad is not None:
                    p.grad.mul_(f)

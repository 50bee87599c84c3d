"""The permutation spec: which axes of which tensors share which permutation group.

A model declares its spec once (``model.permutation_spec()``); everything in
``matching/`` is generic over it and never names an architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class PermutationSpec:
    """Declares the permutation symmetry of a model's state dict.

    ``axes`` maps every state-dict key that has at least one permuted axis to a
    tuple with one entry per tensor axis: the group name permuting that axis, or
    ``None`` for an axis that is not permuted. Keys not listed are left as they
    are (e.g. ``num_batches_tracked``, the input axis of the first layer).

    ``activations`` maps each group to the names of modules (as in
    ``model.named_modules()``) whose *output* carries that group's units on
    dimension 1. Activation matching correlates those outputs; a group with
    several modules (a residual stream) pools the samples of all of them.

    ``repeats`` maps a (key, axis) to a repeat factor ``r`` (1 when absent): that
    axis has ``r`` entries per unit of its group, unit ``i`` owning the block
    ``i*r .. i*r+r-1``. A linear layer after a flatten of a ``C x H x W`` map has
    such an input axis (``r = H*W``): permuting channel ``i`` moves its whole block.

    ``blocks`` maps a group to a block count ``k`` (1 when absent): its ``n`` units fall in ``k``
    consecutive blocks of ``n / k``, and its permutations keep every unit inside its block. A grouped
    convolution's output channels are such a group (channel ``i`` reads only the inputs of its
    convolution group), and so are the channels a GroupNorm normalises together.

    ``tied`` lists groups with blocks whose blocks all move alike: unit ``b*m + i`` goes to
    ``b*m + s(i)`` for one permutation ``s`` of the ``m`` units of a block. A grouped convolution's
    input channels are such a group, and its weight's input axis, which holds one block (shared by
    every convolution group), is listed in ``folded``: it is permuted by ``s``.

    ``observe`` (None: the model itself) maps a model to a module computing the same
    outputs from the same parameters in which every name in ``activations`` is a
    submodule run once per forward; a spec derived from a traced graph uses it to
    observe graph nodes (e.g. residual additions) that are no module's output. Such
    a view is for evaluation only (matching and checks run in eval mode).
    """

    axes: dict[str, tuple[str | None, ...]]
    activations: dict[str, list[str]] = field(default_factory=dict)
    repeats: dict[tuple[str, int], int] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)
    tied: frozenset[str] = frozenset()
    folded: frozenset[tuple[str, int]] = frozenset()
    observe: Callable[[nn.Module], nn.Module] | None = field(default=None, compare=False)

    def repeat(self, key: str, axis: int) -> int:
        """How many entries of ``key``'s ``axis`` belong to each unit of its group (usually 1)."""
        return self.repeats.get((key, axis), 1)

    def block_count(self, group: str) -> int:
        """How many blocks ``group``'s permutations keep their units in (usually 1: any permutation)."""
        return self.blocks.get(group, 1)

    def fold(self, key: str, axis: int) -> int:
        """How many times ``key``'s ``axis`` is smaller than its group (its block count if folded, else 1)."""
        if (key, axis) not in self.folded:
            return 1
        return self.block_count(self.axes[key][axis] or "")

    def axis_index(self, key: str, axis: int, p: torch.Tensor) -> torch.Tensor:
        """The index that moves ``key``'s ``axis`` by its group's permutation ``p``."""
        fold = self.fold(key, axis)
        if fold != 1:
            p = p[: p.numel() // fold]  # a tied permutation: its first block's, the same in every block
        return expand_permutation(p, self.repeat(key, axis))

    def observable(self, model: nn.Module) -> nn.Module:
        """The module whose submodules ``activations`` names: ``observe(model)``, or ``model`` itself."""
        return model if self.observe is None else self.observe(model)

    @property
    def groups(self) -> dict[str, list[tuple[str, int]]]:
        """Group name -> every (key, axis) it permutes, in declaration order."""
        out: dict[str, list[tuple[str, int]]] = {}
        for key, axes in self.axes.items():
            for axis, group in enumerate(axes):
                if group is not None:
                    out.setdefault(group, []).append((key, axis))
        return out


def expand_permutation(p: torch.Tensor, repeat: int) -> torch.Tensor:
    """The index of an axis with ``repeat`` entries per unit moved by the unit permutation ``p``."""
    if repeat == 1:
        return p
    return (p[:, None] * repeat + torch.arange(repeat, device=p.device)).reshape(-1)

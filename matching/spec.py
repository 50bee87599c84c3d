"""The permutation spec: which axes of which tensors share which permutation group.

A model declares its spec once (``model.permutation_spec()``); everything in
``matching/`` is generic over it and never names an architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """

    axes: dict[str, tuple[str | None, ...]]
    activations: dict[str, list[str]] = field(default_factory=dict)

    @property
    def groups(self) -> dict[str, list[tuple[str, int]]]:
        """Group name -> every (key, axis) it permutes, in declaration order."""
        out: dict[str, list[tuple[str, int]]] = {}
        for key, axes in self.axes.items():
            for axis, group in enumerate(axes):
                if group is not None:
                    out.setdefault(group, []).append((key, axis))
        return out

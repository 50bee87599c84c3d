"""Permutation specs and their generic application (import-light: torch only)."""

from matching.activation_matching import activation_matching
from matching.check import SpecError, check_spec
from matching.interpolation import (
    error_barrier,
    interpolate_state,
    interpolation_curve,
    loss_barrier,
    midpoint_accuracy,
    reset_bn_stats,
)
from matching.permute import (
    compose,
    group_sizes,
    identity_permutations,
    invert,
    permute,
    random_permutations,
)
from matching.repair import repair, repair_points
from matching.spec import PermutationSpec
from matching.weight_matching import match_weights, weight_matching, weight_matching_objective


def __getattr__(name: str) -> object:
    # matching.derive is imported on first use: so ``python -m matching.derive`` runs it as the one copy
    if name in ("derive_spec", "UntraceableModelError"):
        from matching import derive

        return getattr(derive, name)
    raise AttributeError(f"module 'matching' has no attribute {name!r}")

__all__ = [
    "PermutationSpec",
    "SpecError",
    "check_spec",
    "derive_spec",
    "UntraceableModelError",
    "compose",
    "group_sizes",
    "identity_permutations",
    "invert",
    "permute",
    "random_permutations",
    "activation_matching",
    "error_barrier",
    "interpolate_state",
    "interpolation_curve",
    "loss_barrier",
    "match_weights",
    "midpoint_accuracy",
    "repair",
    "repair_points",
    "reset_bn_stats",
    "weight_matching",
    "weight_matching_objective",
]


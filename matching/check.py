"""Checking a permutation spec against the model it describes (a spec is checked, not trusted).

``check_spec`` verifies that the spec names real tensors with the right ranks, that each
group has one size, that the declared activation modules exist and carry their group, and
that permuting the model by random permutations leaves its outputs unchanged. Before the
invariance test every 1-D floating tensor (biases, BatchNorm affine parameters and running
statistics) is set to random values, so a tensor the spec forgot changes the output instead
of hiding behind a constant initialisation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from matching.permute import Perms, group_sizes, permute, random_permutations
from matching.spec import PermutationSpec

__all__ = ["SpecError", "check_spec", "random_permutations"]


class SpecError(ValueError):
    """A permutation spec does not describe its model's symmetry."""


def check_spec(
    model: nn.Module,
    spec: PermutationSpec,
    example_input: torch.Tensor,
    *,
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    diagnose: bool = True,
) -> None:
    """Raise ``SpecError`` with a clear message unless ``spec`` is an exact symmetry of ``model``.

    The model itself is not modified (a copy is randomised and permuted, in eval mode).
    Outputs are compared with ``rtol`` and ``atol`` scaled by the output's magnitude.
    If the spec declares activations at all, every group must have at least one.
    When the outputs change and ``diagnose`` is set, each group is then permuted alone
    (one forward pass per group) to name the groups at fault.
    """
    state = model.state_dict()
    sizes = _check_structure(spec, state)
    _check_activation_modules(spec.observable(model), spec, sizes)

    generator = torch.Generator().manual_seed(seed)
    probe = copy.deepcopy(model).eval()
    _randomise_vectors(probe, generator)
    reference = {k: v.clone() for k, v in probe.state_dict().items()}
    perms = _nontrivial(random_permutations(spec, reference, generator), generator, spec)

    out0, acts0 = _run(probe, spec, example_input, sizes)
    if not bool(torch.isfinite(out0).all()):
        raise SpecError("the model's output on the example input is not finite; cannot check invariance")
    probe.load_state_dict(permute(spec, reference, perms))
    out1, acts1 = _run(probe, spec, example_input, sizes)

    if not _close(out1, out0, rtol, atol):
        if diagnose:
            culprits = []
            for group, p in perms.items():
                probe.load_state_dict(permute(spec, reference, {group: p}))
                if not _close(_run(probe, spec, example_input, sizes)[0], out0, rtol, atol):
                    culprits.append(group)
            blame = f"groups that break invariance on their own: {culprits or 'none (an interaction)'}"
        else:
            blame = "groups not diagnosed"
        raise SpecError(
            f"permuting the model by random permutations changed its outputs (max abs diff "
            f"{(out1 - out0).abs().max().item():.3g}); {blame}. A tensor carrying such a group's "
            "units is missing from the spec, or an axis is given the wrong group."
        )
    for group, modules in spec.activations.items():
        for name in modules:
            expected = acts0[name].index_select(1, perms[group].to(acts0[name].device))
            if not _close(acts1[name], expected, rtol, atol):
                raise SpecError(
                    f"activation module {name!r} of group {group!r}: its output does not move with "
                    f"the group's permutation on dim 1, so it does not carry {group!r}'s units"
                )


def _check_structure(spec: PermutationSpec, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    for key, axes in spec.axes.items():
        if key not in state:
            raise SpecError(f"the spec names {key!r}, which is not in the model's state dict")
        if state[key].ndim != len(axes):
            raise SpecError(
                f"{key!r} has shape {tuple(state[key].shape)} but the spec gives {len(axes)} axes: {axes}"
            )
    try:
        return group_sizes(spec, state)
    except ValueError as e:
        raise SpecError(str(e)) from None


def _check_activation_modules(model: nn.Module, spec: PermutationSpec, sizes: Mapping[str, int]) -> None:
    modules = dict(model.named_modules())
    owner: dict[str, str] = {}
    for group, names in spec.activations.items():
        for name in names:
            if owner.setdefault(name, group) != group:
                raise SpecError(
                    f"activation module {name!r} is declared for groups {owner[name]!r} and {group!r}"
                )
        if group not in sizes:
            raise SpecError(f"activations are declared for group {group!r}, which permutes no tensor")
        for name in names:
            if name not in modules:
                raise SpecError(f"activation module {name!r} of group {group!r} is not a module of the model")
    if spec.activations:
        missing = [g for g in sizes if not spec.activations.get(g)]
        if missing:
            raise SpecError(f"groups without activation modules: {missing}")


def _randomise_vectors(model: nn.Module, generator: torch.Generator) -> None:
    """Give every 1-D floating tensor random, unit-distinguishing values (positive ones stay positive)."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.ndim != 1 or not tensor.is_floating_point():
                continue
            if bool((tensor > 0).all()):  # e.g. running_var, BatchNorm weight at init
                noise = torch.empty(tensor.shape).uniform_(0.5, 1.5, generator=generator)
                tensor.mul_(noise.to(tensor))
            else:
                tensor.add_(0.2 * torch.randn(tensor.shape, generator=generator).to(tensor))


def _nontrivial(perms: Perms, generator: torch.Generator, spec: PermutationSpec) -> Perms:
    """Replace an identity draw (likely for tiny groups) by a random cyclic shift (of the first block)."""
    out = {}
    for group, p in perms.items():
        size = p.numel() // spec.block_count(group)
        if size > 1 and torch.equal(p, torch.arange(p.numel())):
            shift = int(torch.randint(1, size, (1,), generator=generator))
            p = p.clone()
            for start in range(0, p.numel(), size) if group in spec.tied else (0,):
                p[start : start + size] = torch.roll(p[start : start + size], shift)
        out[group] = p
    return out


def _run(
    model: nn.Module, spec: PermutationSpec, x: torch.Tensor, sizes: Mapping[str, int]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = spec.observable(model).eval()  # the same parameters; names every activation module
    modules = dict(model.named_modules())
    raw: dict[str, object] = {}
    calls: dict[str, int] = {}
    handles = []
    for name in {n for names in spec.activations.values() for n in names}:

        def hook(_m: nn.Module, _inp: object, out: object, name: str = name) -> None:
            raw[name] = out.detach().clone() if isinstance(out, torch.Tensor) else out
            calls[name] = calls.get(name, 0) + 1

        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    acts: dict[str, torch.Tensor] = {}
    for group, names in spec.activations.items():
        for name in names:
            if name not in raw:
                raise SpecError(f"activation module {name!r} of group {group!r} was not called by forward")
            if calls[name] > 1:
                raise SpecError(
                    f"activation module {name!r} of group {group!r} runs {calls[name]} times per forward, "
                    "so its hook sees several tensors: give each use its own module"
                )
            act = raw[name]
            if not isinstance(act, torch.Tensor) or act.ndim < 2:
                raise SpecError(f"activation module {name!r} of group {group!r} does not output a batch")
            if act.shape[1] != sizes[group]:
                raise SpecError(
                    f"activation module {name!r} outputs {act.shape[1]} channels on dim 1 but group "
                    f"{group!r} has {sizes[group]} units"
                )
            acts[name] = act
    return out.float(), acts


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    scale = max(1.0, b.abs().max().item())
    return bool(torch.isfinite(a).all()) and torch.allclose(a, b, rtol=rtol, atol=atol * scale)

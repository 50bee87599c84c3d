"""REPAIR (Jordan et al. 2022): undo the variance collapse of an interpolated network.

Averaging the weights of two aligned networks shrinks the spread of each
unit's pre-activation (its channels' standard deviations), and the collapse
compounds with depth. REPAIR sets, in the interpolated network
``theta(alpha)``, each channel's pre-activation mean and standard deviation to
the alpha-interpolation of the two endpoints' statistics:
``mean* = (1-alpha) mean_A + alpha mean_B`` and ``std* = (1-alpha) std_A + alpha std_B``.

Where the pre-activations are is read from the model's structure and its
permutation spec, never from an architecture name:

* every BatchNorm: in a network with BatchNorm its output is the pre-activation;
* every conv or linear layer whose output units form a permutation group that
  has no BatchNorm in the spec (a network without BatchNorm: VGG11, an MLP).
  The classifier's outputs are no group, so they are left as they are.

(The spec's ``activations`` name where matching observes a group, which is after
the nonlinearity; REPAIR needs the pre-activations, so it uses the layers that
produce the group instead.)

The correction of a channel is the affine map ``y -> s (y - mean) + mean*`` with
``s = std* / std`` (``mean``, ``std``: the interpolated network's statistics
there), folded into the layer's own weight (scaled along its output axis) and
bias; a layer without a bias gets one. So the repaired network is the same
architecture, and masked (zero) weights stay zero.

Statistics are measured in eval mode over the given batches, each spatial
position counting as a sample, accumulated in float64. Points are repaired one
after another in the order the forward pass reaches them, each measured after
every earlier one has been fixed (a correction upstream changes the statistics
downstream): so after ``repair`` every channel's statistics on those batches
equal their targets to float precision. The price is one (truncated) pass over
the batches per point, instead of one pass in all as the original's
training-mode BatchNorm trick takes, whose result only approximates the
targets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from matching.spec import PermutationSpec

# A channel whose std is below this (a dead unit, constant on the data) keeps its scale: only its mean moves.
_MIN_STD = 1e-8


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and (population) standard deviation of one layer's output, float64 on the CPU."""

    mean: torch.Tensor
    std: torch.Tensor


Autocast = Callable[[torch.device], contextlib.AbstractContextManager]  # device -> the context a forward runs in


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def interpolate_stats(a: Mapping[str, ChannelStats], b: Mapping[str, ChannelStats],
                      alpha: float) -> dict[str, ChannelStats]:
    """REPAIR's targets: means and standard deviations each interpolated linearly, point by point."""
    return {n: ChannelStats((1 - alpha) * a[n].mean + alpha * b[n].mean, (1 - alpha) * a[n].std + alpha * b[n].std)
            for n in a}


def repair_points(model: nn.Module, spec: PermutationSpec | None = None) -> list[str]:
    """The modules whose outputs REPAIR corrects (see the module docstring), in ``named_modules`` order.

    ``spec`` defaults to ``model.permutation_spec()``. A model with BatchNorm
    needs no spec for its BatchNorms; conv/linear points come only from it.
    """
    if spec is None and hasattr(model, "permutation_spec"):
        spec = model.permutation_spec()
    modules = dict(model.named_modules())
    bns = {n for n, m in modules.items() if isinstance(m, _BatchNorm)}
    # (module, group of its output units) for every module whose weight's first axis is permuted
    outputs = [(key[: -len(".weight")], axes[0]) for key, axes in (spec.axes if spec is not None else {}).items()
               if key.endswith(".weight") and axes and axes[0] is not None]
    groups_with_bn = {group for name, group in outputs if name in bns}
    producers = {name for name, group in outputs if isinstance(modules.get(name), nn.Conv1d | nn.Conv2d | nn.Linear)
                 and group not in groups_with_bn}
    points = [n for n in modules if n in producers or n in bns]
    if not points:
        raise ValueError("REPAIR found no layer to correct: the model has no BatchNorm and its permutation spec "
                         "names no conv/linear layer with permuted outputs")
    for n in points:
        m = modules[n]
        if isinstance(m, _BatchNorm) and not m.affine:
            raise ValueError(f"REPAIR needs an affine BatchNorm at {n!r} to fold its correction into")
    return points


class _StopForward(Exception):
    """Raised by a hook once the last point a pass needs has been measured: the rest of the forward is skipped."""


class _Accumulator:
    """Per-channel count, mean and sum of squared deviations over batches (Chan's pooling, float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, y: torch.Tensor) -> None:
        # channels on dim 1; every other position (batch, spatial) is a sample
        y = y.detach().float().transpose(0, 1).reshape(y.shape[1], -1)
        nb = y.shape[1]
        mb = y.mean(dim=1)
        m2b = ((y - mb[:, None]) ** 2).sum(dim=1)
        mb, m2b = mb.double().cpu(), m2b.double().cpu()
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def stats(self) -> ChannelStats:
        if self.mean is None:
            raise ValueError("no samples")
        return ChannelStats(self.mean, (self.m2 / self.n).clamp_min(0).sqrt())


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def channel_stats(model: nn.Module, points: Sequence[str], batches: Iterable[Any],
                  truncate: bool = False, autocast: Autocast = no_autocast) -> dict[str, ChannelStats]:
    """Per-channel output statistics of the modules ``points`` over ``batches``, in eval mode (mode restored).

    ``truncate``: stop each forward once every point has fired (the layers after
    them do not change their statistics). ``autocast(device)``: the context each
    forward runs in (the caller's precision, e.g. bf16 autocast; none by default).
    """
    modules = dict(model.named_modules())
    accs = {n: _Accumulator() for n in points}
    device = _device(model)
    fired: set[str] = set()

    def hook_for(name: str) -> Callable:
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            # read at once: an in-place ReLU after this layer will overwrite ``out``
            accs[name].add(out)
            fired.add(name)
            if truncate and len(fired) == len(accs):
                raise _StopForward

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in points]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in batches:
            fired.clear()
            x = _inputs(batch).to(device)
            try:
                with autocast(device):
                    model(x)
            except _StopForward:
                pass
            seen += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("channel_stats got no batches")
    missing = [n for n in points if accs[n].mean is None]
    if missing:
        raise ValueError(f"REPAIR: the forward pass never reached {missing[:3]}")
    return {n: a.stats() for n, a in accs.items()}


def forward_order(model: nn.Module, points: Sequence[str], batch: Any) -> list[str]:
    """``points`` in the order one forward pass reaches them (points it never reaches are an error)."""
    modules = dict(model.named_modules())
    order: list[str] = []
    handles = [modules[n].register_forward_hook(lambda *_, n=n: order.append(n) if n not in order else None)
               for n in points]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_inputs(batch).to(_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = [n for n in points if n not in order]
    if missing:
        raise ValueError(f"REPAIR: the forward pass never reached {missing[:3]}")
    return order


@torch.no_grad()
def fold_affine(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make ``module``'s output ``y`` become ``scale * y + shift`` per output channel, in its own parameters."""
    weight = module.weight
    scale = scale.to(device=weight.device, dtype=weight.dtype)
    shift = shift.to(device=weight.device, dtype=weight.dtype)
    weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))))
    if module.bias is None:
        module.bias = nn.Parameter(shift.clone())
    else:
        module.bias.mul_(scale).add_(shift)


def repair(model: nn.Module, targets: Mapping[str, ChannelStats], batches_fn: Callable[[], Iterable[Any]],
           autocast: Autocast = no_autocast) -> None:
    """Set each point's per-channel output mean/std (``targets``: module name -> stats) on ``batches_fn()``'s data.

    In place. Points are fixed in forward order, each measured after the ones
    before it are fixed, so the statistics hold jointly (to float precision) on
    those batches. ``batches_fn`` returns a fresh iterable each call.
    """
    modules = dict(model.named_modules())
    first = next(iter(batches_fn()), None)
    if first is None:
        raise ValueError("repair got no batches")
    for name in forward_order(model, list(targets), first):
        now = channel_stats(model, [name], batches_fn(), truncate=True, autocast=autocast)[name]
        goal = targets[name]
        live = now.std > _MIN_STD
        scale = torch.where(live, goal.std / now.std.clamp_min(_MIN_STD), torch.ones_like(now.std))
        fold_affine(modules[name], scale, goal.mean - scale * now.mean)


def endpoint_stats(model: nn.Module, state: Mapping[str, torch.Tensor], points: Sequence[str],
                   batches: Iterable[Any], autocast: Autocast = no_autocast) -> dict[str, ChannelStats]:
    """The statistics of ``points`` in ``model`` holding ``state`` (``model`` is a scratch copy: it is changed)."""
    model.load_state_dict(state)
    return channel_stats(model, points, batches, autocast=autocast)

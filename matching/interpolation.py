"""Linear interpolation between two networks, BatchNorm statistics reset, and the loss barrier.

The loss barrier (the paper's Eq. 3) is ``max_alpha L(alpha) - ((1-alpha) L(0) + alpha L(1))``
along ``theta(alpha) = (1-alpha) theta_A + alpha theta_B``. Interpolated BatchNorm
running statistics are not the statistics of the interpolated network, so by
default they are recomputed on training data at every alpha (as in REPAIR).
With ``repair=True`` every alpha's network is also REPAIRed (``matching.repair``):
each channel's pre-activation mean and std set to the alpha-interpolation of the
endpoints' (``matching/repair.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from matching.repair import Autocast, endpoint_stats, interpolate_stats, no_autocast, repair_points
from matching.repair import repair as repair_network
from matching.spec import PermutationSpec


def interpolate_state(
    sd_a: Mapping[str, torch.Tensor], sd_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1-alpha) A + alpha B`` on floating tensors; other tensors (integer buffers) are taken from B.

    ``torch.lerp`` is exact at both ends: alpha=0 returns A's values, alpha=1 B's.
    """
    if set(sd_a) != set(sd_b):
        diff = sorted(set(sd_a) ^ set(sd_b))
        raise KeyError(f"state dicts have different keys: {diff[:5]}")
    out: dict[str, torch.Tensor] = {}
    for key, b in sd_b.items():
        a = sd_a[key]
        if a.shape != b.shape:
            raise ValueError(f"{key!r}: shape {tuple(a.shape)} in A but {tuple(b.shape)} in B")
        if b.is_floating_point():
            out[key] = torch.lerp(a.to(device=b.device, dtype=b.dtype), b, float(alpha))
        else:
            out[key] = b.clone()
    return out


def _batch_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def reset_bn_stats(model: nn.Module, batches: Iterable[Any], max_batches: int | None = None) -> None:
    """Recompute every BatchNorm's running statistics on ``batches`` (pairs ``(x, y)`` or inputs).

    The statistics become the plain average over batches of the batch mean and
    (unbiased) batch variance: momentum is set to None for the pass, the model
    runs in train mode under ``no_grad``, then momentum and every module's
    mode are restored. A model without BatchNorm is left untouched.
    """
    bns = _batch_norms(model)
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    modes = [(m, m.training) for m in model.modules()]
    device = _model_device(model)
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        seen = 0
        for batch in batches:
            if max_batches is not None and seen >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            seen += 1
        if seen == 0:
            raise ValueError("reset_bn_stats got no batches")
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for m, mode in modes:
            m.training = mode


def interpolation_curve(
    model: nn.Module,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    alphas: Sequence[float],
    train_batches_fn: Callable[[], Iterable[Any]],
    test_batches_fn: Callable[[], Iterable[Any]],
    reset_bn: bool = True,
    repair: bool = False,
    spec: PermutationSpec | None = None,
    *,
    evaluate: Callable[[nn.Module, Iterable[Any]], Any],
    autocast: Autocast = no_autocast,
) -> list[dict[str, float]]:
    """Train and test loss/accuracy of the interpolated network at each alpha.

    ``model`` only supplies the architecture: the states are loaded into a
    deep copy, so the caller's model is not changed. ``train_batches_fn`` and
    ``test_batches_fn`` return a fresh iterable of ``(x, y)`` on each call; the
    training batches reset BatchNorm statistics (when ``reset_bn``), give the
    training loss and, with ``repair``, the statistics REPAIR measures and sets
    (the endpoints' once, then each alpha's network's; ``spec`` defaults to the
    model's permutation spec). ``evaluate(model, batches)`` gives a network's loss
    and accuracy (in percent); ``autocast(device)`` is the context REPAIR's
    forwards run in. Both come from the caller: matching imports no training code.
    """
    scratch = copy.deepcopy(model)
    has_bn = bool(_batch_norms(scratch))
    if repair:
        points = repair_points(scratch, spec)
        stats_a = endpoint_stats(scratch, sd_a, points, train_batches_fn(), autocast)
        stats_b = endpoint_stats(scratch, sd_b, points, train_batches_fn(), autocast)
    curve = []
    for alpha in alphas:
        if repair:  # REPAIR may give a bias-free layer a bias: start each alpha from the bare architecture
            scratch = copy.deepcopy(model)
        scratch.load_state_dict(interpolate_state(sd_a, sd_b, alpha))
        if reset_bn and has_bn:
            reset_bn_stats(scratch, train_batches_fn())
        if repair:
            repair_network(scratch, interpolate_stats(stats_a, stats_b, alpha), train_batches_fn, autocast)
        train = evaluate(scratch, train_batches_fn())
        test = evaluate(scratch, test_batches_fn())
        curve.append(
            {
                "alpha": float(alpha),
                "train_loss": train.loss,
                "train_accuracy": train.accuracy,
                "test_loss": test.loss,
                "test_accuracy": test.accuracy,
            }
        )
    return curve


def _at_alpha(curve: Sequence[Mapping[str, float]], alpha: float, key: str) -> float:
    for point in curve:
        if abs(point["alpha"] - alpha) < 1e-9:
            return float(point[key])
    raise ValueError(f"the curve has no point at alpha={alpha}")


def loss_barrier(curve: Sequence[Mapping[str, float]], key: str = "test_loss") -> float:
    """``max_alpha L(alpha) - ((1-alpha) L(0) + alpha L(1))`` over the curve's points (Eq. 3).

    The curve must contain alpha=0 and alpha=1; since those points contribute
    0, the barrier is never negative.
    """
    start, end = _at_alpha(curve, 0.0, key), _at_alpha(curve, 1.0, key)
    return max(float(p[key]) - ((1.0 - p["alpha"]) * start + p["alpha"] * end) for p in curve)


def error_barrier(curve: Sequence[Mapping[str, float]], split: str = "test") -> float:
    """The 0-1 error barrier (the paper's Fig. 4), in percentage points: Eq. 3 on ``100 - accuracy``."""
    key = f"{split}_accuracy"
    return loss_barrier([{"alpha": p["alpha"], "error": 100.0 - float(p[key])} for p in curve], "error")


def midpoint_accuracy(curve: Sequence[Mapping[str, float]], key: str = "test_accuracy") -> float:
    """The curve's value of ``key`` at alpha=0.5 (the interpolation midpoint)."""
    return _at_alpha(curve, 0.5, key)

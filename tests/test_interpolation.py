"""Interpolation between two networks: endpoints, BatchNorm reset by hand, the loss barrier."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from matching import (
    interpolate_state,
    interpolation_curve,
    loss_barrier,
    midpoint_accuracy,
    reset_bn_stats,
)
from training.evaluate import evaluate

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _batches(seed: int, n: int = 3, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append((torch.randn(size, 5, generator=g) * 2 + 1, torch.randint(0, 3, (size,), generator=g)))
    return out


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _metrics(model: nn.Module, train, test) -> dict[str, float]:
    tr, te = evaluate(model, train), evaluate(model, test)
    return {
        "train_loss": tr.loss,
        "train_accuracy": tr.accuracy,
        "test_loss": te.loss,
        "test_accuracy": te.accuracy,
    }


def test_interpolate_state_endpoints_are_exact_and_integers_come_from_b():
    a, b = _bn_net(0), _bn_net(1)
    sa, sb = _state(a), _state(b)
    sb["1.num_batches_tracked"].fill_(7)
    at0, at1 = interpolate_state(sa, sb, 0.0), interpolate_state(sa, sb, 1.0)
    for key in sa:
        if sa[key].is_floating_point():
            assert torch.equal(at0[key], sa[key]) and torch.equal(at1[key], sb[key])
    mid = interpolate_state(sa, sb, 0.5)
    assert torch.allclose(mid["0.weight"], (sa["0.weight"] + sb["0.weight"]) / 2)
    assert int(mid["1.num_batches_tracked"]) == 7 and mid["1.num_batches_tracked"].dtype == torch.long
    with pytest.raises(KeyError):
        interpolate_state(sa, {k: v for k, v in sb.items() if k != "0.bias"}, 0.5)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(alpha=st.floats(min_value=0.0, max_value=1.0), seed=st.integers(0, 1000))
def test_interpolate_state_is_the_convex_combination(alpha, seed):
    g = torch.Generator().manual_seed(seed)
    sa = {"w": torch.randn(4, 3, generator=g)}
    sb = {"w": torch.randn(4, 3, generator=g)}
    out = interpolate_state(sa, sb, alpha)["w"]
    assert torch.allclose(out, (1 - alpha) * sa["w"] + alpha * sb["w"], atol=1e-6)
    lo, hi = torch.minimum(sa["w"], sb["w"]), torch.maximum(sa["w"], sb["w"])
    assert bool(((out >= lo - 1e-6) & (out <= hi + 1e-6)).all())


def test_reset_bn_stats_equals_statistics_computed_by_hand():
    model = _bn_net(0)
    batches = _batches(1)
    bn = model[1]
    bn.running_mean.fill_(5.0)
    model.eval()
    reset_bn_stats(model, batches)
    with torch.no_grad():
        feats = [model[0](x) for x, _ in batches]
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)
    assert torch.allclose(bn.running_var, var, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training and not bn.training
    # one batch: exactly the batch's mean and unbiased variance
    reset_bn_stats(model, batches[:1])
    assert torch.allclose(bn.running_mean, feats[0].mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, feats[0].var(0, unbiased=True), atol=1e-5)


def test_reset_bn_stats_max_batches_and_bare_inputs():
    model = _bn_net(0)
    batches = _batches(2, n=4)
    reset_bn_stats(model, [x for x, _ in batches], max_batches=1)
    with torch.no_grad():
        expected = model[0](batches[0][0]).mean(0)
    assert torch.allclose(model[1].running_mean, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no batches"):
        reset_bn_stats(model, [])
    assert model[1].momentum == 0.1


def test_reset_bn_stats_without_batchnorm_changes_nothing():
    model = _mlp(0).train()
    before = _state(model)
    reset_bn_stats(model, _batches(0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_curve_endpoints_give_each_model_metrics_and_leave_the_model_alone():
    a, b = _mlp(0), _mlp(1)
    train, test = _batches(10), _batches(11)
    holder = _mlp(2)
    before = _state(holder)
    curve = interpolation_curve(holder, _state(a), _state(b), ALPHAS, lambda: iter(train), lambda: iter(test),
                                evaluate=evaluate)
    assert [p["alpha"] for p in curve] == ALPHAS
    for point, model in ((curve[0], a), (curve[-1], b)):
        expected = _metrics(model, train, test)
        for key, value in expected.items():
            assert point[key] == pytest.approx(value, abs=1e-6), key
    assert all(torch.equal(before[k], v) for k, v in holder.state_dict().items())
    assert midpoint_accuracy(curve) == curve[2]["test_accuracy"]
    assert midpoint_accuracy(curve, key="train_accuracy") == curve[2]["train_accuracy"]


def test_curve_with_batchnorm_resets_statistics_at_every_alpha():
    a, b = _bn_net(0), _bn_net(1)
    train, test = _batches(20), _batches(21)
    sa, sb = _state(a), _state(b)
    stale = interpolation_curve(a, sa, sb, [0.0, 1.0], lambda: train, lambda: test, reset_bn=False,
                                evaluate=evaluate)
    assert stale[0]["test_loss"] == pytest.approx(evaluate(a, test).loss, abs=1e-6)
    curve = interpolation_curve(a, sa, sb, [0.0, 0.5, 1.0], lambda: train, lambda: test, evaluate=evaluate)
    for point, alpha in zip(curve, (0.0, 0.5, 1.0), strict=True):
        ref = copy.deepcopy(a)
        ref.load_state_dict(interpolate_state(sa, sb, alpha))
        reset_bn_stats(ref, train)
        expected = _metrics(ref, train, test)
        for key, value in expected.items():
            assert point[key] == pytest.approx(value, abs=1e-6), key
    assert curve[0]["test_loss"] != pytest.approx(stale[0]["test_loss"], abs=1e-6)  # the reset mattered
    assert all(torch.equal(sa[k], v) for k, v in a.state_dict().items())


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    start=st.floats(0.0, 10.0),
    end=st.floats(0.0, 10.0),
    inner=st.lists(st.floats(0.01, 0.99), max_size=6),
)
def test_barrier_of_a_linear_curve_is_zero(start, end, inner):
    alphas = sorted({0.0, 1.0, *inner})
    curve = [{"alpha": x, "test_loss": (1 - x) * start + x * end} for x in alphas]
    assert loss_barrier(curve) == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(start=st.floats(0.0, 5.0), end=st.floats(0.0, 5.0), bump=st.floats(0.0, 3.0))
def test_barrier_measures_the_bump_above_the_chord(start, end, bump):
    curve = [
        {"alpha": 0.0, "train_loss": start},
        {"alpha": 0.5, "train_loss": (start + end) / 2 + bump},
        {"alpha": 1.0, "train_loss": end},
    ]
    assert loss_barrier(curve, key="train_loss") == pytest.approx(bump, abs=1e-9)


def test_barrier_needs_both_endpoints():
    with pytest.raises(ValueError, match="alpha=1"):
        loss_barrier([{"alpha": 0.0, "test_loss": 1.0}, {"alpha": 0.5, "test_loss": 2.0}])
    with pytest.raises(ValueError, match="alpha=0.5"):
        midpoint_accuracy([{"alpha": 0.0, "test_accuracy": 1.0}])

"""REPAIR: the interpolated network's per-channel pre-activation statistics are set to their targets."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from matching import (
    activation_matching,
    error_barrier,
    interpolate_state,
    interpolation_curve,
    loss_barrier,
    permute,
    repair,
    repair_points,
    reset_bn_stats,
)
from matching.repair import ChannelStats, endpoint_stats, interpolate_stats
from models import create
from tests.test_matching_fashion_mnist import train_mlp_pair
from training.evaluate import evaluate


def _batches(shape: tuple[int, ...], n: int = 3, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, *shape, generator=g) * 1.5 + 0.3, torch.randint(0, 10, (size,), generator=g))
            for _ in range(n)]


def _model(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "mlp":
        return create("MLP", num_classes=10, in_channels=1, image_size=8, mlp_hidden=[24, 24, 24])
    if kind == "vgg":
        return create("VGG11", num_classes=10, in_channels=1, image_size=8)
    if kind == "vgg_bn":
        return create("VGG11", num_classes=10, in_channels=1, image_size=8, batchnorm=True)
    return create("ResNet", num_classes=10, in_channels=3, image_size=8)


SHAPES = {"mlp": (1, 8, 8), "vgg": (1, 8, 8), "vgg_bn": (1, 8, 8), "resnet": (3, 8, 8)}


def _measured(model: nn.Module, points: list[str], batches) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and population std of each point's output, by concatenating every output (not REPAIR's code)."""
    modules = dict(model.named_modules())
    outs: dict[str, list[torch.Tensor]] = {n: [] for n in points}
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, o, n=n: outs[n].append(o.detach().double().transpose(0, 1).reshape(o.shape[1], -1).clone()))
        for n in points]
    model.eval()
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    for h in handles:
        h.remove()
    res = {}
    for n, chunks in outs.items():
        y = torch.cat(chunks, dim=1)
        res[n] = (y.mean(dim=1), y.std(dim=1, unbiased=False))
    return res


def test_repair_points_follow_the_structure_not_names():
    assert repair_points(_model("mlp", 0)) == ["fc1", "fc2", "fc3"]  # never the classifier
    vgg = _model("vgg", 0)
    assert repair_points(vgg) == [n for n, m in vgg.named_modules() if isinstance(m, nn.Conv2d)]
    resnet50 = create("ResNet50", num_classes=10, in_channels=3)
    for model in (_model("vgg_bn", 0), _model("resnet", 0), resnet50):  # with BatchNorm: its outputs, no conv
        assert repair_points(model) == [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("kind", ["mlp", "vgg", "resnet"])
def test_repair_sets_every_channel_to_the_interpolated_endpoint_statistics(kind):
    batches = _batches(SHAPES[kind])
    model_a, model_b = _model(kind, 1), _model(kind, 2)
    for m in (model_a, model_b):  # BN endpoints with statistics of the data, as trained ones have
        reset_bn_stats(m, batches)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    points = repair_points(model_a)
    alpha = 0.4
    ends = [_measured(m, points, batches) for m in (model_a, model_b)]
    target = {n: ((1 - alpha) * ends[0][n][0] + alpha * ends[1][n][0], (1 - alpha) * ends[0][n][1]
                  + alpha * ends[1][n][1]) for n in points}

    net = copy.deepcopy(model_a)
    net.load_state_dict(interpolate_state(sd_a, sd_b, alpha))
    reset_bn_stats(net, batches)
    before = _measured(net, points, batches)
    # the interpolated network's statistics are off (variance collapse): otherwise this test could not fail
    assert max(float(((before[n][1] - target[n][1]).abs() / target[n][1]).max()) for n in points) > 0.05

    scratch = copy.deepcopy(model_a)
    targets = interpolate_stats(endpoint_stats(scratch, sd_a, points, batches),
                                endpoint_stats(scratch, sd_b, points, batches), alpha)
    repair(net, targets, lambda: batches)
    after = _measured(net, points, batches)
    for n in points:
        mean, std = after[n]
        t_mean, t_std = target[n]
        live = t_std > 1e-6
        assert torch.allclose(std[live], t_std[live], rtol=1e-3, atol=1e-6), n
        assert torch.allclose(mean, t_mean, rtol=1e-3, atol=1e-4 * float(t_std.max())), n


def test_repair_at_an_endpoint_keeps_its_function_and_masked_weights_stay_zero():
    batches = _batches(SHAPES["mlp"])
    model_a, model_b = _model("mlp", 1), _model("mlp", 2)
    with torch.no_grad():
        model_a.fc2.weight[:, ::2] = 0.0  # a pruned layer
    points = repair_points(model_a)
    scratch = copy.deepcopy(model_a)
    stats_a = endpoint_stats(scratch, model_a.state_dict(), points, batches)
    stats_b = endpoint_stats(scratch, model_b.state_dict(), points, batches)
    net = copy.deepcopy(model_a)
    repair(net, interpolate_stats(stats_a, stats_b, 0.0), lambda: batches)
    x = batches[0][0]
    assert torch.allclose(net(x), model_a(x), atol=1e-4)
    assert bool((net.fc2.weight[:, ::2] == 0).all())


def test_interpolate_stats_is_linear_in_mean_and_std():
    def t(*v: float) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float64)

    a = {"p": ChannelStats(t(0.0, 2.0), t(1.0, 4.0))}
    b = {"p": ChannelStats(t(4.0, 2.0), t(3.0, 0.0))}
    mid = interpolate_stats(a, b, 0.25)["p"]
    assert mid.mean.tolist() == [1.0, 2.0] and mid.std.tolist() == [1.5, 3.0]


def test_error_barrier_is_eq3_on_the_test_error():
    curve = [{"alpha": 0.0, "test_accuracy": 90.0}, {"alpha": 0.5, "test_accuracy": 70.0},
             {"alpha": 1.0, "test_accuracy": 80.0}]
    assert error_barrier(curve) == pytest.approx(30.0 - 15.0)


@pytest.fixture(scope="module")
def trained_pair():
    return train_mlp_pair([128, 128, 128], epochs=2, train_subset=20000)


def test_repair_lowers_the_barrier_of_a_trained_pair_without_batchnorm(trained_pair):
    data, model_a, model_b = trained_pair
    spec = model_a.permutation_spec()
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    sd_ap = permute(spec, sd_a, activation_matching(model_a, model_b, data.eval_train_batches(20)))
    alphas = [i / 10 for i in range(11)]

    def curve(sd, rep):
        return interpolation_curve(model_b, sd, sd_b, alphas, lambda: data.eval_train_batches(10),
                                   data.test_batches, repair=rep, evaluate=evaluate)

    plain, repaired = curve(sd_a, False), curve(sd_a, True)
    print(f"unmatched: error barrier {error_barrier(plain):.2f} -> {error_barrier(repaired):.2f} points, "
          f"loss barrier {loss_barrier(plain):.3f} -> {loss_barrier(repaired):.3f}")
    # Without matching, interpolation collapses the variance most: REPAIR recovers most of the error.
    assert error_barrier(repaired) < 0.6 * error_barrier(plain)
    assert loss_barrier(repaired) < 0.5 * loss_barrier(plain)
    # The endpoints are the trained models themselves, with or without REPAIR.
    assert repaired[0]["test_accuracy"] == pytest.approx(plain[0]["test_accuracy"], abs=0.05)
    plain_m, repaired_m = curve(sd_ap, False), curve(sd_ap, True)
    print(f"matched: error barrier {error_barrier(plain_m):.2f} -> {error_barrier(repaired_m):.2f} points, "
          f"loss barrier {loss_barrier(plain_m):.3f} -> {loss_barrier(repaired_m):.3f}")
    assert loss_barrier(repaired_m) < loss_barrier(plain_m)

"""derive_spec: a model's permutation spec read from its traced graph, never wrong, and usable by matching.

The built-in models declare their specs by hand; the derived ones must partition the
(tensor, axis) pairs identically. Models nobody wrote a spec for (torchvision's, a CNN
with a flatten) must get a spec under which random permutations leave the outputs
unchanged and a planted permutation is found again exactly, by weight matching and by
activation matching. Operations that are not understood hold their channels fixed and
say so, naming the graph node.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from benchmarks.torchvision_zoo import trained_like
from matching import (
    PermutationSpec,
    UntraceableModelError,
    activation_matching,
    check_spec,
    derive_spec,
    invert,
    permute,
    random_permutations,
)
from matching.weight_matching import weight_matching
from models.build import create


def partition(spec: PermutationSpec) -> set[frozenset[tuple[str, int, int]]]:
    """The groups as sets of (key, axis, repeat): names do not matter, which axes move together does."""
    return {frozenset((k, a, spec.repeat(k, a)) for k, a in members) for members in spec.groups.values()}


def quiet(lines: list[str]):
    return lines.append


BUILT_IN = [
    ("MLP", {"in_channels": 1, "image_size": 8, "mlp_hidden": [16, 8]}, (2, 1, 8, 8)),
    ("ResNet", {"in_channels": 3}, (2, 3, 8, 8)),
    ("ResNet", {"in_channels": 3, "width": 2}, (2, 3, 8, 8)),
    ("VGG11", {"in_channels": 3}, (2, 3, 8, 8)),
    ("VGG11", {"in_channels": 3, "batchnorm": True}, (2, 3, 8, 8)),
    ("ResNet50", {"in_channels": 3}, (1, 3, 16, 16)),
]


@pytest.mark.parametrize("model_type,kwargs,shape", BUILT_IN, ids=lambda v: str(v))
def test_the_derived_spec_of_a_built_in_model_partitions_its_axes_as_the_declared_one(model_type, kwargs, shape):
    model = create(model_type, num_classes=10, **kwargs)
    lines: list[str] = []
    derived = derive_spec(model, torch.randn(shape), report=quiet(lines))
    declared = model.permutation_spec()
    assert partition(derived) == partition(declared)
    assert lines == []  # every operation of these models is understood
    # the groups are observed after their nonlinearity, as the declared specs do: every name is a ReLU
    view = derived.observable(model)
    modules = dict(view.named_modules())
    for names in derived.activations.values():
        for name in names:
            assert isinstance(modules[name], nn.ReLU) or "relu" in name, name


# ------------------------------------------------------------------ models without a declared spec


class FlattenCNN(nn.Module):
    """conv -> pool -> flatten (spatial 4x4 > 1) -> linear; functional ReLUs (no module to hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 4 * 4, 12)
        self.out = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.out(torch.relu(self.fc(x.flatten(1))))


def small_vgg11_bn() -> nn.Module:
    """torchvision's VGG11-BN, its layers at 1/8 of the widths (a 4096-wide head is 100M weights)."""
    cfg = [v if v == "M" else v // 8 for v in torchvision.models.vgg.cfgs["A"]]
    model = torchvision.models.vgg.VGG(torchvision.models.vgg.make_layers(cfg, batch_norm=True), num_classes=10)
    # its classifier's structure (flatten of a 7x7 map, two hidden layers, dropout), narrower
    model.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                     nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
    return model


ZOO = {
    "resnet18": (lambda: torchvision.models.resnet18(weights=None, num_classes=10), (2, 3, 16, 16)),
    "vgg11_bn": (small_vgg11_bn, (2, 3, 32, 32)),
    # its first three stages (depthwise convs, residual blocks of 2 and 3); the whole zoo, narrow and at
    # several seeds, is in tests/test_zoo_matching.py
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(
        weights=None, num_classes=10, inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2]]),
        (2, 3, 16, 16)),
    "flatten_cnn": (FlattenCNN, (2, 3, 8, 8)),
}


@pytest.fixture(scope="module", params=sorted(ZOO))
def zoo_model(request):
    torch.manual_seed(0)
    build, shape = ZOO[request.param]
    model = trained_like(build(), 1)
    lines: list[str] = []
    spec = derive_spec(model, torch.randn(shape), report=quiet(lines))
    return request.param, model, spec, shape, lines


def test_a_derived_spec_passes_the_invariance_check(zoo_model):
    name, model, spec, shape, lines = zoo_model
    check_spec(model, spec, torch.randn(shape), seed=3)
    assert lines == [], lines
    sizes = {g: len(m) for g, m in spec.groups.items()}
    assert sizes and all(spec.activations.get(g) for g in sizes)  # every group is observed somewhere
    if name in ("flatten_cnn", "vgg11_bn"):  # the linear layer after the flatten reads channels x positions
        repeated = {spec.repeat(k, a) for k, a in spec.repeats}
        assert repeated == {16} if name == "flatten_cnn" else repeated == {49}


def planted(model: nn.Module, spec: PermutationSpec, seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    perms = random_permutations(spec, model.state_dict(), torch.Generator().manual_seed(seed))
    model_b = copy.deepcopy(model)
    model_b.load_state_dict(permute(spec, model.state_dict(), perms))
    return model_b, perms


def assert_recovers(spec: PermutationSpec, model: nn.Module, model_b: nn.Module, found: dict) -> None:
    moved = permute(spec, model.state_dict(), found)
    target = model_b.state_dict()
    for key in target:
        assert torch.equal(moved[key], target[key]), key


def test_weight_matching_on_a_derived_spec_recovers_a_planted_permutation(zoo_model):
    name, model, spec, shape, _ = zoo_model
    model_b, perms = planted(model, spec, 7)
    assert any(not torch.equal(p, torch.arange(p.numel())) for p in perms.values())
    found = weight_matching(spec, model.state_dict(), model_b.state_dict(), max_iter=20)
    assert_recovers(spec, model, model_b, found)


def test_activation_matching_on_a_derived_spec_recovers_a_planted_permutation(zoo_model):
    name, model, spec, shape, _ = zoo_model
    model_b, _ = planted(model, spec, 8)
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(shape, generator=g) for _ in range(2)]
    found = activation_matching(model, model_b, batches, spec=spec)
    assert_recovers(spec, model, model_b, found)


# ------------------------------------------------------------------ what is held fixed, and saying so


class TwoBranchCat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 5, 3, padding=1)
        self.mix = nn.Conv2d(9, 6, 1)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=1)
        return self.head(torch.relu(self.mix(y)).mean((2, 3)))


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = self.norm(h + self.attention(h, h, h, need_weights=False)[0])
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return self.head(h.mean(1))


def test_a_concatenation_of_two_branches_holds_their_channels_fixed_and_says_so(capsys):
    model = TwoBranchCat()
    x = torch.randn(2, 3, 8, 8)
    spec = derive_spec(model, x)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["[derive_spec] holding channels fixed at graph node 'cat' "
                   "(torch.cat of several channel groups along the channels)"]
    # the branches' outputs are fixed; the conv after the cat still has its own group
    assert "left.weight" not in spec.axes and "right.weight" not in spec.axes
    assert spec.axes["mix.weight"][1] is None and spec.axes["mix.weight"][0] is not None
    assert spec.axes["head.weight"] == (None, spec.axes["mix.weight"][0])
    check_spec(model, spec, x)


def test_attention_holds_the_stream_it_reads_fixed_and_the_mlp_inside_stays_permutable(capsys):
    model = TinyTransformer()
    x = torch.randn(2, 5, 6)
    spec = derive_spec(model, x)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["[derive_spec] holding channels fixed at graph node 'attention' "
                   "(MultiheadAttention is not understood)"]
    assert set(spec.axes) == {"fc1.weight", "fc1.bias", "fc2.weight"}  # the residual stream is fixed
    check_spec(model, spec, x)
    # its hidden units sit on the last dim (batch, tokens, units): observed through the traced view
    model_b, _ = planted(model, spec, 1)
    found = activation_matching(model, model_b, [torch.randn(4, 5, 6)], spec=spec)
    assert_recovers(spec, model, model_b, found)


class Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x * 2

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return grad * 2


class Unsure(nn.Module):
    """A custom autograd function, a reshape that splits the channels, and channel indexing."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 4, 1)
        self.c = nn.Conv2d(4, 4, 1)
        self.d = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(Double.apply(self.a(x)))
        n, c, h, w = y.shape
        y = self.c(y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w))  # a channel shuffle
        y = self.d(y)
        y = y[:, :2]
        return self.head(torch.cat([y, y], dim=1).mean((2, 3)))


def test_custom_functions_reshapes_and_indexing_hold_channels_fixed_one_line_each():
    lines: list[str] = []
    model = Unsure()
    x = torch.randn(2, 3, 4, 4)
    spec = derive_spec(model, x, report=quiet(lines))
    assert len(lines) == 3, lines
    assert "'double_apply' (custom autograd function Double)" in lines[0]
    assert "graph node 'view'" in lines[1] and "splits or interleaves the channels" in lines[1]
    assert "graph node 'getitem" in lines[2] and "indexing a tensor that carries channels" in lines[2]
    # a's and b's outputs and d's (indexed) are fixed; c's output feeds d alone and stays permutable
    assert set(spec.groups) == {"c"}
    assert spec.axes == {"c.weight": ("c", None, None, None), "c.bias": ("c",), "d.weight": (None, "c", None, None)}
    check_spec(model, spec, x)


def test_a_group_whose_operation_was_misread_is_held_fixed_by_the_final_check(monkeypatch):
    """The safety net: were an order-dependent operation (a cumulative sum over channels) taken for an
    elementwise one, the invariance check catches the group, holds it fixed and says so."""
    import matching.channel_graph as channel_graph

    monkeypatch.setattr(channel_graph, "_ELEMENTWISE", channel_graph._ELEMENTWISE | {"cumsum"})

    class CumSum(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(4, 5, 1)
            self.head = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.b(self.a(x).cumsum(1))).mean((2, 3)))

    lines: list[str] = []
    model = CumSum()
    x = torch.randn(2, 3, 4, 4)
    spec = derive_spec(model, x, report=quiet(lines))
    assert lines == ["holding channel group 'a' fixed: permuting it alone changed the model's outputs"]
    assert set(spec.groups) == {"b"}
    check_spec(model, spec, x)


def test_a_model_neither_tracer_can_trace_is_one_clear_error():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(UntraceableModelError) as err:
        derive_spec(DataDependent(), torch.randn(2, 3), report=quiet([]))
    message = str(err.value)
    assert "\n" not in message and "torch.fx failed" in message and "torch.export failed" in message
    assert "DataDependent" in message and "permutation_spec()" in message


def test_shape_dependent_control_flow_is_traced_by_torch_export_with_the_same_partition():
    class Branchy(FlattenCNN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[-1] > 4:  # fx cannot trace a branch on a traced shape; torch.export can
                x = x * 1.0
            return super().forward(x)

    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(Exception):  # noqa: B017 - the premise: fx alone fails on this model
        torch.fx.symbolic_trace(Branchy())
    lines: list[str] = []
    model = Branchy()
    spec = derive_spec(model, x, report=quiet(lines))
    assert lines == []
    assert partition(spec) == partition(derive_spec(FlattenCNN(), x, report=quiet(lines)))
    model_b, _ = planted(model, spec, 3)
    assert_recovers(spec, model, model_b, activation_matching(model, model_b, [x], spec=spec))


# ------------------------------------------------------------------ repeat factors in the spec itself


@settings(max_examples=30, deadline=None)
@given(channels=st.integers(1, 5), positions=st.integers(1, 6), rows=st.integers(1, 4), seed=st.integers(0, 99))
def test_a_repeated_axis_moves_each_unit_as_a_block_of_its_positions(channels, positions, rows, seed):
    spec = PermutationSpec(axes={"w": (None, "c"), "m": (None, "c")},
                           repeats={("w", 1): positions, ("m", 1): positions})
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, channels * positions, generator=g)
    state = {"w": w, "m": w > 0}
    perms = random_permutations(spec, state, g)
    assert perms["c"].numel() == channels
    moved = permute(spec, state, perms)
    blocks = w.view(rows, channels, positions)[:, perms["c"]].reshape(rows, -1)  # the flatten's layout
    assert torch.equal(moved["w"], blocks)
    assert torch.equal(moved["m"], blocks > 0)  # masks move with their weights
    assert torch.equal(permute(spec, moved, invert(perms))["w"], w)

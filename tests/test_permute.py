"""Generic permutation of state dicts and masks, and spec checking, on every architecture."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import models
from matching import (
    PermutationSpec,
    SpecError,
    check_spec,
    compose,
    group_sizes,
    identity_permutations,
    invert,
    permute,
    random_permutations,
)

FAST = settings(max_examples=30, deadline=None)

CASES = {  # (model_type, create kwargs, input shape)
    "mlp": ("MLP", {"image_size": 28, "mlp_hidden": [24, 16]}, (4, 1, 28, 28)),
    "resnet20x1": ("ResNet20", {}, (2, 3, 32, 32)),
    "resnet20x2": ("ResNet20", {"width": 2}, (2, 1, 28, 28)),
    "vgg11": ("VGG11", {}, (2, 3, 32, 32)),
    "vgg11_bn": ("VGG11", {"batchnorm": True}, (2, 3, 32, 32)),
    "resnet50": ("ResNet50", {}, (2, 3, 64, 64)),
}



def _trained_stats(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """One train-mode forward so BatchNorm running statistics are not the constant init."""
    model.train()
    with torch.no_grad():
        model(x + 0.5 * torch.randn_like(x))
    return model.eval()


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    out = {}
    for key, (model_type, kw, shape) in CASES.items():
        model = models.create(model_type, num_classes=10, in_channels=shape[1], **kw)
        x = torch.randn(shape)
        out[key] = (_trained_stats(model, x), x)
    return out


def _with(spec: PermutationSpec, **changes: object) -> PermutationSpec:
    return dataclasses.replace(spec, **changes)


def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone.eval()


@pytest.mark.parametrize("key", list(CASES))
def test_spec_is_exact(built, key: str) -> None:
    model, x = built[key]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_spec(model, model.permutation_spec(), x)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "check_spec modified the model"


@pytest.mark.parametrize("key", list(CASES))
def test_permuting_preserves_outputs_and_round_trips(built, key: str) -> None:
    model, x = built[key]
    spec = model.permutation_spec()
    state = model.state_dict()
    perms = random_permutations(spec, state, torch.Generator().manual_seed(1))
    assert set(perms) == set(spec.groups)
    permuted = permute(spec, state, perms)
    assert any(not torch.equal(permuted[k], state[k]) for k in spec.axes)
    with torch.no_grad():
        torch.testing.assert_close(_load(model, permuted)(x), model(x), rtol=1e-4, atol=1e-4)
    back = permute(spec, permuted, invert(perms))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("key", list(CASES))
def test_spec_covers_all_permutable_tensors(built, key: str) -> None:
    """Every weight, bias and BatchNorm tensor is in the spec; only the first layer's input and
    the classifier's output (and its bias) are unpermuted."""
    model, _ = built[key]
    spec = model.permutation_spec()
    floating = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    classifier = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert floating - set(spec.axes) == {f"{classifier}.bias"}
    first = model.prunable_parameters()[0]
    assert spec.axes[first][1] is None and spec.axes[f"{classifier}.weight"][0] is None


def test_resnet20_group_names() -> None:
    spec = models.create("ResNet20", num_classes=10, in_channels=3).permutation_spec()
    inner = [f"layer{s}.{b}.inner" for s in (1, 2, 3) for b in range(3)]
    assert set(spec.groups) == {"stream1", "stream2", "stream3", *inner}
    assert spec.activations["stream1"] == ["relu", "layer1.0", "layer1.1", "layer1.2"]
    assert spec.activations["stream3"] == ["layer3.0", "layer3.1", "layer3.2"]
    assert all(spec.activations[g] == [g.replace("inner", "relu1")] for g in inner)
    assert spec.axes["layer2.0.shortcut.0.weight"] == ("stream2", "stream1", None, None)
    assert spec.axes["layer2.0.conv1.weight"] == ("layer2.0.inner", "stream1", None, None)
    assert spec.axes["layer2.1.bn2.running_var"] == ("stream2",)
    assert spec.axes["conv1.weight"] == ("stream1", None, None, None)
    assert spec.axes["linear.weight"] == (None, "stream3")


def test_resnet50_group_names() -> None:
    spec = models.create("ResNet50", num_classes=10, in_channels=3).permutation_spec()
    assert {g for g in spec.groups if "." not in g} == {"stem", "stream1", "stream2", "stream3", "stream4"}
    assert len(spec.groups) == 5 + 2 * 16
    assert spec.axes["layer1.0.downsample.0.weight"] == ("stream1", "stem", None, None)
    assert spec.activations["layer4.2.inner2"] == ["layer4.2.relu2"]


# --- broken specs are caught --------------------------------------------------------------


def _drop(spec: PermutationSpec, key: str) -> PermutationSpec:
    return _with(spec, axes={k: v for k, v in spec.axes.items() if k != key})


def _regroup(spec: PermutationSpec, key: str, axes: tuple[str | None, ...]) -> PermutationSpec:
    return _with(spec, axes={**spec.axes, key: axes})


BROKEN = [  # (case, how to break the spec, expected message fragment)
    ("mlp", lambda s: _drop(s, "fc1.bias"), "hidden1"),
    ("mlp", lambda s: _regroup(s, "fc2.weight", ("hidden2", None)), "hidden1"),
    ("resnet20x1", lambda s: _drop(s, "layer2.1.bn1.running_mean"), "layer2.1.inner"),
    ("resnet20x1", lambda s: _drop(s, "layer3.0.bn2.running_var"), "stream3"),
    ("resnet20x1", lambda s: _drop(s, "layer2.0.shortcut.1.bias"), "stream2"),
    ("resnet20x1", lambda s: _regroup(s, "layer1.1.conv2.weight", ("stream1", "layer1.0.inner", None, None)),
     "changed its outputs"),
    ("resnet20x2", lambda s: _regroup(s, "layer2.0.shortcut.0.weight", ("stream2", None, None, None)),
     "stream1"),
    ("vgg11", lambda s: _drop(s, "features.3.bias"), "conv2"),
    ("vgg11_bn", lambda s: _drop(s, "features.5.running_var"), "conv2"),
    ("vgg11_bn", lambda s: _regroup(s, "features.4.weight", ("conv2", "conv2", None, None)), "size"),
    ("resnet50", lambda s: _drop(s, "layer3.2.bn2.weight"), "changed its outputs.*not diagnosed"),
    ("resnet50", lambda s: _regroup(s, "layer2.0.downsample.0.weight", ("stream2", "stream2", None, None)),
     "size"),
]


@pytest.mark.parametrize(("key", "breaker", "message"), BROKEN)
def test_broken_spec_is_caught(built, key: str, breaker, message: str) -> None:
    model, x = built[key]
    with pytest.raises(SpecError, match=message):  # naming the culprit costs a forward per group
        check_spec(model, breaker(model.permutation_spec()), x, diagnose=key != "resnet50")


def test_spec_errors_on_structure(built) -> None:
    model, x = built["resnet20x1"]
    spec = model.permutation_spec()
    with pytest.raises(SpecError, match="not in the model's state dict"):
        check_spec(model, _regroup(spec, "layer9.conv.weight", ("stream1",)), x)
    with pytest.raises(SpecError, match="axes"):
        check_spec(model, _regroup(spec, "bn1.weight", ("stream1", None)), x)
    with pytest.raises(SpecError, match="is not a module"):
        check_spec(model, _with(spec, activations={**spec.activations, "stream2": ["layer2.7"]}), x)
    with pytest.raises(SpecError, match="without activation modules"):
        check_spec(model, _with(spec, activations={**spec.activations, "stream2": []}), x)
    with pytest.raises(SpecError, match="permutes no tensor"):
        check_spec(model, _with(spec, activations={**spec.activations, "nope": ["avgpool"]}), x)
    # bn2 of the same block has the right width (16) but carries the stream, not the inner units
    wrong = {**spec.activations, "layer1.0.inner": ["layer1.0.bn2"]}
    with pytest.raises(SpecError, match="layer1.0.bn2"):
        check_spec(model, _with(spec, activations=wrong), x)
    wrong = {**spec.activations, "layer1.0.inner": ["layer2.0.bn1"]}  # 32 channels, group has 16
    with pytest.raises(SpecError, match="32 channels"):
        check_spec(model, _with(spec, activations=wrong), x)


class _SharedReLU(nn.Module):
    """Two hidden layers that share one ReLU module, as torchvision's blocks do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.fc2(self.relu(self.fc1(x)))))


def test_handmade_spec_without_and_with_shared_activation_modules() -> None:
    torch.manual_seed(0)
    model, x = _SharedReLU(), torch.randn(5, 3)
    axes = {"fc1.weight": ("h1", None), "fc1.bias": ("h1",), "fc2.weight": ("h2", "h1"),
            "fc2.bias": ("h2",), "out.weight": (None, "h2")}
    check_spec(model, PermutationSpec(axes=axes), x)  # activations are optional
    with pytest.raises(SpecError, match="runs 2 times per forward"):
        check_spec(model, PermutationSpec(axes=axes, activations={"h1": ["relu"], "h2": ["fc2"]}), x)
    with pytest.raises(SpecError, match="declared for groups 'h1' and 'h2'"):
        check_spec(model, PermutationSpec(axes=axes, activations={"h1": ["relu"], "h2": ["relu"]}), x)


# --- permute: validation and pass-through ---------------------------------------------------


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return models.create("MLP", num_classes=3, in_channels=1, image_size=2, mlp_hidden=[5, 4]).eval()


def test_permute_validates(mlp) -> None:
    spec, state = mlp.permutation_spec(), mlp.state_dict()
    with pytest.raises(ValueError, match="'hidden1'.*length 4.*5 units"):
        permute(spec, state, {"hidden1": torch.tensor([0, 1, 2, 3])})
    with pytest.raises(ValueError, match="'hidden2'.*not a permutation"):
        permute(spec, state, {"hidden2": torch.tensor([0, 1, 1, 3])})
    with pytest.raises(ValueError, match="'hidden2'.*not a permutation"):
        permute(spec, state, {"hidden2": torch.tensor([0, 1, 2, 4])})
    with pytest.raises(ValueError, match="'hidden2'.*integer"):
        permute(spec, state, {"hidden2": torch.tensor([0.0, 1.0, 2.0, 3.0])})
    with pytest.raises(ValueError, match="'hidden7'.*not in the permutation spec"):
        permute(spec, state, {"hidden7": torch.tensor([0])})


def test_permute_passes_through_and_never_mutates() -> None:
    torch.manual_seed(0)
    model = models.create("ResNet20", num_classes=10, in_channels=3)
    spec, state = model.permutation_spec(), model.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    perms = random_permutations(spec, state, torch.Generator().manual_seed(0))
    out = permute(spec, state, {"stream2": perms["stream2"]})
    assert out is not state and out.keys() == state.keys()
    assert out["layer2.0.bn1.num_batches_tracked"] is state["layer2.0.bn1.num_batches_tracked"]
    assert out["layer1.0.conv1.weight"] is state["layer1.0.conv1.weight"]  # group not in perms: identity
    assert torch.equal(out["layer2.0.conv2.weight"], state["layer2.0.conv2.weight"][perms["stream2"]])
    assert torch.equal(out["layer3.0.conv1.weight"], state["layer3.0.conv1.weight"][:, perms["stream2"]])
    assert all(torch.equal(before[k], state[k]) for k in state)


def test_permute_masks_and_partial_dicts() -> None:
    torch.manual_seed(0)
    model = models.create("ResNet20", num_classes=10, in_channels=3)
    spec, state = model.permutation_spec(), model.state_dict()
    names = model.prunable_parameters()
    masks = {n: torch.rand(state[n].shape) > 0.7 for n in names}
    perms = random_permutations(spec, state, torch.Generator().manual_seed(3))
    permuted_masks = permute(spec, masks, perms)
    assert permuted_masks.keys() == masks.keys()
    assert all(m.dtype == torch.bool for m in permuted_masks.values())
    assert sum(int(m.sum()) for m in permuted_masks.values()) == sum(int(m.sum()) for m in masks.values())
    assert set(random_permutations(spec, masks)) == set(spec.groups)
    assert group_sizes(spec, masks) == group_sizes(spec, state)

    # a masked model, permuted, is the permuted model masked with the permuted mask
    masked = {k: v * masks[k] if k in masks else v for k, v in state.items()}
    permuted_weights = permute(spec, state, perms)
    remasked = {k: v * permuted_masks[k] if k in masks else v for k, v in permuted_weights.items()}
    direct = permute(spec, masked, perms)
    assert all(torch.equal(direct[k], remasked[k]) for k in state)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(_load(model, remasked)(x), _load(model, masked)(x), rtol=1e-4, atol=1e-4)


# --- properties on a tiny MLP (hypothesis) --------------------------------------------------


@st.composite
def mlp_perms(draw) -> dict[str, torch.Tensor]:
    perms = {}
    for group, n in (("hidden1", 5), ("hidden2", 4)):
        if draw(st.booleans()) or group == "hidden1":
            perms[group] = torch.tensor(draw(st.permutations(range(n))))
    return perms


@FAST
@given(perms=mlp_perms(), other=mlp_perms())
def test_permutation_properties(mlp, perms, other) -> None:
    spec, state = mlp.permutation_spec(), mlp.state_dict()
    x = torch.randn(6, 1, 2, 2)
    permuted = permute(spec, state, perms)
    with torch.no_grad():
        torch.testing.assert_close(_load(mlp, permuted)(x), mlp(x), rtol=1e-5, atol=1e-6)
    back = permute(spec, permuted, invert(perms))
    assert all(torch.equal(back[k], state[k]) for k in state)
    twice = permute(spec, permute(spec, state, perms), other)
    once = permute(spec, state, compose(perms, other))
    assert all(torch.equal(twice[k], once[k]) for k in state)


@FAST
@given(perms=mlp_perms(), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_masked_permutation_equivalence(mlp, perms, density: float, seed: int) -> None:
    spec, state = mlp.permutation_spec(), mlp.state_dict()
    gen = torch.Generator().manual_seed(seed)
    masks = {n: torch.rand(state[n].shape, generator=gen) < density for n in mlp.prunable_parameters()}
    masked = {k: v * masks[k] if k in masks else v for k, v in state.items()}
    pw, pm = permute(spec, state, perms), permute(spec, masks, perms)
    direct = permute(spec, masked, perms)
    for k in state:
        assert torch.equal(direct[k], pw[k] * pm[k] if k in masks else pw[k])


def test_identity_permutations(mlp) -> None:
    spec, state = mlp.permutation_spec(), mlp.state_dict()
    ident = identity_permutations(spec, state)
    assert {g: len(p) for g, p in ident.items()} == {"hidden1": 5, "hidden2": 4}
    out = permute(spec, state, ident)
    assert all(torch.equal(out[k], state[k]) for k in state)

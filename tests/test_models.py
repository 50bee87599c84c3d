"""Architectures: shapes, parameter counts, prunable weights, config building, memory formats."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import models
from matching.spec import PermutationSpec
from models import registry
from utils.config import Config, PruningConfig, config_from_dict
from utils.hashing import stable_hash

SMALL = {  # (model_type, create kwargs, input shape) for cheap forward checks
    "mlp": ("MLP", {"image_size": 28, "mlp_hidden": [32, 16]}, (2, 1, 28, 28)),
    "resnet20": ("ResNet20", {}, (2, 3, 32, 32)),
    "vgg11": ("VGG11", {}, (2, 3, 32, 32)),
    "vgg11_bn": ("VGG11", {"batchnorm": True}, (2, 3, 32, 32)),
    "resnet50": ("ResNet50", {}, (2, 3, 64, 64)),
}



@pytest.fixture(scope="module")
def built() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    out = {}
    for key, (model_type, kw, shape) in SMALL.items():
        model = models.create(model_type, num_classes=10, in_channels=shape[1], **kw)
        out[key] = (model, torch.randn(shape))
    return out


def test_resnet20_parameter_count() -> None:
    # The usual ResNet20 (option-A shortcuts) has 269,722 parameters for 10 classes:
    #   stem 3·16·9 + BN 32 = 464
    #   stage 1: six 16→16 3×3 convs 6·2304 + six BN 6·32 = 14,016
    #   stage 2: 16→32 (4608) + five 32→32 (5·9216) + six BN 6·64 = 51,072
    #   stage 3: 32→64 (18,432) + five 64→64 (5·36,864) + six BN 6·128 = 203,520
    #   linear 64·10 + 10 = 650
    # The paper's 3×3 stride-2 shortcut convs add 16·32·9 + 64 = 4,672 and 32·64·9 + 128 = 18,560.
    model = models.create("ResNet20", num_classes=10, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == 269_722 + 4_672 + 18_560 == 292_954


def test_resnet20_layout() -> None:
    model = models.create("ResNet20", num_classes=10, in_channels=3, width=2)
    assert model.conv1.out_channels == 32 and model.linear.in_features == 128
    assert [len(getattr(model, f"layer{s}")) for s in (1, 2, 3)] == [3, 3, 3]
    for s, planes in ((2, 64), (3, 128)):
        conv = getattr(model, f"layer{s}")[0].shortcut[0]
        assert isinstance(conv, nn.Conv2d) and conv.bias is None
        assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (2, 2), (1, 1))
        assert conv.out_channels == planes
        assert isinstance(getattr(model, f"layer{s}")[0].shortcut[1], nn.BatchNorm2d)
    assert len(model.layer1[0].shortcut) == 0 and len(model.layer2[1].shortcut) == 0
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet20_kaiming_normal_init() -> None:
    torch.manual_seed(0)
    model = models.create("ResNet20", num_classes=10, in_channels=3, width=4)
    w = model.layer3[1].conv1.weight  # fan_in 256·9, kaiming_normal_ std = sqrt(2 / fan_in)
    assert w.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.02)


def test_vgg11_layout() -> None:
    plain = models.create("VGG11", num_classes=10, in_channels=3)
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.bias is not None and c.kernel_size == (3, 3) for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in plain.modules()) == 5
    assert [type(m) for m in plain.modules() if isinstance(m, nn.Linear)] == [nn.Linear]
    assert plain.classifier.in_features == 512
    bn = models.create("VGG11", num_classes=10, in_channels=3, batchnorm=True, width=2)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8
    assert bn.classifier.in_features == 1024


def test_vgg11_init_weights() -> None:
    model = models.create("VGG11", num_classes=10, in_channels=3, init_weights=True)
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert not torch.all(models.create("VGG11", num_classes=10, in_channels=3).features[0].bias == 0)


def test_resnet50_is_torchvision_resnet50() -> None:
    from torchvision.models import resnet50

    ours = models.create("ResNet50", num_classes=10, in_channels=3)
    theirs = resnet50(num_classes=10)
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("key", list(SMALL))
def test_forward_shapes_channels_last_and_autocast(built, key: str) -> None:
    model, x = built[key]
    model.eval()
    with torch.no_grad():
        y = model(x)
        assert y.shape == (x.shape[0], 10)
        y_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
        torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_amp = model(x)
    assert y_amp.shape == y.shape and torch.isfinite(y_amp).all()


@pytest.mark.parametrize(
    ("model_type", "kw", "shape"),
    [
        ("ResNet20", {}, (2, 1, 28, 28)),
        ("VGG11", {}, (2, 1, 28, 28)),
        ("MLP", {"image_size": 32}, (2, 3, 32, 32)),
        ("ResNet50", {}, (1, 1, 64, 64)),
    ],
)
def test_other_input_sizes(model_type: str, kw: dict, shape: tuple[int, ...]) -> None:
    model = models.create(model_type, num_classes=7, in_channels=shape[1], **kw)
    assert model(torch.randn(shape)).shape == (shape[0], 7)


def _conv_linear_weights(model: nn.Module) -> set[str]:
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def test_prunable_parameters(built) -> None:
    expected = {
        "resnet20": ["conv1.weight"]
        + [f"layer{s}.{b}.conv{c}.weight" for s in (1, 2, 3) for b in range(3) for c in (1, 2)]
        + ["linear.weight"],
        "vgg11": [f"features.{i}.weight" for i in (0, 3, 6, 8, 11, 13, 16, 18)] + ["classifier.weight"],
        "vgg11_bn": [f"features.{i}.weight" for i in (0, 4, 8, 11, 15, 18, 22, 25)] + ["classifier.weight"],
        "mlp": ["fc1.weight", "fc2.weight", "classifier.weight"],
        "resnet50": ["conv1.weight"]
        + [f"layer{s}.{b}.conv{c}.weight" for s, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for b in range(n)
           for c in (1, 2, 3)]
        + ["fc.weight"],
    }
    excluded = {
        "resnet20": {"layer2.0.shortcut.0.weight", "layer3.0.shortcut.0.weight"},
        "resnet50": {f"layer{s}.0.downsample.0.weight" for s in (1, 2, 3, 4)},
    }
    for key, names in expected.items():
        model, _ = built[key]
        assert model.prunable_parameters() == names, key
        params = dict(model.named_parameters())
        assert all(params[n].ndim >= 2 for n in names)
        assert set(names) | excluded.get(key, set()) == _conv_linear_weights(model), key


def test_build_model_from_config() -> None:
    cfg = SimpleNamespace(model_type="ResNet", dataset="cifar100", width_multiplier=2)
    model = models.build_model(cfg)
    assert isinstance(model, models.ResNet20)
    assert model.linear.out_features == 100 and model.conv1.out_channels == 32

    fm = models.build_model(SimpleNamespace(model_type="MLP", dataset="fashion-mnist", mlp_hidden=[64]))
    assert fm.fc1.in_features == 784 and fm.fc1.out_features == 64 and fm.classifier.out_features == 10
    default = models.build_model(SimpleNamespace(model_type="MLP", dataset="fashion-mnist"))
    assert default.fc1.out_features == default.fc2.out_features == 512

    vgg = models.build_model(SimpleNamespace(model_type="VGG11", dataset="fashion-mnist", batchnorm=True))
    assert vgg.features[0].in_channels == 1 and isinstance(vgg.features[1], nn.BatchNorm2d)
    svhn = models.build_model(SimpleNamespace(model_type="ResNet20", dataset="svhn"))
    assert isinstance(svhn, models.ResNet20)
    assert set(models.MODEL_TYPES) == {"ResNet", "ResNet20", "VGG11", "ResNet50", "MLP"}


@pytest.mark.parametrize("model_type", ["ResNet18", "resnet", None])
def test_unknown_model_type(model_type) -> None:
    with pytest.raises(ValueError, match="VGG11"):
        models.build_model(SimpleNamespace(model_type=model_type, dataset="cifar10"))


@pytest.mark.parametrize("width", [0, -1, 1.5])
def test_bad_width(width) -> None:
    with pytest.raises(ValueError, match="width"):
        models.create("ResNet20", num_classes=10, in_channels=3, width=width)


def test_models_are_permutable(built) -> None:
    for model, _ in built.values():
        assert isinstance(model, models.PermutableModel)
        assert isinstance(model.permutation_spec(), PermutationSpec)


# ---------------------------------------------------------------- the registry


def _model_key_before_the_registry(cfg: Config) -> dict:
    """``phases/keys.py::model_key`` as it was before the registry (commit 2952f30), verbatim.

    Kept here as the reference: artifact folders are named by hashes of keys that contain this
    dict, so ``registry.model_settings`` must reproduce it exactly or every stored artifact is orphaned.
    """
    model_type = "ResNet" if cfg.model_type == "ResNet20" else cfg.model_type
    key: dict = {"model_type": model_type, "width_multiplier": cfg.width_multiplier}
    if model_type == "MLP":
        key["mlp_hidden"] = list(cfg.mlp_hidden)
    if model_type == "VGG11":
        key.update(batchnorm=cfg.batchnorm, init_weights=cfg.init_weights)
    return key


# (config overrides, stable_hash of the model key computed before the registry existed)
MODEL_KEY_CASES = [
    ({"model_type": "ResNet"}, "0c8606983366"),
    ({"model_type": "ResNet20", "width_multiplier": 4}, "769165a01534"),
    ({"model_type": "VGG11"}, "7a4ca2bbb29c"),
    ({"model_type": "VGG11", "batchnorm": True, "init_weights": True, "width_multiplier": 2}, "f996408815bb"),
    ({"model_type": "ResNet50"}, "771cde999905"),
    ({"model_type": "MLP"}, "c6b20cdb5739"),
    ({"model_type": "MLP", "mlp_hidden": [16, 8], "width_multiplier": 3}, "b658e65aa905"),
    # Other models' fields never enter a key: a ResNet with batchnorm/mlp_hidden set keys as a plain one.
    ({"model_type": "ResNet", "batchnorm": True, "mlp_hidden": [7]}, "0c8606983366"),
    ({"model_type": "MLP", "init_weights": True}, "c6b20cdb5739"),
]


@pytest.mark.parametrize(("overrides", "frozen"), MODEL_KEY_CASES, ids=[str(o) for o, _ in MODEL_KEY_CASES])
def test_model_settings_reproduce_the_old_model_key(overrides, frozen) -> None:
    cfg = config_from_dict({**overrides, "device": "cpu"}, check_data=False)
    settings = registry.model_settings(cfg)
    expected = _model_key_before_the_registry(cfg)
    assert settings == expected and list(settings) == list(expected)  # same keys, same order
    assert stable_hash(settings) == frozen


def test_every_model_type_has_a_model_key_case() -> None:
    covered = {registry.canonical_model_type(o["model_type"]) for o, _ in MODEL_KEY_CASES}
    assert covered == set(registry.MODELS)
    assert {o["model_type"] for o, _ in MODEL_KEY_CASES} == set(registry.MODEL_TYPES)


def test_registry_names_and_aliases() -> None:
    assert list(registry.MODELS) == ["ResNet", "VGG11", "ResNet50", "MLP"]
    assert registry.MODEL_TYPES == ("ResNet", "ResNet20", "VGG11", "ResNet50", "MLP")
    assert models.MODEL_TYPES == registry.MODEL_TYPES
    assert registry.MODELS["ResNet"].aliases == ("ResNet20",)
    for name, entry in registry.MODELS.items():
        assert entry.name == name and registry.canonical_model_type(name) == name
    assert registry.canonical_model_type("ResNet20") == "ResNet"
    for bad in ("resnet", "ResNet18", "", None):
        with pytest.raises(ValueError, match="unknown model_type .*choose one of ResNet, ResNet20, VGG11"):
            registry.canonical_model_type(bad)


def test_registry_architecture_fields_and_tolerances() -> None:
    fields = {name: set(e.arch_fields) for name, e in registry.MODELS.items()}
    assert fields == {"ResNet": set(), "VGG11": {"batchnorm", "init_weights"}, "ResNet50": set(), "MLP": {"mlp_hidden"}}
    tolerances = {name: registry.tolerance_field(name) for name in registry.MODEL_TYPES}
    assert tolerances == {"ResNet": "tolerance_resnet20", "ResNet20": "tolerance_resnet20",
                          "ResNet50": "tolerance_resnet20", "MLP": "tolerance_resnet20", "VGG11": "tolerance_vgg11"}
    assert {e.tolerance_field for e in registry.MODELS.values()} <= {f.name for f in dataclasses.fields(PruningConfig)}
    assert {n: e.tolerance for n, e in registry.MODELS.items()} == {"ResNet": 0.005, "VGG11": 5e-7,
                                                                     "ResNet50": 0.005, "MLP": 0.005}
    # The defaults are the rows' alone: a Config leaves the fields null, loading fills them in, and a config
    # object lacking a field builds and keys like a loaded default config.
    assert all(getattr(Config(), name) is None for e in registry.MODELS.values() for name in e.arch_fields)
    for entry in registry.MODELS.values():
        loaded = config_from_dict({"model_type": entry.name}, check_data=False)
        assert registry.model_settings(SimpleNamespace(model_type=entry.name)) == registry.model_settings(loaded)
        for name, default in entry.arch_fields.items():
            assert getattr(loaded, name) == (list(default) if isinstance(default, tuple) else default)
    assert config_from_dict({"model_type": "ResNet"}, check_data=False).mlp_hidden == [512, 512]


def test_every_registered_name_builds() -> None:
    for name in registry.MODEL_TYPES:
        if name == "ResNet50":
            continue  # built (at 64 px) by the `built` fixture; 25M parameters are slow on 2 shared cores
        model = models.build_model(SimpleNamespace(model_type=name, dataset="cifar10"))
        assert isinstance(model, models.PermutableModel)
        assert type(model).__name__ == {"ResNet": "ResNet20", "ResNet20": "ResNet20", "VGG11": "VGG",
                                        "MLP": "MLP"}[name]


def test_registry_is_cheap_to_import() -> None:
    """utils.config imports the registry: it must not pull in the model classes (torchvision above all)."""
    code = ("import sys, models.registry, utils.config; "
            "print(sorted(m for m in ('models.build', 'models.resnet50', 'models.vgg', 'torchvision') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"


def test_registry_rows_describe_their_width_for_analysis() -> None:
    """Tables and figures ask each model's registry row what its "width" is and how to write it (no
    model names in analysis/): an MLP's is its first hidden width, every other built-in's width_multiplier."""
    from analysis.plot import describe, width_label
    from analysis.table import Setting
    from models.registry import config_width, model_caption, width_text

    assert config_width("MLP", {"mlp_hidden": [256, 128], "width_multiplier": 3}) == 256
    assert config_width("MLP", {}) is None  # a saved config that does not say: unknown, not the default
    assert config_width("ResNet20", {"width_multiplier": 4, "mlp_hidden": [7]}) == 4
    assert config_width("VGG11", {}) == 1
    assert config_width("NoSuchNet", {"width_multiplier": 2}) == 2
    assert [width_text(m, 8) for m in ("ResNet20", "VGG11", "ResNet50", "MLP", None)] == [
        "×8", "×8", "×8", "8 hidden", "×8"]
    assert width_text("MLP", None) == "width ?"
    assert [model_caption(m, 4) for m in ("ResNet20", "VGG11", "ResNet50", "MLP", "Net")] == [
        "ResNet20×4", "VGG11×4", "ResNet50×4", "MLP (4 hidden)", "Net"]
    assert model_caption("MLP", None) == "MLP" and model_caption("VGG11", None) == "VGG11"
    assert model_caption("mypkg.nets:Net", 1) == "mypkg.nets:Net"  # a plug-in's size is in its model_kwargs
    assert describe(Setting("MLP", "fashion-mnist", 512, 0.9)).startswith("MLP (512 hidden), ")
    assert width_label(Setting("ResNet20", "cifar10", 2, 0.9)) == "×2"

"""A model of the user's own in a config: `model_type: "package.module:ClassName"`, end to end.

The documented example (examples/my_cnn.py, a CNN with a flatten, no spec written) runs through
both phases; its artifacts are keyed by the class path and its kwargs; its permutation, masks
and pi(A) follow the derived spec; `prune_exclude` leaves weights dense; mistakes are one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from matching import PermutationSpec, permute
from models.build import build_model
from models.registry import model_settings
from tests.test_pipeline import artifacts, load, run, run_dir
from tests.test_science import DENSE, affected, base_config, changed_stages, stage_hashes, with_field
from utils.config import ConfigError, config_from_dict
from utils.errors import UserError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_cnn.yaml"
PLUGIN = "examples.my_cnn:MyCNN"


def example_config(save: Path, **over) -> dict:
    """The documented example config on a tiny schedule: a few hundred images, two epochs."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg.update({"save_path": str(save), "train_subset": 512, "test_subset": 256, "epochs": 2, "sparse_epochs": 2,
                "batch_size": 64, "rewind_points": [1], "model_kwargs": {"width": 4, "hidden": 16}})
    cfg["pruning"].update({"sparsity": 0.5, "prune_perc": 0.4, "tolerance": 0.02})
    cfg["matching"]["num_batches"] = 3
    cfg["sparse"] = {"random_control": False}
    cfg.update(over)
    return cfg


def test_the_readme_example_runs_both_phases_and_everything_follows_the_derived_spec(tmp_path, capsys):
    save = tmp_path / "runs"
    raw = example_config(save, prune_exclude=["conv1"])
    assert run(tmp_path, raw) == 0
    out = capsys.readouterr()
    # every operation of the example is understood: the one line is the summary, nothing held fixed
    derived = [line for line in out.err.splitlines() if line.startswith("[derive_spec]")]
    assert derived == ["[derive_spec] MyCNN: 3 groups, 28 permutable units, 0 place(s) held fixed "
                       "(python -m matching.derive prints the table)"]
    results = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    assert set(results["sparse"]["1"]) == {"lth", "naive", "permuted"}

    model = build_model(config_from_dict(raw, check_data=False))
    spec = model.permutation_spec()
    assert spec.repeats == {("fc.weight", 1): 7 * 7}  # conv2's channels, each spread over 7x7 positions
    perms = load(artifacts(save, "perm")[0] / "permutation.safetensors")
    assert set(perms) == set(spec.groups)
    assert any(not torch.equal(p, torch.arange(p.numel())) for p in perms.values())
    # pi(A) is A's function: the same test accuracy
    assert abs(results["dense"]["A_permuted"]["accuracy"] - results["dense"]["A"]["accuracy"]) < 0.01
    # M_A covers every conv/linear weight but the excluded conv1; pi(M_A) is M_A moved by the derived spec
    mask_a = {k: v.bool() for k, v in load(artifacts(save, "imp")[0] / "mask.safetensors").items()}
    assert set(mask_a) == {"conv2.weight", "fc.weight", "classifier.weight"}
    moved = load(artifacts(save, "pmask")[0] / "mask_a_permuted.safetensors")
    expected = permute(spec, mask_a, perms)
    assert all(torch.equal(moved[k].bool(), expected[k]) for k in mask_a)
    assert not torch.equal(moved["fc.weight"].bool(), mask_a["fc.weight"])


def test_the_artifact_keys_name_the_class_path_and_its_kwargs():
    base = with_field(with_field(base_config(), "model_type", PLUGIN), "model_kwargs", {"width": 4, "hidden": 16})
    base.pop("mlp_hidden")
    cfg = config_from_dict(base, check_data=False)
    assert model_settings(cfg) == {"model_type": PLUGIN, "model_kwargs": {"width": 4, "hidden": 16}}
    wider = with_field(base, "model_kwargs", {"width": 8, "hidden": 16})
    assert changed_stages(stage_hashes(base), stage_hashes(wider)) == affected(DENSE)
    # prune_exclude: which weights IMP prunes, so the round chain and everything made from it
    excluding = with_field(base, "prune_exclude", ["conv1"])
    assert changed_stages(stage_hashes(base), stage_hashes(excluding)) == affected(("chain",))


class WithOwnSpec(nn.Module):
    """A plug-in model that declares its spec (an empty one: nothing permuted) and its prunable weights."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(784, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))

    def permutation_spec(self) -> PermutationSpec:
        return PermutationSpec(axes={})

    def prunable_parameters(self) -> list[str]:
        return ["fc.weight"]


def namespace(model_type: str, **kw) -> SimpleNamespace:
    return SimpleNamespace(model_type=model_type, dataset="fashion-mnist", **kw)


def test_a_plugin_gets_the_dataset_shape_its_own_spec_when_it_has_one_and_every_conv_linear_weight():
    model = build_model(namespace(PLUGIN, model_kwargs={"width": 2, "hidden": 8}))
    assert model.conv1.in_channels == 1 and model.classifier.out_features == 10  # from fashion-mnist
    assert type(model).__name__ == "MyCNN" and "conv1.weight" in model.state_dict()  # the user's own keys
    assert model.prunable_parameters() == ["conv1.weight", "conv2.weight", "fc.weight", "classifier.weight"]
    own = build_model(namespace(f"{__name__}:WithOwnSpec"))
    assert own.permutation_spec() == PermutationSpec(axes={})  # declared, not derived
    assert build_model(namespace(PLUGIN, prune_exclude=["classifier", "conv*"])).prunable_parameters() == [
        "fc.weight"]


@pytest.mark.parametrize("over,message", [
    ({"model_type": "nowhere.at_all:Net"}, "cannot import module 'nowhere.at_all'"),
    ({"model_type": "examples.my_cnn:Missing"}, "module 'examples.my_cnn' has no attribute 'Missing'"),
    ({"model_type": "examples.my_cnn:annotations"}, "neither a torch.nn.Module class nor a function"),
    ({"model_type": "pathlib:Path"}, "Path is not a torch.nn.Module subclass"),
    ({"model_type": "MLP", "model_kwargs": {"width": 2}}, "model_kwargs: applies to a model_type of your own"),
    ({"width_multiplier": 2}, "width_multiplier: applies to the built-in models"),
    ({"model_kwargs": {"width": float("nan")}}, "model_kwargs.width: must be a finite number"),
    ({"prune_exclude": []}, "prune_exclude: must be a non-empty list"),
    ({"model_kwargs": {"depth": 3}}, "does not take them: got an unexpected keyword argument 'depth'"),
    ({"model_kwargs": {"num_classes": 7}}, "model_kwargs.num_classes: 7, but the dataset has 10"),
    ({"model_type": "ResNett"}, "or a class of your own as 'package.module:ClassName'"),
])
def test_config_mistakes_about_an_own_model_are_one_line(tmp_path, over, message):
    raw = {**example_config(tmp_path), **over}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, check_data=False)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kw,message", [
    ({"model_kwargs": {"width": "wide"}}, "MyCNN(**model_kwargs) failed: TypeError"),
    ({"prune_exclude": ["downsample"]}, "prune_exclude: 'downsample' matches none of the prunable weights"),
    ({"prune_exclude": ["*"]}, "excludes every prunable weight"),
])
def test_a_model_that_cannot_be_built_as_configured_is_one_line(kw, message):
    kw.setdefault("model_kwargs", {})
    with pytest.raises(UserError) as err:
        build_model(namespace(PLUGIN, **kw))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_model_zoo_function_builds_with_the_class_count_it_is_given_and_says_when_it_lacks_one(tmp_path, capsys):
    """``torchvision.models:resnet18`` is a function, and its class count hides in **kwargs (default 1000)."""
    model = build_model(SimpleNamespace(model_type="torchvision.models:resnet18", dataset="cifar10",
                                        model_kwargs={"num_classes": 10}))
    model.eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    groups = model.permutation_spec().groups  # derived from its graph, checked before it is returned
    assert ("fc.weight", 1) in [pair for pairs in groups.values() for pair in pairs]  # the pooled features move
    assert not any(("fc.weight", 0) in pairs for pairs in groups.values())  # the logits never do

    raw = example_config(tmp_path / "runs", model_type="torchvision.models:resnet18", model_kwargs={},
                         dataset="cifar10")
    with pytest.raises(UserError) as err:
        build_model(config_from_dict(raw, check_data=False))
    assert str(err.value).endswith("the dataset needs (1, 10) logits; set its class count in model_kwargs "
                                   "(e.g. num_classes: 10)")

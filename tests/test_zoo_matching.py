"""Matching models nobody wrote a spec for: torchvision's classifiers, narrow, with a planted permutation.

For each architecture of ``benchmarks.torchvision_zoo.NARROW`` (MobileNetV2 at two widths, MobileNetV3
with hardswish and squeeze-and-excitation, EfficientNet, RegNet's grouped convolutions, ResNet34's
blocks, ShuffleNet's channel shuffle, DenseNet's concatenations) the spec derived from the graph must
leave the outputs unchanged, and B = A permuted must be found again exactly, by weight matching and by
activation matching, for several seeds. Grouped convolutions permute their outputs inside each group
and their inputs by one permutation acting alike in every group.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmarks.torchvision_zoo import NARROW, planted, recovered, trained_like
from matching import activation_matching, check_spec, derive_spec, match_weights, permute
from matching.derive import main as derive_main
from matching.weight_matching import weight_matching_objective

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module", params=sorted(NARROW))
def zoo(request):
    build, shape = NARROW[request.param]
    torch.manual_seed(0)
    model = trained_like(build(), 1)
    lines: list[str] = []
    spec = derive_spec(model, torch.randn(shape), report=lines.append)
    return request.param, model, spec, shape, lines


def test_the_derived_spec_keeps_the_outputs_and_every_group_is_observed(zoo):
    name, model, spec, shape, _ = zoo
    check_spec(model, spec, torch.randn(shape), seed=3)
    assert all(spec.activations.get(g) for g in spec.groups), name


@pytest.mark.parametrize("seed", SEEDS)
def test_weight_matching_finds_the_planted_permutation(zoo, seed):
    name, model, spec, _, _ = zoo
    model_b, perms = planted(model, spec, seed)
    sd_a, sd_b = model.state_dict(), model_b.state_dict()
    result = match_weights(spec, sd_a, sd_b, seed=seed)
    assert result.objective == pytest.approx(weight_matching_objective(spec, sd_a, sd_b, perms), rel=1e-9)
    assert recovered(spec, model, model_b, result.perms), name


@pytest.mark.parametrize("seed", SEEDS)
def test_activation_matching_finds_the_planted_permutation(zoo, seed):
    name, model, spec, shape, _ = zoo
    model_b, _ = planted(model, spec, seed + 10)
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randn(shape, generator=g) for _ in range(2)]
    assert recovered(spec, model, model_b, activation_matching(model, model_b, batches, spec=spec)), name


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v2_1.0"])
def test_activation_matching_finds_it_at_initialisation_too(name):
    """Untrained norms (weights 1, biases and statistics 0): many units dead or constant on the data."""
    build, shape = NARROW[name]
    torch.manual_seed(4)
    model = build().eval()
    spec = derive_spec(model, torch.randn(shape), report=lambda _: None)
    model_b, _ = planted(model, spec, 5)
    batches = [torch.randn(shape, generator=torch.Generator().manual_seed(6))]
    assert recovered(spec, model, model_b, activation_matching(model, model_b, batches, spec=spec))


# ------------------------------------------------------------------ grouped convolutions


def test_a_grouped_convolution_permutes_outputs_inside_each_group_and_inputs_alike_in_all(zoo):
    name, model, spec, _, lines = zoo
    if name != "regnet_x_400mf":
        pytest.skip("RegNet is the zoo's model with grouped convolutions")
    grouped = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and 1 < m.groups != m.in_channels]
    outputs = {g: k for g, k in spec.blocks.items() if g not in spec.tied}
    inputs = {g: k for g, k in spec.blocks.items() if g in spec.tied}
    # per grouped conv: its outputs in blocks, its inputs tied (the weight's input axis holds one block)
    assert sorted(outputs.values()) == sorted(inputs.values()) == sorted(grouped)
    assert len(spec.folded) == len(grouped)
    perms = planted(model, spec, 3)[1]
    for g, k in spec.blocks.items():
        size = perms[g].numel() // k
        assert torch.equal(perms[g] // size, torch.arange(perms[g].numel()) // size)  # units stay in their block
        assert not torch.equal(perms[g], torch.arange(perms[g].numel()))
        if g in spec.tied:
            assert all(torch.equal(perms[g][i * size:(i + 1) * size] - i * size, perms[g][:size]) for i in range(k))
    assert lines == []  # nothing held fixed


class GroupedNet(nn.Module):
    """conv -> grouped conv -> GroupNorm -> ReLU -> conv: the grouped conv's and GroupNorm's groups differ."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.grouped = nn.Conv2d(12, 24, 3, padding=1, groups=4)
        self.norm = nn.GroupNorm(6, 24)
        self.head = nn.Conv2d(24, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.grouped(torch.relu(self.stem(x)))))).mean((2, 3))


def test_grouped_convolution_and_group_norm_blocks_combine_and_stay_invariant():
    torch.manual_seed(0)
    model = trained_like(GroupedNet(), 2)
    lines: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    spec = derive_spec(model, x, report=lines.append)
    # outputs: blocks of 6 (conv groups) and of 4 (norm groups), so blocks of 2; inputs: 4 blocks moving alike
    assert spec.blocks == {"grouped": 12, "stem": 4} and spec.tied == {"stem"}
    assert spec.folded == {("grouped.weight", 1)} and lines == []
    check_spec(model, spec, x, seed=1)
    model_b, perms = planted(model, spec, 9)
    assert recovered(spec, model, model_b, match_weights(spec, model.state_dict(), model_b.state_dict()).perms)
    assert recovered(spec, model, model_b, activation_matching(model, model_b, [x], spec=spec))
    with torch.no_grad():
        assert torch.allclose(model(x), model_b(x), atol=1e-5)
    moved = permute(spec, model.state_dict(), perms)
    assert not torch.equal(moved["grouped.weight"], model.state_dict()["grouped.weight"])


# ------------------------------------------------------------------ python -m matching.derive


def test_the_derive_command_prints_the_groups_what_is_held_fixed_and_a_summary(capsys):
    assert derive_main(["torchvision.models.regnet:regnet_x_400mf", "--input-shape", "3,16,16"]) == 0
    out = capsys.readouterr().out
    table, held, summary = out.strip().split("\n\n")
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["group", "units", "blocks"]
    # regnet_x_400mf's grouped convs (group width 16): stage 1's has 2 groups, its outputs move in 2 blocks
    assert [row.split()[2] for row in rows if row.startswith("trunk_output.block1.block1-0.f.b.0 ")] == ["2"]
    assert "trunk_output.block1.block1-0.f.b.0.weight[0]" in table  # its weight's output axis
    assert [row.split()[2:4] for row in rows if row.startswith("trunk_output.block1.block1-0.f.a.0 ")] == \
        [["2", "tied"]]  # its inputs: one permutation in both groups
    assert "trunk_output.block1.block1-0.f.b.0.weight[1] (one block)" in table
    assert held == "held fixed: nothing (beyond the model's input and output axes)"
    assert summary == f"{len(rows)} groups, {summary.split()[2]} permutable units, 0 place(s) held fixed"


def test_the_derive_command_runs_as_a_module_and_fails_in_one_line():
    ok = subprocess.run([sys.executable, "-m", "matching.derive", "examples.my_cnn:MyCNN", "--input-shape",
                         "1,28,28", "--model-kwargs", '{"width": 2}'], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert ok.stdout.strip().endswith("3 groups, 134 permutable units, 0 place(s) held fixed")
    bad = subprocess.run([sys.executable, "-m", "matching.derive", "examples.my_cnn:MyCNN"], capture_output=True,
                         text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "give --input-shape" in bad.stderr

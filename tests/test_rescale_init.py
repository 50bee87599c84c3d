"""Rescaled initialization (``sparse.rescale_init``, ``<run>+rescale``): the math, the BN reset, the keys, the runs."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from phases import graph
from phases.identity import config_hash
from phases.sparse_step import rescale_initialization
from pruning.rescale import fan_in_kept, rescale_to_fan_in
from tests.test_pipeline import artifacts, load, run, run_dir, tiny_config
from tests.test_science import base_config, stage_hashes, with_field
from utils.config import ConfigError, config_from_dict


@settings(max_examples=60, deadline=None)
@given(shape=st.sampled_from([(5, 7), (4, 3, 3, 3), (1, 20), (6, 2, 1, 1)]), density=st.floats(0.05, 1.0),
       scale=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16))
def test_each_unit_gets_variance_two_over_its_kept_fan_in(shape, density, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen) * scale + 0.3 * scale  # not centred: the mean must go too
    mask = torch.rand(shape, generator=gen) < density
    before = w.clone()
    out = rescale_to_fan_in({"w": w, "other": w.clone()}, {"w": mask})
    assert set(out) == {"w"} and torch.equal(w, before)  # only masked tensors, inputs untouched
    new = out["w"]
    assert new.dtype == w.dtype and new.shape == w.shape
    assert torch.all(new[~mask] == 0)  # masked weights stay exactly zero
    rows, keep = new.reshape(shape[0], -1).double(), mask.reshape(shape[0], -1)
    fan = fan_in_kept(mask)
    for unit in range(shape[0]):
        n = int(fan[unit])
        kept = rows[unit][keep[unit]]
        if n == 0:
            assert torch.all(rows[unit] == 0)
        elif n == 1:  # no spread to scale: the one kept weight has the target's second moment, its sign kept
            orig = w.reshape(shape[0], -1)[unit][keep[unit]].item()
            assert kept.item() == pytest.approx(2.0 ** 0.5 if orig >= 0 else -(2.0 ** 0.5), rel=1e-6)
        else:
            assert kept.mean().item() == pytest.approx(0.0, abs=1e-6 / n ** 0.5)
            assert kept.var(unbiased=False).item() == pytest.approx(2.0 / n, rel=1e-5)


def test_fan_in_counts_kept_inputs_per_output_unit():
    mask = torch.zeros(3, 2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = mask[0, 1, 1, 1] = mask[2] = True
    assert fan_in_kept(mask).tolist() == [2, 0, 8]
    with pytest.raises(ValueError):
        fan_in_kept(torch.ones(4, dtype=torch.bool))


def test_a_unit_keeps_its_relative_pattern():
    # Centring and one scale per unit: the kept weights are an affine image of the rewound ones, order kept.
    w = torch.tensor([[3.0, -1.0, 5.0, 100.0], [1.0, 2.0, 4.0, 8.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    new = rescale_to_fan_in({"w": w}, {"w": mask})["w"]
    assert torch.equal(new[0, :3].argsort(), w[0, :3].argsort()) and new[0, 3] == 0
    expected = (w[1] - w[1].mean()) / w[1].std(unbiased=False) * (2 / 4) ** 0.5
    assert torch.allclose(new[1], expected, atol=1e-6)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 4 * 4, 5))


def test_rescaling_a_model_resets_its_batchnorm_statistics_to_the_rescaled_network():
    net = _bn_net()
    gen = torch.Generator().manual_seed(1)
    masks = {"0.weight": torch.rand(6, 3, 3, 3, generator=gen) < 0.5,
             "4.weight": torch.rand(5, 96, generator=gen) < 0.3}
    bn = net[1]
    bn.running_mean.fill_(7.0)  # stale statistics of the dense network at k
    bn.running_var.fill_(9.0)
    batches = [(torch.randn(8, 3, 4, 4, generator=gen), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    expected_w = rescale_to_fan_in({n: p.detach() for n, p in net.named_parameters() if n in masks}, masks)
    net.eval()
    rescale_initialization(net, masks, batches)
    for name, w in expected_w.items():
        assert torch.equal(net.get_parameter(name).detach(), w)
    # The running statistics are now the average batch statistics of the rescaled, masked conv's outputs.
    conv = net[0]
    outs = [conv(x).detach() for x, _ in batches]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outs]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, atol=1e-5)
    assert bn.momentum == 0.1 and not net.training  # the model is left as it was found


def _sparse_keys(raw: dict) -> dict[str, dict]:
    cfg = config_from_dict(raw, check_data=False)
    return {f"{run}@{k}": graph.sparse(cfg, 0, k, run).key for k in cfg.rewind_points for run in graph.sparse_runs(cfg)}


def test_rescale_is_a_run_of_its_own_and_changes_nothing_else():
    base = base_config()
    on = with_field(base, "sparse.rescale_init", True)
    assert stage_hashes(on) == stage_hashes(base)  # nothing upstream, no existing sparse run
    plain, twins = _sparse_keys(base), _sparse_keys(on)
    assert {k: v for k, v in twins.items() if k in plain} == plain  # off: the very same keys as before
    assert all("rescale_bn_batches" not in v for v in plain.values())
    rescaled = {k: v for k, v in twins.items() if k not in plain}
    assert sorted(rescaled) == sorted(k.replace("@", "+rescale@") for k in plain)
    assert all(v["settings"]["rescale_bn_batches"] == 50 for v in rescaled.values())
    # The BN batches enter only the rescaled runs, and the run directory's identity (they change its rows).
    more = _sparse_keys(with_field(on, "sparse.rescale_bn_batches", 7))
    assert {k for k in twins if twins[k] != more[k]} == set(rescaled)
    cfg = lambda raw: config_from_dict(raw, check_data=False)  # noqa: E731
    assert config_hash(cfg(on)) == config_hash(cfg(base))
    assert config_hash(cfg(with_field(on, "sparse.rescale_bn_batches", 7))) != config_hash(cfg(on))


def test_runs_can_name_their_rescaled_twin_and_bad_names_are_one_line():
    cfg = config_from_dict(with_field(base_config(), "sparse.runs", ["naive", "permuted+rescale"]), check_data=False)
    assert graph.sparse_runs(cfg) == ["naive", "permuted+rescale", "random"]
    with pytest.raises(ConfigError, match=r"sparse\.runs: unknown run 'naive\+scaled'"):
        config_from_dict(with_field(base_config(), "sparse.runs", ["naive+scaled"]), check_data=False)
    with pytest.raises(ConfigError, match="sparse.rescale_bn_batches: must be positive"):
        config_from_dict(with_field(base_config(), "sparse.rescale_bn_batches", 0), check_data=False)


def test_rescaled_runs_train_beside_the_plain_ones(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    raw = tiny_config(fake_cifar10, save, rewind_points=[1], sparse={"runs": ["naive"], "rescale_init": True})
    plain = tiny_config(fake_cifar10, save, rewind_points=[1], sparse={"runs": ["naive"]})
    assert run(tmp_path, plain) == 0
    before = {p.name for p in artifacts(save, "sparse")}
    assert run(tmp_path, raw, "-pretrain", "False") == 0
    after = {p.name for p in artifacts(save, "sparse")}
    assert len(after - before) == 1  # the plain naive run is reused, bit for bit: one new artifact
    (new,) = after - before
    settings_ = json.loads((save / "artifacts" / new / "manifest.json").read_text())["settings"]
    assert settings_["run"] == "naive+rescale" and settings_["rescale_bn_batches"] == 50
    results = json.loads((run_dir(save, "cfg") / "results.json").read_text())
    row = results["sparse"]["1"]
    assert set(row) == {"naive", "naive+rescale"}
    # Same weights, mask, data order and schedule: only the rescaling tells the two apart.
    naive = graph.sparse(config_from_dict(plain, check_data=False), 0, 1, "naive")
    plain_w, rescaled_w = load(naive.path("final.safetensors")), load(save / "artifacts" / new / "final.safetensors")
    assert any(not torch.equal(plain_w[n], rescaled_w[n]) for n in plain_w)
    assert row["naive+rescale"]["weight_sparsity"] >= row["naive"]["weight_sparsity"] - 1e-9

"""Paper fidelity: `matching.stream: released` matches as the released code did; normalisation settings.

The released ResNet20 matching is written out here in our own words: which activations it correlated
(each block's first ReLU for the inner units; for the residual stream of each stage, the output of one
block only, blocks 3, 6 and 8 counted from the stem), how it estimated the correlation (per-batch means,
unbiased per-batch standard deviations and cross products, each averaged over batches, with 1e-4 added to
the product of the deviations), and how it assigned units (a maximising linear assignment of B's units to
A's). Our activation matching, with the spec of a model built from a config that says `released`, must
give the same permutation of A on the same models and batches.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from data import build_data
from data.info import dataset_info, normalized_as
from matching import activation_matching
from matching.activation_matching import collect_correlations
from models import build_model
from utils.config import Config, ConfigError, config_from_dict, load_config

# The released choice of stream activations: the output of blocks 3, 6, 8 (0 is the stem).
RELEASED_STREAM_BLOCKS = {"stream1": 3, "stream2": 6, "stream3": 8}


def _config(width: int, stream: str) -> Config:
    std = "batch_mean" if stream == "released" else "pooled"
    return config_from_dict({"model_type": "ResNet", "width_multiplier": width, "dataset": "cifar10",
                             "matching": {"stream": stream, "std": std}},
                            check_data=False)


def _random_model(cfg: Config, seed: int) -> nn.Module:
    """Random weights and random BN statistics, so units differ and the stream is not trivially aligned."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var") or name.endswith("bn1.weight") or name.endswith("bn2.weight"):
                t.copy_(torch.empty(t.shape).uniform_(0.5, 1.5, generator=g))
            elif name.endswith("running_mean") or name.endswith(".bias"):
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
    return model.eval()


def _blocks(model: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, nn.ReLU())
    return [stem, *model.layer1, *model.layer2, *model.layer3]


def _released_taps(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each group's activation as the released code read it, by running prefixes of the block list."""
    blocks = _blocks(model)
    out: dict[str, torch.Tensor] = {}
    h = x
    for k, block in enumerate(blocks):
        if k > 0:
            s, i = (k - 1) // 3 + 1, (k - 1) % 3
            out[f"layer{s}.{i}.inner"] = torch.relu(block.bn1(block.conv1(h)))
        h = block(h)
        for group, at in RELEASED_STREAM_BLOCKS.items():
            if at == k:
                out[group] = h
    return out


def _released_correlation(acts_b: list[torch.Tensor], acts_a: list[torch.Tensor]) -> torch.Tensor:
    n = len(acts_b)
    mean_b = mean_a = std_b = std_a = outer = 0
    for zb, za in zip(acts_b, acts_a, strict=True):
        zb = zb.movedim(1, -1).reshape(-1, zb.shape[1]).double()
        za = za.movedim(1, -1).reshape(-1, za.shape[1]).double()
        mean_b = mean_b + zb.mean(0) / n
        mean_a = mean_a + za.mean(0) / n
        std_b = std_b + zb.std(0) / n
        std_a = std_a + za.std(0) / n
        outer = outer + (zb.T @ za) / zb.shape[0] / n
    cov = outer - torch.outer(mean_b, mean_a)
    return cov / (torch.outer(std_b, std_a) + 1e-4)  # [unit of B, unit of A]


def released_permutations(model_a: nn.Module, model_b: nn.Module, batches: list[torch.Tensor]) -> dict:
    with torch.no_grad():
        taps_a = [_released_taps(model_a, x) for x in batches]
        taps_b = [_released_taps(model_b, x) for x in batches]
    perms = {}
    for group in taps_a[0]:
        corr = _released_correlation([t[group] for t in taps_b], [t[group] for t in taps_a])
        rows, cols = scipy.optimize.linear_sum_assignment(corr.numpy(), maximize=True)
        assert (rows == np.arange(len(rows))).all()
        perms[group] = torch.as_tensor(cols, dtype=torch.long)  # new unit i of A = old unit cols[i]
    return perms


@pytest.mark.parametrize("width", [1, 2])
def test_released_stream_permutes_a_as_the_released_code(width):
    cfg = _config(width, "released")
    model_a, model_b = _random_model(cfg, 10 * width), _random_model(cfg, 10 * width + 5)
    g = torch.Generator().manual_seed(width)
    batches = [torch.randn(16, 3, 32, 32, generator=g) for _ in range(4)]
    # the spec of the model the config built, and the released code's estimate of each unit's deviation
    ours = activation_matching(model_a, model_b, batches, std=cfg.matching.std)
    released = released_permutations(model_a, model_b, batches)
    assert set(ours) == set(released)
    # A unit dead on these batches correlates 0 with every unit of the other model: the released code paired
    # it with whatever its solver left, ours by the weights. Every pair of live units must agree.
    correlations = collect_correlations(model_a, model_b, batches, model_a.permutation_spec(), cfg.matching.std)
    live = {g: ~c.dead_b & ~c.dead_a[released[g]] for g, c in correlations.items()}
    for group, p in released.items():
        assert torch.equal(ours[group][live[group]], p[live[group]]), group
    assert sum(int(m.sum()) for m in live.values()) >= 0.97 * sum(p.numel() for p in released.values())
    # Both halves matter on this pair: the pooled stream activations match the streams otherwise, and so does
    # the pooled estimate of each unit's deviation somewhere.
    pooled_spec = build_model(_config(width, "pooled")).permutation_spec()
    pooled = activation_matching(model_a, model_b, batches, pooled_spec, std=cfg.matching.std)
    assert any(not torch.equal(pooled[g], released[g]) for g in RELEASED_STREAM_BLOCKS)
    pooled_std = activation_matching(model_a, model_b, batches, std="pooled")
    assert any(not torch.equal(pooled_std[g][live[g]], p[live[g]]) for g, p in released.items())


def test_released_resnet50_stream_reads_the_last_block_of_each_stage_and_the_pooled_stem():
    cfg = config_from_dict({"model_type": "ResNet50", "dataset": "imagenet", "matching": {"stream": "released"}},
                           check_data=False)
    acts = build_model(cfg).permutation_spec().activations
    streams = {g: m for g, m in acts.items() if "inner" not in g}
    assert streams == {"stem": ["maxpool"], "stream1": ["layer1.2"], "stream2": ["layer2.3"],
                       "stream3": ["layer3.5"], "stream4": ["layer4.2"]}


def test_stream_setting_is_checked():
    with pytest.raises(ConfigError, match="matching.stream"):
        config_from_dict({"matching": {"stream": "last"}}, check_data=False)


# ------------------------------------------------------------------ the paper configs

REPO = Path(__file__).resolve().parent.parent
PAPER_CONFIGS = sorted(p for folder in ("configs", "configs_cifar100") for p in (REPO / folder).glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_each_paper_config_sets_what_the_released_run_did(path):
    cfg = load_config(path, check_data=False)
    # the released loaders: ImageNet's statistics for CIFAR-10, every other dataset its own
    assert cfg.normalization == ("imagenet" if cfg.dataset == "cifar10" else "dataset")
    m = cfg.matching
    assert (m.method, m.augment, m.stream) == ("activation", True, "released")
    # the released ResNet20 script averaged per-batch deviations; the ResNet50 and VGG11 ones pooled them
    assert m.std == ("batch_mean" if cfg.model_type == "ResNet" else "pooled")
    assert m.num_batches == (25 if cfg.dataset == "imagenet" else 390)
    assert cfg.rewind_convention == "released" and cfg.precision == "fp32"
    assert cfg.model_b_epochs is None  # B follows `epochs`, so `--set epochs=2` trains both for 2


def test_the_paper_grids_are_complete():
    cells = {(c.model_type, c.dataset, c.width_multiplier, c.pruning.sparsity)
             for c in (load_config(p, check_data=False) for p in PAPER_CONFIGS)}
    for dataset in ("cifar10", "cifar100"):
        assert {(w, s) for t, d, w, s in cells if t == "ResNet" and d == dataset} == {
            (w, s) for w in (1, 4, 8, 16) for s in (0.8, 0.9, 0.95, 0.97)}
    assert {s for t, d, w, s in cells if t == "ResNet50"} == {0.8, 0.9, 0.95, 0.97}
    assert {s for t, d, w, s in cells if t == "VGG11"} == {0.8, 0.9}


def test_a_quick_trial_of_a_paper_config_trains_b_for_its_epochs_and_a_pinned_b_is_announced(fake_cifar10, tmp_path):
    cfg = load_config(REPO / "configs" / "config_1_90.yaml", check_data=False)
    cfg.epochs = 2
    assert cfg.b_epochs == 2
    out = subprocess.run(
        [sys.executable, "experiment.py", "-config", "configs/config_1_90.yaml", "-pretrain", "False",
         "-save_path", str(tmp_path), "--set", f"dataset_root={fake_cifar10}", "--set", "epochs=110",
         "--set", "model_b_epochs=120", "--set", "device=cpu"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert "note: dense A trains 110 epochs, dense B 120 (model_b_epochs)" in out.stdout, out.stdout + out.stderr
    quiet = subprocess.run(
        [sys.executable, "experiment.py", "-config", "configs/config_1_90.yaml", "-pretrain", "False",
         "-save_path", str(tmp_path), "--set", f"dataset_root={fake_cifar10}", "--set", "epochs=110",
         "--set", "device=cpu"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert "sparse-rebasin:" in quiet.stdout and "note: dense A" not in quiet.stdout


def test_imagenet_normalization_uses_imagenet_statistics_on_any_channel_count():
    cifar = normalized_as(dataset_info("cifar10"), "imagenet")
    assert (cifar.mean, cifar.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert normalized_as(dataset_info("cifar10"), "dataset") == dataset_info("cifar10")
    grey = normalized_as(dataset_info("fashion-mnist"), "imagenet")
    assert grey.mean == pytest.approx((0.449,)) and grey.std == pytest.approx((0.226,))
    with pytest.raises(ConfigError, match="normalization"):
        config_from_dict({"normalization": "cifar"}, check_data=False)


def test_normalization_changes_the_inputs_and_the_dense_keys_only_when_set(fake_cifar10):
    from phases import graph

    plain = build_data("cifar10", fake_cifar10, batch_size=8, train_subset=8)
    imagenet = build_data("cifar10", fake_cifar10, batch_size=8, train_subset=8, normalization="imagenet")
    (x0, _), (x1, _) = next(plain.eval_train_batches(1)), next(imagenet.eval_train_batches(1))
    raw = x0 * torch.tensor(dataset_info("cifar10").std).view(1, 3, 1, 1) \
        + torch.tensor(dataset_info("cifar10").mean).view(1, 3, 1, 1)
    expected = (raw - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)) / torch.tensor(
        (0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    assert torch.allclose(x1, expected, atol=1e-5)
    base = config_from_dict({}, check_data=False)
    same = config_from_dict({"normalization": "dataset", "matching": {"stream": "pooled", "std": "pooled"}},
                            check_data=False)
    other = config_from_dict({"normalization": "imagenet"}, check_data=False)
    released = config_from_dict({"matching": {"stream": "released"}}, check_data=False)
    arts = [graph.run_artifacts(c, 0) for c in (base, same, other, released)]
    assert {k: a.name for k, a in arts[0].items()} == {k: a.name for k, a in arts[1].items()}
    assert arts[2]["dense_A"].name != arts[0]["dense_A"].name
    assert arts[3]["dense_A"].name == arts[0]["dense_A"].name and arts[3]["perm"].name != arts[0]["perm"].name


def test_deviation_report_pairs_each_variant_with_ours_seed_by_seed():
    from benchmarks.deviations import report

    rows = [{"width": 1, "seed": s, "variant": v, "permuted": p, "naive": 70.0, "barrier": b}
            for s, v, p, b in ((0, "ours", 80.0, 0.2), (1, "ours", 70.0, 0.4),
                               (0, "stream=released", 79.0, 0.3), (1, "stream=released", 68.0, 0.6))]
    text = report(rows)
    # per seed: -1.0 and -2.0 points, +0.1 and +0.2 barrier; the spread is that of the paired differences
    assert "| x1 | stream=released | 2 | 73.50 ± 7.78 | 70.00 ± 0.00 | 0.450 ± 0.212 | -1.50 ± 0.71 | " \
           "0.150 ± 0.071 |" in text
    assert "| x1 | ours | 2 | 75.00 ± 7.07 |" in text and "augment" not in text

"""Matching two independently trained MLPs on real Fashion-MNIST raises the interpolation midpoint."""

from __future__ import annotations

import pytest
import torch

from data import build_data
from matching import activation_matching, interpolation_curve, midpoint_accuracy, permute, weight_matching
from models import create
from training.evaluate import evaluate
from training.loop import TrainSpec, train


def train_mlp_pair(hidden: list[int], epochs: int, train_subset: int):
    """Fashion-MNIST data and two MLPs trained from seeds 1 and 2 (inits and data orders differ)."""
    data = build_data("fashion-mnist", "absent", batch_size=128, train_subset=train_subset)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = create("MLP", num_classes=10, in_channels=1, image_size=28, mlp_hidden=hidden)
        train(model, data, TrainSpec(epochs=epochs, lr=0.05, seed=seed), name=f"m{seed}",
              device=torch.device("cpu"), progress=False)
        models.append(model)
    return data, models[0], models[1]


@pytest.fixture(scope="module")
def trained_pair():
    return train_mlp_pair([256, 256], epochs=3, train_subset=30000)


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_matching_raises_midpoint_accuracy(trained_pair, method):
    data, model_a, model_b = trained_pair
    spec = model_a.permutation_spec()
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    if method == "weight":
        perms = weight_matching(spec, sd_a, sd_b, seed=0)
    else:
        perms = activation_matching(model_a, model_b, data.eval_train_batches(50))
    sd_ap = permute(spec, sd_a, perms)
    aligned = create("MLP", num_classes=10, in_channels=1, image_size=28, mlp_hidden=[256, 256])
    aligned.load_state_dict(sd_ap)
    assert evaluate(aligned, data.test_batches()).accuracy == pytest.approx(
        evaluate(model_a, data.test_batches()).accuracy, abs=1e-9)

    def train_batches():
        return data.eval_train_batches(10)

    before = midpoint_accuracy(interpolation_curve(model_b, sd_a, sd_b, [0.0, 0.5, 1.0], train_batches,
                                                   data.test_batches, evaluate=evaluate))
    after = midpoint_accuracy(interpolation_curve(model_b, sd_ap, sd_b, [0.0, 0.5, 1.0], train_batches,
                                                  data.test_batches, evaluate=evaluate))
    print(f"{method}: midpoint test accuracy {before:.2f}% before, {after:.2f}% after matching")
    assert after > before + 3.0

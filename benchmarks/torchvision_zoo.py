"""torchvision classifiers that no spec was written for, and a planted permutation between two copies.

Shared by ``bench_zoo_recovery`` and ``tests/test_zoo_matching.py``. ``ZOO`` holds the standard
constructors (``num_classes=10``, the width multipliers torchvision offers); ``NARROW`` holds the
same architectures with fewer and narrower layers (same block types: depthwise, squeeze-and-
excitation, hardswish, grouped convolutions, channel shuffle, dense concatenation), small enough for
the test suite.

B is A with a random permutation of every group applied: the two compute the same function, and the
planted permutation scores the highest possible weight-matching objective (``<pi(A), B> = |B|^2``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import efficientnet, regnet

from matching import PermutationSpec, permute, random_permutations

Builder = Callable[[], nn.Module]


def _regnet(depth: int, w_0: int, w_a: float, w_m: float, group_width: int) -> nn.Module:
    params = regnet.BlockParams.from_init_params(depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width)
    return regnet.RegNet(params, num_classes=10)


def _efficientnet(width: float, depth: float) -> nn.Module:
    settings, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=depth)
    return efficientnet.EfficientNet(settings, 0.2, num_classes=10, last_channel=last)


# name -> (builder, input shape): the standard models, narrowest width torchvision offers where it has one
ZOO: dict[str, tuple[Builder, tuple[int, ...]]] = {
    "mobilenet_v2_0.5": (partial(tvm.mobilenet_v2, num_classes=10, width_mult=0.5), (2, 3, 32, 32)),
    "mobilenet_v2_1.0": (partial(tvm.mobilenet_v2, num_classes=10), (2, 3, 32, 32)),
    "mobilenet_v3_small": (partial(tvm.mobilenet_v3_small, num_classes=10), (2, 3, 32, 32)),
    "efficientnet_b0": (partial(tvm.efficientnet_b0, num_classes=10), (2, 3, 32, 32)),
    "regnet_x_400mf": (partial(tvm.regnet_x_400mf, num_classes=10), (2, 3, 32, 32)),
    "resnet34": (partial(tvm.resnet34, num_classes=10), (2, 3, 32, 32)),
    "shufflenet_v2_x0_5": (partial(tvm.shufflenet_v2_x0_5, num_classes=10), (2, 3, 32, 32)),
    "densenet121": (partial(tvm.densenet121, num_classes=10), (2, 3, 32, 32)),
}

# the same architectures, narrow and shallow (every block type kept), for the tests
NARROW: dict[str, tuple[Builder, tuple[int, ...]]] = {
    "mobilenet_v2_0.5": (partial(tvm.mobilenet_v2, num_classes=10, width_mult=0.5, inverted_residual_setting=[
        [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2]]), (2, 3, 16, 16)),
    "mobilenet_v2_1.0": (partial(tvm.mobilenet_v2, num_classes=10, inverted_residual_setting=[
        [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2]]), (2, 3, 16, 16)),
    "mobilenet_v3_small": (partial(tvm.mobilenet_v3_small, num_classes=10, width_mult=0.25), (2, 3, 32, 32)),
    "efficientnet_b0": (partial(_efficientnet, 0.25, 0.34), (2, 3, 32, 32)),
    "regnet_x_400mf": (partial(_regnet, 4, 16, 8.0, 2.0, 8), (2, 3, 16, 16)),
    "resnet34": (partial(tvm.resnet.ResNet, tvm.resnet.BasicBlock, [1, 2, 1, 1], num_classes=10,
                         width_per_group=64), (2, 3, 16, 16)),
    "shufflenet_v2_x0_5": (partial(tvm.shufflenetv2.ShuffleNetV2, [2, 2, 2], [8, 16, 32, 64, 128],
                                   num_classes=10), (2, 3, 32, 32)),
    "densenet121": (partial(tvm.densenet.DenseNet, growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                            bn_size=2, num_classes=10), (2, 3, 32, 32)),
}


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Distinct per-unit vectors (norm affines and statistics, biases), as training leaves them.

    At initialisation they are all 1 or 0 and carry no signal about which unit is which.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.ndim == 1 and t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    return model.eval()


def planted(model: nn.Module, spec: PermutationSpec, seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with a random permutation of every group of ``spec``, and that permutation."""
    perms = random_permutations(spec, model.state_dict(), torch.Generator().manual_seed(seed))
    model_b = copy.deepcopy(model)
    model_b.load_state_dict(permute(spec, model.state_dict(), perms))
    return model_b, perms


def recovered(spec: PermutationSpec, model: nn.Module, model_b: nn.Module, found: dict[str, torch.Tensor]) -> bool:
    """Whether ``found`` moves A's state dict exactly onto B's (every tensor, not only the permutations:
    units that are exact duplicates may be swapped)."""
    moved = permute(spec, model.state_dict(), found)
    target = model_b.state_dict()
    return all(torch.equal(moved[k], target[k]) for k in target)

"""torchvision's ResNet50, with one ReLU module per use and the project's two model methods.

``width`` scales ``width_per_group`` (64·w), i.e. the inner bottleneck widths, as torchvision's
wide ResNets (and the paper's ``resnet50_wide``) do. State-dict keys are torchvision's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import resnet as tv

from matching.spec import PermutationSpec
from models.base import SpecBuilder, conv_linear_weights


class Bottleneck(tv.Bottleneck):
    """torchvision's Bottleneck with its single shared ReLU split into ``relu1/2/3``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + identity)


class ResNet50(tv.ResNet):
    """``matching_stream`` (set by ``models.build_model``): ``pooled`` reads each stream at every block
    output of its stage; ``released`` at its stage's last block only, and the stem after the max-pool,
    as the paper's released ResNet50 matching did."""

    matching_streams = ("pooled", "released")
    matching_stream = "pooled"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: int = 1) -> None:
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, width_per_group=64 * width)
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def permutation_spec(self) -> PermutationSpec:
        """Groups: ``stem`` (conv1/bn1, read after ``relu``), ``stream{s}`` (residual stream of
        stage s, read at each block's output) and ``layer{s}.{b}.inner1``/``inner2`` (after
        ``relu1``/``relu2``). Each stage's first block has a ``downsample`` conv mapping the
        previous stream (the stem for stage 1) to the new one."""
        pooled = self.matching_stream == "pooled"
        b = SpecBuilder(self)
        stream = "stem"
        b.layer("conv1", stream, None)
        b.norm("bn1", stream)
        b.act(stream, "relu" if pooled else "maxpool")
        for s in (1, 2, 3, 4):
            stage = getattr(self, f"layer{s}")
            prev, stream = stream, f"stream{s}"
            for i, block in enumerate(stage):
                name = f"layer{s}.{i}"
                block_in = prev if i == 0 else stream
                if (block.downsample is not None) != (i == 0):
                    raise RuntimeError(f"{name}: expected a downsample exactly on each stage's first block")
                inner1, inner2 = f"{name}.inner1", f"{name}.inner2"
                b.layer(f"{name}.conv1", inner1, block_in)
                b.norm(f"{name}.bn1", inner1)
                b.act(inner1, f"{name}.relu1")
                b.layer(f"{name}.conv2", inner2, inner1)
                b.norm(f"{name}.bn2", inner2)
                b.act(inner2, f"{name}.relu2")
                b.layer(f"{name}.conv3", stream, inner2)
                b.norm(f"{name}.bn3", stream)
                if block.downsample is not None:
                    b.layer(f"{name}.downsample.0", stream, block_in)
                    b.norm(f"{name}.downsample.1", stream)
                if pooled or i == len(stage) - 1:
                    b.act(stream, name)
        b.layer("fc", None, stream)
        return b.build()

    def prunable_parameters(self) -> list[str]:
        """Every conv and linear weight except the downsample convs (stem and fc included)."""
        return conv_linear_weights(self)

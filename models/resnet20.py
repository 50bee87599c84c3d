"""ResNet20×w for 32×32 inputs, as in the paper's released code.

The downsampling shortcuts are ``Conv2d(k=3, stride=2, padding=1) + BN`` (not the usual 1×1
or zero padding); every ReLU is its own module so activation hooks see exactly one tensor.
The ReLUs work in place (as torchvision's): nothing else reads the BatchNorm output or the
residual sum they overwrite, and skipping the extra activation tensor makes a CPU training
step about 5% faster (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import nn

from matching.spec import PermutationSpec
from models.base import SpecBuilder, conv_linear_weights


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(planes),
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet20(nn.Module):
    """Stem 16w, three stages of three BasicBlocks (16w, 32w, 64w), linear 64w→classes.

    ``matching_stream`` (set by ``models.build_model`` from ``matching.stream``) chooses which
    activations stand for each residual stream in the spec: ``pooled``, the stem and every block
    output of the stage; ``released``, the one block output the paper's released matching code
    used per stage (``RELEASED_STREAM_TAPS``).
    """

    blocks_per_stage = 3
    matching_streams = ("pooled", "released")
    matching_stream = "pooled"
    # The released code matched each stream on the output of its blocks 3, 6 and 8 counted from the stem
    # (block 0): the last block of stages 1 and 2, but the middle block of stage 3.
    RELEASED_STREAM_TAPS = {"stream1": "layer1.2", "stream2": "layer2.2", "stream3": "layer3.1"}

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_planes = widths[0]
        for stage, planes in enumerate(widths, start=1):
            blocks = []
            for b in range(self.blocks_per_stage):
                stride = 2 if stage > 1 and b == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(self.avgpool(out), 1))

    def permutation_spec(self) -> PermutationSpec:
        """Groups: ``stream{s}`` (residual stream of stage s, shared with the stem for s=1
        because stage 1 has no shortcut conv) and ``layer{s}.{b}.inner`` (after conv1/bn1/relu1)."""
        pooled = self.matching_stream == "pooled"
        b = SpecBuilder(self)
        stream = "stream1"
        b.layer("conv1", stream, None)
        b.norm("bn1", stream)
        if pooled:
            b.act(stream, "relu")
        for s in (1, 2, 3):
            stage = getattr(self, f"layer{s}")
            prev, stream = stream, f"stream{s}"
            for i, block in enumerate(stage):
                name, inner = f"layer{s}.{i}", f"layer{s}.{i}.inner"
                block_in = prev if i == 0 else stream
                b.layer(f"{name}.conv1", inner, block_in)
                b.norm(f"{name}.bn1", inner)
                b.act(inner, f"{name}.relu1")
                b.layer(f"{name}.conv2", stream, inner)
                b.norm(f"{name}.bn2", stream)
                if len(block.shortcut):
                    b.layer(f"{name}.shortcut.0", stream, block_in)
                    b.norm(f"{name}.shortcut.1", stream)
                if pooled or self.RELEASED_STREAM_TAPS[stream] == name:
                    b.act(stream, name)
        b.layer("linear", None, stream)
        return b.build()

    def prunable_parameters(self) -> list[str]:
        """Every conv and linear weight except the shortcut convs (stem and classifier included)."""
        return conv_linear_weights(self)

"""VGG11 as modified by Jordan et al. (2023, REPAIR) and used by the paper.

Eight 3×3 convs with bias, each followed by ReLU (and BatchNorm before it when asked),
five 2×2 max-pools and a single linear classifier 512w→classes; no BatchNorm by default.
The pools use ``ceil_mode`` and a global average pool precedes the classifier: both are
no-ops on 32×32 inputs (the paper's setting) and let 28×28 inputs (Fashion-MNIST) through.
"""

from __future__ import annotations

import torch
from torch import nn

from matching.spec import PermutationSpec
from models.base import SpecBuilder, conv_linear_weights

VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    # No residual stream: each group is read at its one ReLU, which is also what the released VGG11 matching read,
    # so both matching.stream choices give the same spec.
    matching_streams = ("pooled", "released")

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 1,
        batchnorm: bool = False,
        init_weights: bool = False,
        config: tuple[int | str, ...] = VGG11_CONFIG,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        layers: list[nn.Module] = []
        self._convs: list[tuple[str, str | None, str]] = []  # (conv, batchnorm, relu) module names
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                continue
            conv_idx = len(layers)
            layers.append(nn.Conv2d(channels, int(item) * width, 3, padding=1))
            bn = None
            if batchnorm:
                bn = f"features.{len(layers)}"
                layers.append(nn.BatchNorm2d(int(item) * width))
            self._convs.append((f"features.{conv_idx}", bn, f"features.{len(layers)}"))
            layers.append(nn.ReLU())
            channels = int(item) * width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        if init_weights:
            self._kaiming_init()

    def _kaiming_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def permutation_spec(self) -> PermutationSpec:
        """Groups ``conv1`` … ``conv8``: the output channels of each conv, read after its ReLU."""
        b = SpecBuilder(self)
        prev = None
        for k, (conv, bn, relu) in enumerate(self._convs, start=1):
            group = f"conv{k}"
            b.layer(conv, group, prev)
            if bn is not None:
                b.norm(bn, group)
            b.act(group, relu)
            prev = group
        b.layer("classifier", None, prev)
        return b.build()

    def prunable_parameters(self) -> list[str]:
        """Every conv and linear weight, the first conv and the classifier included."""
        return conv_linear_weights(self)


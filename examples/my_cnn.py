"""A model of your own, run without writing a permutation spec: a small CNN with a flatten.

Run it through both phases with ``python experiment.py -config examples/my_cnn.yaml -seed 0``
(docs/own-model.md). The runner builds ``MyCNN(in_channels=..., num_classes=..., **model_kwargs)``
and derives its permutation spec from the traced graph: the two conv groups, the hidden linear
group, and the first linear layer's input axis carrying conv2's channels repeated over the 7x7
positions the flatten spreads each channel over.
"""

from __future__ import annotations

import torch
from torch import nn


class MyCNN(nn.Module):
    """conv-BN-ReLU-pool twice, flatten (``width*2`` channels x 7 x 7 on 28x28 inputs), two linear layers."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width * 7 * 7, hidden)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.flatten(x, 1)
        return self.classifier(self.dropout(torch.relu(self.fc(x))))

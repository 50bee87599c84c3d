"""uint8 images to normalised float32, on the images' device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class Normalizer:
    """``(x / 255 - mean) / std`` per channel, folded into one multiply and one add."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device) -> None:
        mean_t = torch.tensor(mean, dtype=torch.float64)
        std_t = torch.tensor(std, dtype=torch.float64)
        shape = (1, len(mean), 1, 1)
        self.scale = (1.0 / (255.0 * std_t)).to(torch.float32).view(shape).to(device)
        self.shift = (-mean_t / std_t).to(torch.float32).view(shape).to(device)

    def __call__(self, x: Tensor) -> Tensor:
        return x.to(torch.float32).mul_(self.scale).add_(self.shift)

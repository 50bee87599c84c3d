"""Random crop (zero padding) and horizontal flip (where the dataset has flips) applied to a whole batch at once.

Equivalent, image by image, to torchvision's ``RandomCrop(size, padding=4)``
followed by ``RandomHorizontalFlip()`` on uint8 images, but done as one pad and
one ``torch.gather`` for the whole batch on whatever device the batch lives on,
instead of a Python loop over PIL images in DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class CropFlipParams:
    """Per-image crop offsets into the padded image (0..2*padding) and flip flags."""

    top: Tensor  # int64 (N,)
    left: Tensor  # int64 (N,)
    flip: Tensor  # bool (N,)

    def to(self, device: torch.device | str) -> CropFlipParams:
        top, left, flip = (t.to(device, non_blocking=True) for t in (self.top, self.left, self.flip))
        return CropFlipParams(top, left, flip)

    def __getitem__(self, index: slice) -> CropFlipParams:
        return CropFlipParams(self.top[index], self.left[index], self.flip[index])


def draw_crop_flip(n: int, padding: int, generator: torch.Generator, flip: bool = True) -> CropFlipParams:
    """Draw offsets uniformly in [0, 2*padding] and flips with probability 1/2 (none unless ``flip``).

    The flips are drawn either way, after the offsets, so turning them off leaves every crop as it was.
    """
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return CropFlipParams(top, left, flips if flip else torch.zeros_like(flips))


def crop_flip(x: Tensor, params: CropFlipParams, padding: int = 4) -> Tensor:
    """Zero-pad ``x`` (N,C,H,W) by ``padding``, crop H×W at the given offsets, then flip the flagged images.

    Offsets (``padding``, ``padding``) with no flip return ``x`` unchanged. Works
    for any dtype; use it on uint8 before normalising so the padding is pixel
    value 0, exactly as torchvision pads the PIL image.
    """
    n, c, h, w = x.shape
    top, left, flip = params.top.to(x.device), params.left.to(x.device), params.flip.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    width = w + 2 * padding
    rows = top[:, None] + torch.arange(h, device=x.device)  # (N,H)
    columns = torch.arange(w, device=x.device).expand(n, w)
    columns = torch.where(flip[:, None], (w - 1) - columns, columns) + left[:, None]  # (N,W)
    flat_index = (rows[:, :, None] * width + columns[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    out = torch.gather(padded.reshape(n, c, -1), 2, flat_index)
    return out.view(n, c, h, w)


def random_crop_flip(x: Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> Tensor:
    """``crop_flip`` with parameters drawn from ``generator`` (drawn on CPU, then moved to ``x``'s device)."""
    return crop_flip(x, draw_crop_flip(x.shape[0], padding, generator, flip), padding)

"""The original research code's way of training, rebuilt as the baseline to measure against.

What the paper's released code did per epoch (its ``loaders.py`` / ``training.py``):
a torchvision-style CIFAR dataset holding HWC uint8 images, a PIL image per
sample through ``RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor +
Normalize`` (ImageNet mean/std) in a ``DataLoader``; the model in PyTorch's
default NCHW layout with functional (not in-place) ReLUs; masks through
``torch.nn.utils.prune`` forward pre-hooks (``weight = weight_orig * mask`` on
every forward); ``loss.item()`` and an accuracy count read every step; and a
full test-set evaluation after every epoch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the released code normalised CIFAR-10 with these
IMAGENET_STD = (0.229, 0.224, 0.225)


class CifarLike(Dataset):
    """What ``torchvision.datasets.CIFAR10`` does: HWC uint8 array, one PIL image per item."""

    def __init__(self, images_nchw: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.data = np.ascontiguousarray(images_nchw.numpy().transpose(0, 2, 3, 1))
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def train_transform() -> transforms.Compose:
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def test_transform() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def as_original_model(model: nn.Module) -> nn.Module:
    """The original's ResNet20: NCHW, every ReLU out of place (its ``F.relu``)."""
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model.to(memory_format=torch.contiguous_format)


def apply_prune_hooks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """``prune.custom_from_mask`` on every masked weight, as the original code masked its models."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module_name, param = name.rsplit(".", 1)
        prune.custom_from_mask(modules[module_name], param, mask.to(torch.float32))


class OriginalPipeline:
    """One epoch = the original's training loop over a DataLoader, then a full test evaluation."""

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        test_set: Dataset,
        *,
        batch_size: int,
        masks: dict[str, torch.Tensor] | None = None,
        lr: float = 0.08,
        epochs: int = 200,
        num_workers: int = 0,
    ) -> None:
        self.model = as_original_model(model)
        if masks:
            apply_prune_hooks(self.model, masks)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs)
        self.train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=num_workers)
        self.test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    def epoch(self) -> tuple[float, float]:
        """Train one epoch, evaluate on the test set; returns (train loss, test accuracy %)."""
        model = self.model
        model.train()
        running, seen = 0.0, 0
        correct = 0
        for x, y in self.train_loader:
            self.optimizer.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            self.optimizer.step()
            running += loss.item() * y.shape[0]
            correct += out.argmax(1).eq(y).sum().item()
            seen += y.shape[0]
        self.scheduler.step()
        model.eval()
        test_correct, test_seen = 0, 0
        with torch.no_grad():
            for x, y in self.test_loader:
                out = model(x)
                F.cross_entropy(out, y).item()
                test_correct += out.argmax(1).eq(y).sum().item()
                test_seen += y.shape[0]
        return running / max(seen, 1), 100.0 * test_correct / max(test_seen, 1)

"""Evaluation: accuracy (percent) and mean cross-entropy over batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.device import autocast


@dataclass(frozen=True)
class EvalResult:
    accuracy: float  # percent, 0-100
    loss: float  # mean cross-entropy per example

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "loss": self.loss}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EvalResult:
    """Accuracy and loss of ``model`` in eval mode; restores the previous mode.

    Sums are kept on the device and read once at the end, so evaluation does
    not synchronise with the device after every batch.
    """
    was_training = model.training
    model.eval()
    correct = None
    loss_sum = None
    count = 0
    for x, y in batches:
        with autocast(x.device):
            logits = model(x).float()
        batch_loss = F.cross_entropy(logits, y, reduction="sum")
        batch_correct = (logits.argmax(dim=1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        count += y.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no batches")
    return EvalResult(accuracy=100.0 * float(correct) / count, loss=float(loss_sum) / count)

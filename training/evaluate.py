"""Evaluation: top-1 and top-5 accuracy (percent) and mean cross-entropy over batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.device import autocast

TOP_K = 5


@dataclass(frozen=True)
class EvalResult:
    accuracy: float  # top-1, percent, 0-100
    loss: float  # mean cross-entropy per example
    # Top-5, percent: ImageNet's tables report it. With at most 5 classes every label is in the top 5 (100 %).
    top5: float

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "loss": self.loss, "top5": self.top5}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EvalResult:
    """Accuracy and loss of ``model`` in eval mode; restores the previous mode.

    Sums are kept on the device and read once at the end, so evaluation does
    not synchronise with the device after every batch.
    """
    was_training = model.training
    model.eval()
    correct = None
    correct5 = None
    loss_sum = None
    count = 0
    for x, y in batches:
        with autocast(x.device):
            logits = model(x).float()
        batch_loss = F.cross_entropy(logits, y, reduction="sum")
        # Top-1 stays argmax (ties resolved as before); top-5 asks whether the label is among the 5 largest.
        batch_correct = (logits.argmax(dim=1) == y).sum()
        top = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices
        batch_correct5 = (top == y[:, None]).any(dim=1).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        correct5 = batch_correct5 if correct5 is None else correct5 + batch_correct5
        count += y.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no batches")
    return EvalResult(accuracy=100.0 * float(correct) / count, loss=float(loss_sum) / count,
                      top5=100.0 * float(correct5) / count)


def accuracy_text(result: EvalResult, num_classes: int) -> str:
    """``test accuracy 91.23%``, with `` (top-5 97.10%)`` for more than 10 classes: where top-5 tells something.

    On 10 classes top-5 is near 100 % for any trained model and would only clutter CIFAR-10's output.
    """
    top5 = f" (top-5 {result.top5:.2f}%)" if num_classes > 10 else ""
    return f"test accuracy {result.accuracy:.2f}%{top5}"

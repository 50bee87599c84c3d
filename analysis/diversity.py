"""Ensemble accuracy and diversity of M models' predictions (the paper's Table 1; Fort et al. 2020, Evci et al. 2022).

Apply it to any predictions: ``ensemble_metrics(probs, labels)`` with ``probs``
a list of M tensors [N, C] of softmax probabilities on the same N test points.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

# Probabilities are clamped to at least this inside every logarithm, so an exact zero (a saturated softmax, a
# one-hot prediction) gives a large finite divergence instead of inf or NaN. The weights of the sums stay unclamped:
# a zero-probability class adds exactly nothing to KL(p || q) when p is zero there.
EPS = 1e-12


def _log(p: torch.Tensor) -> torch.Tensor:
    return p.clamp_min(EPS).log()


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats per row of [N, C] probabilities (logs of values clamped to >= EPS)."""
    return (p * (_log(p) - _log(q))).sum(dim=-1)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence in nats per row: the mean KL of p and q to their midpoint; at most ln 2."""
    m = (p + q) / 2
    return (kl_divergence(p, m) + kl_divergence(q, m)) / 2


def js_midpoint_first(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """½[KL(m || p) + KL(m || q)] in nats per row, m the midpoint: the Jensen–Shannon form with the KL arguments
    swapped, which is what ``torch.nn.functional.kl_div(p.log(), m)`` gives when read as KL(p || m) (that call
    computes KL(m || p)). Unbounded, unlike the true JS; ≈ JS for close p and q, up to half of KL(p || q) for
    confident disagreements.

    It is the definition that reproduces the paper's Table 1: there JS/KL lies between 0.28 and 0.37 in all eight
    rows, highest where the ensembles disagree most confidently, while the true JS is at most KL/4 (docs/paper.md).
    The paper cites Evci et al. 2022 and Fort et al. 2020 for its metrics; neither states this form, and their
    evaluation code is not published, so this is a reconstruction, offered beside the true JS (``js``).
    """
    m = (p + q) / 2
    return (kl_divergence(m, p) + kl_divergence(m, q)) / 2


def ensemble_metrics(probs: Sequence[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of each model and of their ensemble, and how much the models differ, on the same test points.

    ``probs``: M >= 2 tensors [N, C] of softmax probabilities; ``labels``: [N] class indices. Returns
    ``mean_accuracy`` and ``std_accuracy`` (percent; the sample standard deviation, n - 1, over the M models),
    ``ensemble_accuracy`` (percent; argmax of the mean probability vector), ``disagreement`` (fraction of test
    points on which two models' argmax differ, averaged over the M(M-1)/2 unordered pairs), ``kl`` (KL(p_i || p_j)
    in nats, averaged over test points and the M(M-1) ordered pairs i != j) and ``js`` (Jensen–Shannon in nats,
    averaged over test points and unordered pairs), and ``js_midpoint_first`` (:func:`js_midpoint_first`, the form
    that reproduces the paper's Table 1, averaged likewise). Computed in float64. Probabilities are clamped to at least
    ``EPS`` = 1e-12 inside logarithms, so exact zeros give finite values (KL of a one-hot prediction against one
    that puts zero on its class is -ln(1e-12) = 27.63 nats), never NaN or inf. An argmax tie goes to the lowest
    class index (``torch.argmax``).
    """
    if len(probs) < 2:
        raise ValueError(f"ensemble_metrics needs the predictions of at least 2 models, got {len(probs)}")
    p = torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in probs])
    if p.dim() != 3:
        raise ValueError(f"probs: expected M tensors of shape [N, C], got shape {tuple(p.shape[1:])}")
    labels = torch.as_tensor(labels).long()
    if labels.shape != (p.shape[1],):
        raise ValueError(f"labels: expected shape [{p.shape[1]}] (one per test point), got {tuple(labels.shape)}")
    m = p.shape[0]
    preds = p.argmax(dim=-1)  # [M, N]
    accs = (preds == labels).double().mean(dim=1) * 100
    pairs = list(itertools.combinations(range(m), 2))
    disagreement = sum(float((preds[i] != preds[j]).double().mean()) for i, j in pairs) / len(pairs)
    kl = sum(float(kl_divergence(p[i], p[j]).mean() + kl_divergence(p[j], p[i]).mean()) for i, j in pairs)
    js = sum(float(js_divergence(p[i], p[j]).mean()) for i, j in pairs) / len(pairs)
    js_paper = sum(float(js_midpoint_first(p[i], p[j]).mean()) for i, j in pairs) / len(pairs)
    ensemble = p.mean(dim=0).argmax(dim=-1)
    return {
        "mean_accuracy": float(accs.mean()),
        "std_accuracy": float(accs.std(unbiased=True)),
        "ensemble_accuracy": float((ensemble == labels).double().mean() * 100),
        "disagreement": disagreement,
        "kl": kl / (2 * len(pairs)),
        "js": js,
        "js_midpoint_first": js_paper,
    }


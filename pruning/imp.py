"""Iterative magnitude pruning (IMP-FT as in the paper's code).

Each round removes ``prune_perc`` of the remaining weights (the last round
shrunk so the target is not overshot), then hands the model to ``finetune``;
rounds stop once the sparsity is within ``tolerance`` of the target. Training
is injected, so this module knows nothing of optimizers or data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from pruning.magnitude import prune_global_magnitude
from pruning.masks import Masks, full_masks, layer_sparsity, sparsity


class PruningStalled(RuntimeError):
    """A round that would remove no weight: IMP would otherwise loop to its round cap doing nothing."""

    def __init__(self, round_: int, amount: float, remaining: int, current: float):
        self.round, self.amount, self.remaining, self.current = round_, amount, remaining, current
        super().__init__(f"IMP round {round_} removes no weight ({100 * amount:.3g}% of the {remaining} remaining "
                         f"rounds to zero) at sparsity {100 * current:.3f}%")


@dataclass
class ImpRound:
    round: int  # 1-based
    amount: float  # fraction of the remaining weights removed this round
    sparsity: float
    accuracy: float
    loss: float
    layer_sparsity: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def next_amount(current: float, target: float, prune_perc: float) -> float:
    """The fraction of remaining weights to remove now: ``prune_perc``, capped at the target."""
    if current >= target:
        return 0.0
    return min(prune_perc, (target - current) / (1.0 - current))


def reached(current: float, target: float, tolerance: float, total: int | None = None) -> bool:
    """Whether sparsity ``current`` is within ``tolerance`` of ``target``.

    With ``total`` weights, being within half a weight of the target counts:
    no whole number of weights is closer, so a ``tolerance`` of 0 means "as
    close as whole weights allow" instead of rounds that can never get there.
    The 1e-12 absorbs float error (1 - 1280/1600 is one ulp below 0.2).
    """
    slack = 0.5 / total if total else 0.0
    return current >= target - tolerance - slack - 1e-12


def planned_amounts(target: float, prune_perc: float, tolerance: float, max_rounds: int) -> list[float]:
    """The amount of every round IMP will run (from the schedule alone, ignoring rounding to whole weights)."""
    s, amounts = 0.0, []
    while len(amounts) < max_rounds and not reached(s, target, tolerance):
        amounts.append(next_amount(s, target, prune_perc))
        s = s + (1.0 - s) * amounts[-1]
    return amounts


def planned_rounds(target: float, prune_perc: float, tolerance: float, max_rounds: int) -> int:
    """Rounds IMP will run towards ``target``."""
    return len(planned_amounts(target, prune_perc, tolerance, max_rounds))


def planned_schedule(total: int, target: float, prune_perc: float, tolerance: float,
                     max_rounds: int) -> list[tuple[float, int]]:
    """(amount, weights removed) of every round IMP will run on ``total`` prunable weights.

    Magnitude pruning removes ``round(amount * remaining)`` weights and the
    next amount follows from the sparsity reached, so the schedule is known in
    whole weights, with the very amounts IMP will compute, before any
    training. A round that would remove none raises :class:`PruningStalled`
    here, before the hours of fine-tuning that would come before it.
    """
    kept, rounds = total, []
    while len(rounds) < max_rounds:
        current = 1.0 - kept / total if total else 0.0
        if reached(current, target, tolerance, total):
            break
        amount = next_amount(current, target, prune_perc)
        n = round(amount * kept)
        if n == 0:
            raise PruningStalled(len(rounds) + 1, amount, kept, current)
        rounds.append((amount, n))
        kept -= n
    return rounds


def planned_counts(total: int, target: float, prune_perc: float, tolerance: float, max_rounds: int) -> list[int]:
    """The number of weights each round will remove (see :func:`planned_schedule`)."""
    return [n for _, n in planned_schedule(total, target, prune_perc, tolerance, max_rounds)]


def iterative_magnitude_pruning(
    model: nn.Module,
    prunable: list[str],
    *,
    target: float,
    prune_perc: float,
    tolerance: float,
    max_rounds: int,
    finetune: Callable[[int, Masks], dict[str, float]],
    masks: Masks | None = None,
    start_round: int = 0,
    on_round: Callable[[ImpRound, Masks], None] | None = None,
    restore: Callable[[int, float], tuple[Masks, dict[str, float]] | None] | None = None,
) -> Masks:
    """Prune ``model`` in place; returns the final masks.

    ``finetune(round, masks)`` trains the masked model and returns its test
    ``{"accuracy", "loss"}``. ``on_round`` is called after each completed round
    (to persist it); ``masks``/``start_round`` resume from such a record.
    ``restore(round, amount)`` may return a stored result of exactly this round
    (having loaded its weights into the model): ``(masks, metrics)``; the round
    is then neither pruned nor trained. A round is determined by the amounts of
    all rounds up to it, so runs towards different targets share their common
    first rounds (97 % repeats every round of 95 %).
    """
    params = dict(model.named_parameters())
    missing = [n for n in prunable if n not in params]
    if missing:
        raise KeyError(f"prunable parameters not in the model: {missing}")
    if masks is None:
        masks = full_masks({n: params[n].detach() for n in prunable})
    rnd = start_round
    total = sum(m.numel() for m in masks.values())
    while rnd < max_rounds and not reached(sparsity(masks), target, tolerance, total):
        amount = next_amount(sparsity(masks), target, prune_perc)
        rnd += 1
        stored = restore(rnd, amount) if restore else None
        if stored is not None:
            masks, metrics = stored
        else:
            remaining = sum(int(m.sum()) for m in masks.values())
            masks = prune_global_magnitude({n: params[n].detach() for n in prunable}, masks, amount)
            if sum(int(m.sum()) for m in masks.values()) == remaining:
                raise PruningStalled(rnd, amount, remaining, sparsity(masks))
            with torch.no_grad():
                for n in prunable:
                    params[n].mul_(masks[n].to(params[n].dtype))
            metrics = finetune(rnd, masks)
        record = ImpRound(round=rnd, amount=amount, sparsity=sparsity(masks), accuracy=metrics["accuracy"],
                          loss=metrics["loss"], layer_sparsity=layer_sparsity(masks))
        if on_round:
            on_round(record, masks)
    return masks

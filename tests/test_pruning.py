"""Pruning science (DESIGN §5, §6): global magnitude pruning, the IMP schedule, the random-mask control, sparsity.

Each test here is meant to fail under one of the source mutations listed in scripts/mutation_check.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pruning.imp import ImpRound, iterative_magnitude_pruning, next_amount, planned_amounts, planned_rounds, reached
from pruning.magnitude import prune_global_magnitude
from pruning.masks import Masks, full_masks, layer_sparsity, random_masks_like, sparsity, weight_sparsity

# derandomize: the mutation check must give the same verdict on every run.
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


# ---------------------------------------------------------------------------------------------------------------------
# global magnitude pruning


@st.composite
def pruning_problems(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], Masks, float]:
    """1-4 layers of random shapes and scales (some with exact ties), random existing masks, an amount in [0, 1)."""
    n_layers = draw(st.integers(min_value=1, max_value=4))
    gen = torch.Generator().manual_seed(draw(st.integers(min_value=0, max_value=2**31 - 1)))
    ties = draw(st.booleans())
    weights, masks = {}, {}
    for i in range(n_layers):
        shape = tuple(draw(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=3)))
        scale = 10.0 ** draw(st.integers(min_value=-4, max_value=2))
        if ties:
            mag = torch.randint(1, 4, shape, generator=gen).float()
        else:
            mag = torch.rand(shape, generator=gen) + 0.01
        sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
        keep_p = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
        mask = torch.rand(shape, generator=gen) < keep_p
        # Masked-out entries are zero (as after IMP) or merely tiny: either way they are the smallest |w|,
        # so a pruner that looked at them again would pick them first.
        masked_factor = draw(st.sampled_from([0.0, 1e-9]))
        w = sign * mag * scale
        name = f"layer{n_layers - i}.weight"  # not in sorted order, as a model's names need not be
        weights[name] = torch.where(mask, w, w * masked_factor)
        masks[name] = mask
    amount = draw(st.floats(min_value=0.0, max_value=0.99))
    return weights, masks, amount


def _flat(tensors: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([tensors[n].flatten() for n in names])


@PROPERTY
@given(problem=pruning_problems())
def test_global_magnitude_removes_exactly_the_smallest_unmasked_weights(problem):
    weights, masks, amount = problem
    out = prune_global_magnitude(weights, masks, amount)

    assert set(out) == set(masks)
    for n in masks:
        assert out[n].shape == masks[n].shape and out[n].dtype == torch.bool
    names = sorted(masks)
    old, new, mag = _flat(masks, names), _flat(out, names), _flat(weights, names).abs()
    assert not (new & ~old).any(), "a previously masked weight came back"
    removed = old & ~new
    remaining = int(old.sum())
    assert int(removed.sum()) == round(amount * remaining)
    if removed.any() and new.any():
        # Global ranking: ties may be broken either way, but nothing kept may be smaller than anything removed.
        assert mag[removed].max() <= mag[new].min()


def test_global_magnitude_ranks_across_layers_not_within_each():
    gen = torch.Generator().manual_seed(0)
    weights = {"tiny": torch.randn(10, 10, generator=gen) * 1e-3, "big": torch.randn(10, 10, generator=gen) + 10.0}
    out = prune_global_magnitude(weights, full_masks(weights), 0.5)
    # Per-layer pruning would take 50 from each; global pruning takes all 100 from the tiny layer.
    assert int(out["tiny"].sum()) == 0
    assert bool(out["big"].all())


def test_global_magnitude_prunes_the_smallest_not_the_largest():
    w = {"a": torch.tensor([1.0, -5.0, 3.0, -0.5]), "b": torch.tensor([[2.0, -4.0], [0.1, 6.0]])}
    out = prune_global_magnitude(w, full_masks(w), 0.5)  # 4 of 8 go: 0.1, 0.5, 1, 2
    assert out["a"].tolist() == [False, True, True, False]
    assert out["b"].tolist() == [[False, True], [False, True]]


def test_global_magnitude_rounds_the_count_to_nearest():
    w = {"a": torch.arange(1.0, 11.0)}
    out = prune_global_magnitude(w, full_masks(w), 0.37)  # 3.7 weights -> 4, not 3
    assert out["a"].tolist() == [False] * 4 + [True] * 6


def test_global_magnitude_counts_only_remaining_weights():
    # After IMP the masked weights are zero: they must neither be counted nor chosen again.
    w = {"a": torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0, 1.0, 4.0, 2.0, 3.0, 6.0])}
    mask = {"a": w["a"] != 0}
    out = prune_global_magnitude(w, mask, 0.5)  # half of the 6 remaining: 1, 2, 3
    assert out["a"].tolist() == [False] * 4 + [True, False, True, False, False, True]


def test_global_magnitude_amount_zero_keeps_the_mask():
    w = {"a": torch.randn(4, 5)}
    mask = {"a": torch.rand(4, 5) < 0.5}
    assert torch.equal(prune_global_magnitude(w, mask, 0.0)["a"], mask["a"])


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5])
def test_global_magnitude_rejects_amounts_outside_unit_interval(amount):
    w = {"a": torch.randn(3)}
    with pytest.raises(ValueError):
        prune_global_magnitude(w, full_masks(w), amount)


# ---------------------------------------------------------------------------------------------------------------------
# the IMP schedule


def test_next_amount_is_prune_perc_until_the_cap_then_exactly_the_rest():
    assert next_amount(0.0, 0.9, 0.2) == 0.2
    assert next_amount(0.8, 0.9, 0.2) == 0.2  # 0.5 of the remaining would be needed; cap at prune_perc
    capped = next_amount(0.88, 0.9, 0.2)
    assert capped == pytest.approx(0.02 / 0.12)
    assert 0.88 + (1 - 0.88) * capped == pytest.approx(0.9)
    assert next_amount(0.9, 0.9, 0.2) == 0.0
    assert next_amount(0.95, 0.9, 0.2) == 0.0


@PROPERTY
@given(current=st.floats(min_value=0.0, max_value=0.99), target=st.floats(min_value=0.01, max_value=0.99),
       prune_perc=st.floats(min_value=0.01, max_value=0.95))
def test_next_amount_never_overshoots(current, target, prune_perc):
    a = next_amount(current, target, prune_perc)
    assert 0.0 <= a <= prune_perc
    after = current + (1.0 - current) * a
    if current < target:
        assert after <= target + 1e-12
        if a < prune_perc:
            assert after == pytest.approx(target, abs=1e-12)


def test_reached_includes_the_boundary():
    assert reached(0.5, 0.5, 0.0)
    assert reached(0.5, 0.75, 0.25)
    assert not reached(0.49, 0.75, 0.25)
    assert not reached(0.74, 0.75, 0.0)


def test_planned_rounds_of_paper_like_schedules():
    assert planned_rounds(0.5, 0.5, 0.0, 100) == 1  # lands exactly on the target: no extra empty round
    assert planned_rounds(0.9, 0.2, 0.005, 100) == 11  # 1 - 0.8**10 = 0.893 < 0.895
    assert planned_rounds(0.9, 0.2, 0.005, 5) == 5  # the round cap


@PROPERTY
@given(target=st.floats(min_value=0.02, max_value=0.99), prune_perc=st.floats(min_value=0.01, max_value=0.95),
       tolerance=st.sampled_from([1e-6, 1e-3, 0.01]))
def test_planned_amounts_remove_prune_perc_of_the_remaining_then_cap(target, prune_perc, tolerance):
    amounts = planned_amounts(target, prune_perc, tolerance, 1000)
    assert len(amounts) == planned_rounds(target, prune_perc, tolerance, 1000)
    assert amounts, "a target above the tolerance takes at least one round"
    assert all(a == prune_perc for a in amounts[:-1])
    assert 0.0 < amounts[-1] <= prune_perc
    kept = 1.0
    for a in amounts:
        kept *= 1.0 - a
    assert target - tolerance - 1e-9 <= 1.0 - kept <= target + 1e-9
    # No round too many: one fewer full round had not reached the target.
    assert 1.0 - (1.0 - prune_perc) ** (len(amounts) - 1) < target - tolerance


class _TwoLinear(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(30, 40)
        self.fc2 = nn.Linear(40, 10)


PRUNABLE = ["fc1.weight", "fc2.weight"]
TOTAL = 30 * 40 + 40 * 10


class _RecordingFinetune:
    """Stands in for training: records what it is given and, if asked, rescales the surviving weights
    (as training would) so that the next round's ranking differs from the last one's."""

    def __init__(self, model: nn.Module, perturb: bool, seed: int = 1):
        self.params = dict(model.named_parameters())
        self.perturb = perturb
        self.gen = torch.Generator().manual_seed(seed)
        self.rounds: list[int] = []
        self.masks: list[Masks] = []
        self.masked_nonzero: list[int] = []
        self.weights_after: list[dict[str, torch.Tensor]] = []

    def __call__(self, rnd: int, masks: Masks) -> dict[str, float]:
        self.rounds.append(rnd)
        self.masks.append({n: m.clone() for n, m in masks.items()})
        self.masked_nonzero.append(sum(int((self.params[n].detach()[~masks[n]] != 0).sum()) for n in PRUNABLE))
        if self.perturb:
            with torch.no_grad():
                for n in PRUNABLE:
                    p = self.params[n]
                    p.mul_(0.1 + 1.8 * torch.rand(p.shape, generator=self.gen))
        self.weights_after.append({n: self.params[n].detach().clone() for n in PRUNABLE})
        return {"accuracy": float(rnd), "loss": 1.0 / rnd}


def _run_imp(target: float, prune_perc: float, tolerance: float, max_rounds: int = 40, perturb: bool = False):
    model = _TwoLinear()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    finetune = _RecordingFinetune(model, perturb)
    records: list[tuple[ImpRound, Masks]] = []
    masks = iterative_magnitude_pruning(
        model, PRUNABLE, target=target, prune_perc=prune_perc, tolerance=tolerance, max_rounds=max_rounds,
        finetune=finetune, on_round=lambda rec, m: records.append((rec, {n: t.clone() for n, t in m.items()})))
    return model, initial, finetune, records, masks


@pytest.mark.parametrize(("target", "prune_perc", "tolerance"),
                         [(0.8, 0.2, 0.0), (0.9, 0.2, 0.005), (0.95, 0.2, 1e-3), (0.97, 0.2, 1e-3), (0.6, 0.5, 1e-3)])
def test_imp_rounds_follow_the_schedule(target, prune_perc, tolerance):
    model, initial, finetune, records, masks = _run_imp(target, prune_perc, tolerance, perturb=True)
    n_rounds = planned_rounds(target, prune_perc, tolerance, 40)

    assert finetune.rounds == list(range(1, n_rounds + 1)), "finetune once per round"
    assert [r.round for r, _ in records] == finetune.rounds
    assert finetune.masked_nonzero == [0] * n_rounds, "masked weights must be zero before fine-tuning"
    prev = full_masks({n: initial[n] for n in PRUNABLE})
    weights_before = {n: initial[n] for n in PRUNABLE}
    for i, (rec, m) in enumerate(records):
        assert rec.amount == next_amount(sparsity(prev), target, prune_perc)
        if i < len(records) - 1:
            assert rec.amount == prune_perc
        else:
            assert 0.0 < rec.amount <= prune_perc
        remaining = sum(int(t.sum()) for t in prev.values())
        assert remaining - sum(int(t.sum()) for t in m.values()) == round(rec.amount * remaining)
        # The mask comes from the weights as they are now (after the last fine-tuning), not as they were.
        expected = prune_global_magnitude(weights_before, prev, rec.amount)
        assert all(torch.equal(m[n], expected[n]) for n in PRUNABLE), f"round {rec.round}: stale ranking"
        assert all(torch.equal(m[n], finetune.masks[i][n]) for n in PRUNABLE), "finetune got other masks"
        assert rec.sparsity == sparsity(m) and rec.layer_sparsity == layer_sparsity(m)
        assert (rec.accuracy, rec.loss) == (float(rec.round), 1.0 / rec.round)
        prev, weights_before = m, finetune.weights_after[i]
    assert all(torch.equal(masks[n], prev[n]) for n in PRUNABLE)
    s = sparsity(masks)
    assert target - tolerance - 1e-12 <= s <= target + 1.0 / TOTAL + 1e-12
    state = model.state_dict()
    assert weight_sparsity(state, PRUNABLE) == s, "masked weights are exactly zero, unmasked ones are not"
    for n in ("fc1.bias", "fc2.bias"):
        assert torch.equal(state[n], initial[n]), "biases are not pruned"


@PROPERTY
@given(target=st.floats(min_value=0.05, max_value=0.97), prune_perc=st.floats(min_value=0.1, max_value=0.8),
       tolerance=st.sampled_from([1e-3, 0.005, 0.02]))
def test_imp_reaches_the_target_within_tolerance_and_never_overshoots(target, prune_perc, tolerance):
    *_, masks = _run_imp(target, prune_perc, tolerance)
    s = sparsity(masks)
    # Rounding to whole weights may overshoot by half a weight at most; never by a whole one.
    assert s <= target + 1.0 / TOTAL + 1e-12
    assert s >= target - tolerance - 1e-12


def test_imp_with_zero_tolerance_hits_a_reachable_target():
    *_, masks = _run_imp(0.8, 0.2, 0.0)
    assert sparsity(masks) == pytest.approx(0.8, abs=1.0 / TOTAL)


def test_imp_with_zero_tolerance_stops_on_a_target_hit_up_to_float_error():
    _, _, finetune, _, masks = _run_imp(0.2, 0.2, 0.0)
    assert finetune.rounds == [1]
    assert int(sum(m.sum() for m in masks.values())) == TOTAL - 320


def test_imp_with_zero_tolerance_stops_within_one_weight_of_an_unreachable_target():
    _, _, finetune, _, masks = _run_imp(0.9003, 0.2, 0.0)  # 1440.48 weights
    assert abs(sparsity(masks) - 0.9003) <= 1.0 / TOTAL
    assert len(finetune.rounds) == planned_rounds(0.9003, 0.2, 0.0, 40)


# ---------------------------------------------------------------------------------------------------------------------
# the random-mask control


def _uneven_masks() -> Masks:
    gen = torch.Generator().manual_seed(0)

    def with_density(shape: tuple[int, ...], density: float) -> torch.Tensor:
        n = 1
        for d in shape:
            n *= d
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=gen)[:round(density * n)]] = True
        return flat.view(shape)

    return {"conv.weight": with_density((8, 3, 3, 3), 0.9), "fc1.weight": with_density((50, 40), 0.02),
            "fc2.weight": with_density((10, 50), 0.5), "dead.weight": with_density((4, 4), 0.0),
            "dense.weight": with_density((3, 5), 1.0)}


def test_random_masks_keep_each_layers_count():
    masks = _uneven_masks()
    out = random_masks_like(masks, torch.Generator().manual_seed(1))
    assert set(out) == set(masks)
    for n, m in masks.items():
        assert out[n].shape == m.shape and out[n].dtype == torch.bool
        assert int(out[n].sum()) == int(m.sum()), f"{n}: per-layer density must match the given mask"


@PROPERTY
@given(shapes=st.lists(st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=3), min_size=1,
                       max_size=4),
       densities=st.lists(st.sampled_from([0.0, 0.05, 0.5, 0.95, 1.0]), min_size=4, max_size=4),
       seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_random_masks_keep_each_layers_count_for_any_shapes(shapes, densities, seed):
    gen = torch.Generator().manual_seed(seed)
    masks = {f"l{i}": torch.rand(tuple(s), generator=gen) < densities[i] for i, s in enumerate(shapes)}
    out = random_masks_like(masks, gen)
    assert {n: (t.shape, int(t.sum())) for n, t in out.items()} == {n: (t.shape, int(t.sum())) for n, t in
                                                                     masks.items()}


def test_random_masks_depend_on_the_generator():
    masks = _uneven_masks()
    a = random_masks_like(masks, torch.Generator().manual_seed(1))
    b = random_masks_like(masks, torch.Generator().manual_seed(2))
    a2 = random_masks_like(masks, torch.Generator().manual_seed(1))
    assert not torch.equal(a["fc2.weight"], b["fc2.weight"])
    assert all(torch.equal(a[n], a2[n]) for n in masks), "the same seed gives the same control"
    assert not torch.equal(a["fc2.weight"], masks["fc2.weight"]), "a random mask, not a copy of the given one"


# ---------------------------------------------------------------------------------------------------------------------
# sparsity measures


def test_sparsity_is_over_all_weights_not_a_mean_of_layers():
    masks = {"small": torch.tensor([True, False, False, False]), "large": torch.ones(12, dtype=torch.bool)}
    assert sparsity(masks) == pytest.approx(3 / 16)  # the mean of layer sparsities would be 0.375
    assert sparsity({}) == 0.0
    assert sparsity({"a": torch.zeros(5, dtype=torch.bool)}) == 1.0
    assert sparsity({"a": torch.ones(2, 3, dtype=torch.bool)}) == 0.0


def test_layer_sparsity_per_layer():
    masks = {"a": torch.tensor([[True, False], [False, False]]), "b": torch.ones(3, dtype=torch.bool)}
    assert layer_sparsity(masks) == {"a": pytest.approx(0.75), "b": 0.0}


def test_weight_sparsity_counts_exact_zeros_of_the_named_weights():
    state = {"w": torch.tensor([0.0, -0.0, 1e-30, -2.0, 3.0, 0.0, -1e-3, 4.0]), "b": torch.zeros(100),
             "v": torch.tensor([[0.0, 1.0], [2.0, -3.0]])}
    assert weight_sparsity(state, ["w"]) == pytest.approx(3 / 8)
    assert weight_sparsity(state, ["w", "v"]) == pytest.approx(4 / 12)
    assert weight_sparsity(state, []) == 0.0

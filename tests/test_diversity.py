"""analysis.diversity.ensemble_metrics on hand-computed cases, and its properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.diversity import EPS, ensemble_metrics, js_divergence, js_midpoint_first, kl_divergence


def test_identical_models_do_not_differ_and_their_ensemble_is_each_of_them():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    labels = torch.tensor([0, 2, 1, 1])  # right, right, wrong, right: 75 %
    out = ensemble_metrics([p, p.clone(), p.clone()], labels)
    assert out["mean_accuracy"] == pytest.approx(75.0)
    assert out["std_accuracy"] == 0.0
    assert out["ensemble_accuracy"] == pytest.approx(75.0)
    assert out["disagreement"] == 0.0
    assert out["kl"] == pytest.approx(0.0, abs=1e-15)
    assert out["js"] == pytest.approx(0.0, abs=1e-15)


def test_two_one_hot_models_that_disagree_everywhere():
    # Model 1 always says class 0, model 2 class 1; the labels are 0, 1, 1, 0.
    p1 = torch.tensor([[1.0, 0.0]] * 4)
    p2 = torch.tensor([[0.0, 1.0]] * 4)
    labels = torch.tensor([0, 1, 1, 0])
    out = ensemble_metrics([p1, p2], labels)
    assert out["mean_accuracy"] == pytest.approx(50.0)
    assert out["std_accuracy"] == 0.0
    assert out["disagreement"] == 1.0
    # Exact zeros: the clamp makes KL(p1 || p2) = 1 * (ln 1 - ln EPS), finite, the same in both directions.
    assert out["kl"] == pytest.approx(-math.log(EPS), rel=1e-12)
    # Disjoint supports: JS is ln 2 (up to the clamp's EPS-sized terms).
    assert out["js"] == pytest.approx(math.log(2), abs=1e-9)
    # The mean is [0.5, 0.5] everywhere: the tie goes to class 0, right on labels 0.
    assert out["ensemble_accuracy"] == pytest.approx(50.0)
    assert all(math.isfinite(v) for v in out.values())


def test_hand_computed_three_models():
    # Two test points, three classes.
    f64 = torch.float64  # 0.2 and 0.8 exactly as the hand computation has them
    a = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=f64)
    b = torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], dtype=f64)
    c = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.0, 0.8]], dtype=f64)
    labels = torch.tensor([1, 2])
    out = ensemble_metrics([a, b, c], labels)
    # argmax: a -> (0 (tie), 2), b -> (0 (tie), 2), c -> (1, 2); accuracies 50, 50, 100.
    assert out["mean_accuracy"] == pytest.approx(200 / 3)
    assert out["std_accuracy"] == pytest.approx(math.sqrt(((50 - 200 / 3) ** 2 * 2 + (100 - 200 / 3) ** 2) / 2))
    # pairs (a,b): 0 of 2 differ; (a,c): 1 of 2; (b,c): 1 of 2 -> mean (0 + .5 + .5) / 3.
    assert out["disagreement"] == pytest.approx(1 / 3)
    # mean of the three: point 1 [1/3, 1/2, 1/6] -> 1 (right); point 2 [.067, 0, .933] -> 2 (right).
    assert out["ensemble_accuracy"] == pytest.approx(100.0)
    big = -math.log(EPS)  # ln(x / EPS) for a clamped zero
    ln2 = math.log(2)
    kl = {  # KL(row p || row q) summed over the two points, by hand
        ("a", "b"): (0.5 * 0 + 0.5 * (math.log(0.5) + big)) + 0,
        ("b", "a"): (0.5 * 0 + 0.5 * (math.log(0.5) + big)) + 0,
        ("a", "c"): (0.5 * (math.log(0.5) + big) + 0.5 * math.log(0.5)) + (1.0 * math.log(1 / 0.8)),
        ("c", "a"): (1.0 * math.log(2)) + (0.2 * (math.log(0.2) + big) + 0.8 * math.log(0.8)),
        ("b", "c"): (0.5 * (math.log(0.5) + big) + 0.5 * (math.log(0.5) + big)) + math.log(1 / 0.8),
        ("c", "b"): (1.0 * (0 + big)) + (0.2 * (math.log(0.2) + big) + 0.8 * math.log(0.8)),
    }
    assert out["kl"] == pytest.approx(sum(kl.values()) / 2 / 6, rel=1e-9)
    # JS by hand: point 1 of (a, b) has midpoint [.5, .25, .25]: 0.5 * (.5 ln 2) * 2 = ln2 / 2.
    js_ab = (ln2 / 2 + 0) / 2
    assert float(js_divergence(a, b).mean()) == pytest.approx(js_ab, abs=1e-9)
    js_pairs = [js_ab, float(js_divergence(a, c).mean()), float(js_divergence(b, c).mean())]
    assert out["js"] == pytest.approx(sum(js_pairs) / 3, rel=1e-12)


def test_ensemble_is_the_argmax_of_the_mean_not_a_majority_vote():
    # Two confident-wrong-by-a-hair models and one very confident right one: the vote says 0, the mean says 1.
    p1 = torch.tensor([[0.51, 0.49]])
    p2 = torch.tensor([[0.51, 0.49]])
    p3 = torch.tensor([[0.0, 1.0]])
    out = ensemble_metrics([p1, p2, p3], torch.tensor([1]))
    assert out["ensemble_accuracy"] == 100.0
    assert out["mean_accuracy"] == pytest.approx(100 / 3)


def test_bad_inputs_are_one_clear_error():
    p = torch.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        ensemble_metrics([p], torch.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        ensemble_metrics([p, p], torch.zeros(4))


def distributions(n: int, c: int):
    # Some entries exactly zero, to exercise the clamp.
    row = st.lists(st.sampled_from([0.0, 0.0, 1e-30, 0.1, 0.5, 1.0, 3.0]), min_size=c, max_size=c).filter(
        lambda r: sum(r) > 0)
    return st.lists(row, min_size=n, max_size=n).map(
        lambda rows: torch.tensor(rows, dtype=torch.float64) / torch.tensor(rows, dtype=torch.float64).sum(
            dim=1, keepdim=True))


@settings(max_examples=60, deadline=None)
@given(p=distributions(4, 3), q=distributions(4, 3))
def test_divergence_properties(p, q):
    assert torch.allclose(js_divergence(p, q), js_divergence(q, p), atol=1e-12)
    assert bool((kl_divergence(p, q) >= -1e-9).all())
    assert bool((js_divergence(p, q) >= -1e-12).all())
    assert bool((js_divergence(p, q) <= math.log(2) + 1e-9).all())
    assert bool(torch.isfinite(kl_divergence(p, q)).all())
    assert torch.allclose(kl_divergence(p, p), torch.zeros(4, dtype=torch.float64), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(ps=st.lists(distributions(5, 3), min_size=2, max_size=4), data=st.data())
def test_metrics_do_not_depend_on_the_order_of_the_models(ps, data):
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=5, max_size=5)))
    out = ensemble_metrics(ps, labels)
    shuffled = data.draw(st.permutations(ps))
    again = ensemble_metrics(shuffled, labels)
    for k in out:
        if k == "ensemble_accuracy":  # argmax ties of the mean may break differently only through float sums
            continue
        assert again[k] == pytest.approx(out[k], abs=1e-9), k
    assert 0.0 <= out["disagreement"] <= 1.0
    assert out["js"] <= math.log(2) + 1e-9
    assert out["kl"] >= -1e-9
    assert all(math.isfinite(v) for v in out.values())


def test_js_midpoint_first_by_hand_and_its_bounds():
    p, q = torch.tensor([[0.9, 0.1]], dtype=torch.float64), torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    m = (0.7, 0.3)
    by_hand = (m[0] * math.log(0.7 / 0.9) + m[1] * math.log(0.3 / 0.1)
               + m[0] * math.log(0.7 / 0.5) + m[1] * math.log(0.3 / 0.5)) / 2
    assert float(js_midpoint_first(p, q)[0]) == pytest.approx(by_hand, rel=1e-12)  # 0.11797...
    assert float(js_midpoint_first(p, p)[0]) == pytest.approx(0.0, abs=1e-15)
    # confident disagreement: the true JS saturates at ln 2, the midpoint-first form grows to half of KL
    sharp, other = torch.tensor([[1 - 1e-9, 1e-9]], dtype=torch.float64), torch.tensor([[1e-9, 1 - 1e-9]],
                                                                                       dtype=torch.float64)
    kl = float(kl_divergence(sharp, other)[0])
    assert float(js_divergence(sharp, other)[0]) <= math.log(2) + 1e-9
    assert float(js_midpoint_first(sharp, other)[0]) / kl == pytest.approx(0.5, abs=0.04)


def test_the_midpoint_first_form_gives_table_1s_ratios_and_the_true_js_cannot():
    """Five simulated models, 10 classes, 87 % accurate and about as confident as trained ResNets: the paper's
    Table 1 has JS/KL in 0.28-0.37; the true JS gives at most a quarter of KL, the midpoint-first form lands there."""
    g = torch.Generator().manual_seed(0)
    n, c = 4000, 10
    labels = torch.randint(0, c, (n,), generator=g)
    base = torch.randn(n, c, generator=g)
    base[torch.arange(n), labels] += 14 * torch.rand(n, generator=g)
    spread = 0.5 * torch.empty(n, 1).exponential_(1.0, generator=g)
    probs = [torch.softmax(base + spread * torch.randn(n, c, generator=g), dim=1) for _ in range(5)]
    out = ensemble_metrics(probs, labels)
    assert out["js"] / out["kl"] <= 0.25
    assert 0.28 <= out["js_midpoint_first"] / out["kl"] <= 0.37

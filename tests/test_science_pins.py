"""Science that a mutation campaign found unpinned: each test here fails on the one wrong line it names.

* analysis.compare: the standard error of a mean is sqrt(s^2 / n), not sqrt(s / n) (hand-computed cases where
  the two disagree in both directions, on our side and on the paper's).
* Early matching under ``rewind_convention: released``: B after e epochs is the config's epoch i = e - 1.
* The interpolation's "before matching" curve is A's path to B, not pi(A)'s (the function every state was
  measured with is watched: the curve stored as "before" must be the one of A itself).
* IMP with ``pruning.rewind_epoch``: every round, not only the first, starts from A's rewind checkpoint.

The fifth, the sweep plan's permuted-mask job depending on the IMP job, is
``tests/test_sweep_plan_edges.py::test_the_permuted_mask_job_depends_on_imp_and_the_permutation``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from analysis.compare import PAPER_SEEDS, Cell, Ours, compare_rows
from matching import permute
from phases.studies.early_matching import b_epochs_of, i_of
from tests.test_config_cli import VALID
from tests.test_pipeline import artifacts, dense_dir, load, run, run_dir, tiny_config
from utils.config import config_from_dict

# ---------------------------------------------------------------- analysis.compare: SE of a mean


def cell(mean: float, std: float | None) -> Cell:
    return Cell("5", "90% LTH", "k=1", "CIFAR-10", "ResNet20", 1, "cifar10", 90, "lth", 1, mean, std, "hand")


def within(paper: Cell, values: list[float]) -> bool:
    (row,) = compare_rows([paper], {paper.key: [Ours("c", 2, "epochs", values)]})
    return row["within_2se"]


@pytest.mark.parametrize(("paper", "values", "expected", "why"), [
    # Ours 82 ± 2 (n = 3), paper std unknown (0): SE = 2/sqrt(3) = 1.155, |84 - 82| = 2 <= 2.31.
    # With s/n instead of s^2/n: SE = sqrt(2/3) = 0.816, 2 SE = 1.63 < 2: "no".
    (cell(84.0, None), [80.0, 82.0, 84.0], True, "our std > 1"),
    # Ours 80.5 ± 0.5: SE = 0.289, |79.8 - 80.5| = 0.7 > 0.577. With s/n: SE = 0.408, 2 SE = 0.816: "yes".
    (cell(79.8, None), [80.0, 80.5, 81.0], False, "our std < 1"),
    # Paper 85 ± 3 over its 3 seeds, ours exactly 82: SE = 3/sqrt(3) = 1.732, 3 <= 3.46. With s/n: 2 SE = 2.
    (cell(85.0, 3.0), [82.0, 82.0, 82.0], True, "the paper's std"),
])
def test_compare_standard_error_is_sqrt_of_variance_over_n(paper, values, expected, why):
    assert PAPER_SEEDS == 3  # the hand computations above take the paper's tables as means of 3 seeds
    assert within(paper, values) is expected, why


def test_compare_standard_error_boundary_is_exact():
    """|diff| at exactly 2 SE (to 1e-9) is within; a hair beyond is not."""
    values = [10.0, 12.0, 14.0]  # mean 12, s = 2
    two_se = 2 * math.sqrt(2.0 ** 2 / 3)
    assert within(cell(12.0 + two_se - 1e-7, None), values)
    assert not within(cell(12.0 + two_se + 1e-6, None), values)


# ---------------------------------------------------------------- early matching: i under each convention


@pytest.mark.parametrize(("convention", "shift"), [("epochs", 0), ("released", 1)])
def test_early_matching_i_is_the_configs_epoch_of_b(convention, shift):
    raw = dict(VALID, epochs=6, sparse_epochs=6, rewind_points=[0], rewind_convention=convention,
               studies={"early_matching": {"epochs": [0, 2]}})
    cfg = config_from_dict(raw, check_data=False)
    # The epochs B is trained for at each asked i: i itself, or i + 1 (the released code saved "epoch i" after
    # i + 1 epochs); and B's last.
    assert b_epochs_of(cfg) == [0 + shift, 2 + shift, 6]
    assert [i_of(cfg, b) for b in b_epochs_of(cfg)] == [0, 2, 6 - shift]
    assert all(i_of(cfg, cfg.checkpoint_epoch(i)) == i for i in range(6 - shift))


# ---------------------------------------------------------------- one phase 1 run, watched


@pytest.fixture(scope="module")
def watched_phase1(tmp_path_factory, fake_cifar10):
    """Phase 1 of a tiny MLP with IMP weight rewinding (4 rounds), recording what each IMP round started from
    and every state the interpolation measured, with the real functions doing the work."""
    import phases.imp_step as imp_step
    import phases.match_step as match_step

    tmp = tmp_path_factory.mktemp("watched")
    save = tmp / "runs"
    cfg = tiny_config(fake_cifar10, save, rewind_points=[0], pruning__rewind_epoch=1, pruning__sparsity=0.75,
                      sparse__random_control=False)
    starts: list[tuple[str, dict[str, torch.Tensor]]] = []
    curves: list[tuple[dict[str, torch.Tensor], list[dict[str, float]]]] = []
    real_train, real_curve = imp_step.train, match_step.interpolation_curve

    def train(model, *args, **kwargs):
        starts.append((kwargs["name"], {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return real_train(model, *args, **kwargs)

    def interpolation_curve(model, sd_a, sd_b, *args, **kwargs):
        curve = real_curve(model, sd_a, sd_b, *args, **kwargs)
        curves.append(({k: v.detach().clone() for k, v in sd_a.items()}, curve))
        return curve

    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setattr(imp_step, "train", train)
        mp.setattr(match_step, "interpolation_curve", interpolation_curve)
        assert run(tmp, cfg, "-pretrain", "True") == 0
    return {"save": save, "starts": starts, "curves": curves}


def test_every_imp_round_starts_from_the_rewind_checkpoint(watched_phase1):
    save, starts = watched_phase1["save"], watched_phase1["starts"]
    rewind = load(dense_dir(save, "A") / "epoch_1.safetensors")
    final_a = load(dense_dir(save, "A") / "final.safetensors")
    history = json.loads((artifacts(save, "imp")[0] / "result.json").read_text())["history"]
    assert [name for name, _ in starts] == [f"imp_round_{r}" for r in range(1, len(history) + 1)]
    assert len(starts) >= 3  # rounds after the second: the ones a first-round-only rewind gets wrong
    for name, state in starts:
        assert state.keys() == rewind.keys()
        assert all(torch.equal(state[k], rewind[k]) for k in rewind), f"{name} did not start from A at epoch 1"
    assert not all(torch.equal(rewind[k], final_a[k]) for k in rewind)  # rewinding is visible at all


def test_the_curve_before_matching_is_a_to_b_not_pi_a(watched_phase1):
    save, curves = watched_phase1["save"], watched_phase1["curves"]
    a = load(dense_dir(save, "A") / "final.safetensors")
    pi = {k: v for k, v in load(artifacts(save, "perm")[0] / "permutation.safetensors").items()}
    from models import build_model
    from utils.config import load_config

    model = build_model(load_config(Path(run_dir(save, "cfg")) / "config.yaml", check_data=False))
    a_perm = permute(model.permutation_spec(), a, pi)
    assert not all(torch.equal(a[k], a_perm[k]) for k in a)  # matching permuted something: the test can tell
    results = json.loads((run_dir(save, "cfg") / "results.json").read_text())["matching"]
    by_state = {}
    for sd_a, curve in curves:
        if all(torch.equal(sd_a[k], a[k]) for k in a):
            by_state["A"] = curve
        elif all(torch.equal(sd_a[k], a_perm[k]) for k in a):
            by_state["pi(A)"] = curve
    assert set(by_state) == {"A", "pi(A)"}, "the interpolation must measure A itself and pi(A)"
    assert results["curve_before"] == [{k: p[k] for k in results["curve_before"][0]} for p in by_state["A"]]
    assert results["curve_after"] == [{k: p[k] for k in results["curve_after"][0]} for p in by_state["pi(A)"]]
    assert results["curve_before"] != results["curve_after"]

"""Ensembles and diversity: the paper's Table 1 (§4.2, App. C), ``--study ensemble``.

One dense A (init w1, IMP mask M1) of run seed s and M members; member i's seed is s + i:

    IMP_i       the IMP solution of seed s + i (its dense A and IMP: the main artifacts of run seed s + i)
    LTH_i       W_A(k) ⊙ M1, trained on data order i
    naive_i     W_B_i(k) ⊙ M1,        B_i = dense B of seed s + i
    permuted_i  W_B_i(k) ⊙ pi_i(M1),  pi_i matching A to B_i

and the dense row: the dense A of each member seed. Member 0 *is* the main
experiment of seed s: its artifacts' keys are the main ones (A, B, IMP, pi,
pi(M_A), and the lth / naive / permuted runs at k), so nothing is trained twice.
Members i >= 1 reuse the main artifacts of run seed s + i (its dense A, B and
IMP), so a sweep over seeds s..s+M-1 has made most of them already; their
sparse runs are keyed by ``data_order = i`` besides their weights and masks.
(Neighbouring run seeds' studies share members: average their tables over seeds
knowing that.) Test-set softmax outputs are computed in the report, from the
finished models; nothing is retrained for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from analysis.diversity import ensemble_metrics
from phases import graph
from phases.context import RunContext
from phases.studies import (
    ModuleStudy,
    Need,
    aligned_table,
    register,
    require_complete,
    study_settings,
    write_report,
)
from utils.artifacts import Artifact
from utils.config import Config, ConfigError, EnsembleStudyConfig

NAME = "ensemble"
RUNS = ("lth", "naive", "permuted")
# Rows in the paper's order, under the paper's names.
GROUPS = {"dense": "none (dense)", "imp": "IMP", "lth": "LTH", "permuted": "permuted", "naive": "naive"}
# js_midpoint_first: the JS form that reproduces the paper's Table 1 (analysis/diversity.py), beside the true JS.
METRICS = ("mean_accuracy", "std_accuracy", "ensemble_accuracy", "disagreement", "kl", "js", "js_midpoint_first")


def settings(cfg: Config) -> EnsembleStudyConfig:
    """``studies.ensemble``, or its defaults (5 members, the first rewind point) when the section is absent."""
    return study_settings(cfg, NAME, EnsembleStudyConfig)


def rewind(cfg: Config) -> int:
    k = settings(cfg).rewind
    return cfg.rewind_points[0] if k is None else k


def member_seed(seed: int, i: int) -> int:
    return seed + i


# ------------------------------------------------------------------ the study's graph


def member_permutation(cfg: Config, seed: int, i: int) -> Artifact:
    """pi_i: A (of seed s) matched to B_i; for i = 0 the main permutation."""
    return graph.permutation(cfg, seed, b_seed=member_seed(seed, i) if i else None)


def member_permuted_mask(cfg: Config, seed: int, i: int) -> Artifact:
    """pi_i(M1); for i = 0 the main permuted mask."""
    return graph.permuted_mask(cfg, seed, b_seed=member_seed(seed, i) if i else None)


def member_sparse(cfg: Config, seed: int, i: int, run: str, k: int) -> Artifact:
    """Member i's ``run`` at k: B and pi of run seed s + i, data order i; for i = 0 the main run."""
    return graph.sparse(cfg, seed, k, run, b_seed=member_seed(seed, i) if i else None, data_order=i)


def members(cfg: Config, seed: int) -> dict[str, list[tuple[Artifact, str]]]:
    """group -> each member's (artifact, file holding its final model), in member order."""
    m, k = settings(cfg).members, rewind(cfg)
    out: dict[str, list[tuple[Artifact, str]]] = {
        "dense": [(graph.dense(cfg, member_seed(seed, i), "A"), "final.safetensors") for i in range(m)],
        "imp": [(graph.imp(cfg, member_seed(seed, i)), "model.safetensors") for i in range(m)],
    }
    for run in RUNS:
        out[run] = [(member_sparse(cfg, seed, i, run, k), "final.safetensors") for i in range(m)]
    return {group: out[group] for group in GROUPS}  # the paper's row order


def needs(cfg: Config, seed: int) -> list[Need]:
    s, k = settings(cfg), rewind(cfg)
    transfer = getattr(cfg.pruning, "mask_from", None)
    if transfer is not None and transfer.seed is not None:
        # Every member seed would map to the one source seed: the IMP and dense rows would be one model M times.
        raise ConfigError("studies.ensemble: pruning.mask_from.seed fixes one source seed, so every member would "
                          "share one IMP solution; leave it null (each member seed takes its own source seed)")
    out: list[Need] = []
    for i in range(s.members):
        sd = member_seed(seed, i)
        out += [Need(graph.dense(cfg, sd, "A"), f"member {i} dense A (seed {sd})"),
                Need(graph.dense(cfg, sd, "B"), f"member {i} dense B (seed {sd})"),
                Need(graph.imp(cfg, sd), f"member {i} IMP (seed {sd})"),
                Need(member_permutation(cfg, seed, i), f"member {i} pi_{i}"),
                Need(member_permuted_mask(cfg, seed, i), f"member {i} pi_{i}(M1)")]
        out += [Need(member_sparse(cfg, seed, i, run, k), f"member {i} {run} k={k}") for run in RUNS]
    return out


# ------------------------------------------------------------------ report


@torch.no_grad()
def test_probabilities(ctx: RunContext, art: Artifact, filename: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax outputs [N, C] (float64, on the CPU) of the model in ``art``/``filename`` on the test set, and labels."""
    model = ctx.load_model(art, filename)
    model.eval()
    probs, labels = [], []
    for x, y in ctx.data.test_batches():
        probs.append(torch.softmax(model(x).double(), dim=1).cpu())
        labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def table_text(header: str, rows: list[dict[str, Any]], m: int) -> str:
    """The paper's Table 1 layout: dense first (accuracy only), then IMP, LTH, permuted, naive."""
    head = ["Mask", f"Test acc. (mean±std, {m} models)", "Ensemble acc.", "Disagreement", "KL", "JS",
            "JS (paper's form)"]
    lines = []
    for row in rows:
        acc = f"{row['mean_accuracy']:.2f}±{row['std_accuracy']:.3f}"
        if row["group"] == "dense":
            lines.append([row["mask"], acc, "–", "–", "–", "–", "–"])
        else:
            lines.append([row["mask"], acc, f"{row['ensemble_accuracy']:.2f}", fmt(row["disagreement"]),
                          fmt(row["kl"]), fmt(row["js"]), fmt(row["js_midpoint_first"])])
    return aligned_table(header, head, lines)


def report(ctx: RunContext) -> Path:
    cfg, seed = ctx.cfg, ctx.seed
    s, k = settings(cfg), rewind(cfg)
    groups = members(cfg, seed)
    require_complete(ctx, NAME, [art.dir for arts in groups.values() for art, _ in arts if not art.complete])
    rows, accuracies = [], {}
    labels = None
    for group, arts in groups.items():
        probs = []
        for art, filename in arts:
            p, y = test_probabilities(ctx, art, filename)
            if labels is not None and not torch.equal(labels, y):
                raise RuntimeError("the test set came back in another order: the ensemble needs the same points")
            labels = y
            probs.append(p)
        metrics = ensemble_metrics(probs, labels)
        accuracies[group] = [float((p.argmax(dim=1) == labels).double().mean() * 100) for p in probs]
        rows.append({"group": group, "mask": GROUPS[group], "members": len(arts),
                     **{m: metrics[m] for m in METRICS}})
    imp_result = graph.imp(cfg, seed).result()
    header = (f"Ensembles and diversity (the paper's Table 1): {ctx.label} seed {seed}, {s.members} members "
              f"(seeds {seed}..{member_seed(seed, s.members - 1)}), IMP sparsity "
              f"{100 * imp_result['sparsity']:.1f}%, rewind k={k}, {len(labels)} test points")
    extra = {"members": s.members, "rewind": k, "member_seeds": [member_seed(seed, i) for i in range(s.members)],
             "sparsity": imp_result["sparsity"], "test_points": len(labels), "member_accuracies": accuracies,
             "artifacts": {g: [str(a.dir) for a, _ in arts] for g, arts in groups.items()}}
    return write_report(ctx, NAME, rows, ["group", "mask"], table_text(header, rows, s.members), extra)


register(ModuleStudy(NAME, needs, report))

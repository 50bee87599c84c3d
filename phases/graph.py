"""The artifact graph of one (config, seed): every node from the config alone, without IO.

    dense A ──► IMP round chain ──► IMP target (M_A) ───────────────┐
       │                                                            ├─► permuted mask pi(M_A)
       ├──────────────► permutation pi ◄── dense B                  │
       │                     │                 │                    │
       └──► interpolation ◄──┴─────────────────┘                    │
    sparse run (k, run): weights of A or B at k, mask M_A, pi(M_A) or random(M_A) ◄─┘

The four sparsities of one width share dense A/B, the IMP rounds they have in
common and pi; interpolation is a leaf, so its grid changes no training. Under
``pruning.mask_from`` (mask transfer), dense A and the IMP nodes are another
config's (``phases/mask_source.py``); the rest of the graph is unchanged.
"""

from __future__ import annotations

from dataclasses import replace

from phases.keys import (
    PermutedMaskSettings,
    as_key,
    dense_settings,
    early_match_settings,
    imp_chain_settings,
    imp_target_settings,
    interpolation_settings,
    sparse_settings,
)
from phases.mask_source import mask_owner
from utils.artifacts import Artifact
from utils.config import RESCALED, Config

# run -> (whose weights at epoch k, which mask): one run type with different sources (DESIGN §6)
SOURCES: dict[str, tuple[str, str]] = {
    "lth": ("A", "imp"),
    "naive": ("B", "imp"),
    "permuted": ("B", "permuted_mask"),
    "random": ("B", "random"),  # a random mask with M_A's per-layer density, drawn from the run seed
}
# `<run>+rescale`: the same sources, from rescaled initialization (sparse.rescale_init, pruning/rescale.py). Another
# run name rather than a setting of the same run: one config compares both, each in its own column and artifact.
SOURCES.update({run + RESCALED: source for run, source in list(SOURCES.items())})


def dense(cfg: Config, seed: int, role: str) -> Artifact:
    if role == "A":  # under pruning.mask_from, A is the source config's (phases/mask_source.py)
        cfg, seed = mask_owner(cfg, seed)
    return Artifact(cfg.save_path, "dense", as_key(dense_settings(cfg, seed, role)), origin=(cfg, seed))


def imp_chain(cfg: Config, seed: int) -> Artifact:
    cfg, seed = mask_owner(cfg, seed)
    return Artifact(cfg.save_path, "impchain", as_key(imp_chain_settings(cfg)), {"dense_a": dense(cfg, seed, "A")},
                    origin=(cfg, seed))


def imp(cfg: Config, seed: int) -> Artifact:
    cfg, seed = mask_owner(cfg, seed)
    return Artifact(cfg.save_path, "imp", as_key(imp_target_settings(cfg)), {"chain": imp_chain(cfg, seed)},
                    origin=(cfg, seed))


def permutation(cfg: Config, seed: int, b_epoch: int | None = None, b_seed: int | None = None) -> Artifact:
    """pi matching trained A to B: B's final model, or (early matching) B after ``b_epoch`` epochs of training;
    B of run seed ``b_seed`` (an ensemble member's) instead of ``seed``'s own when given."""
    a, b = dense(cfg, seed, "A"), dense(cfg, seed if b_seed is None else b_seed, "B")
    settings = early_match_settings(cfg, b_epoch)
    if settings.augment and seed != a.settings["seed"]:  # the maker could not tell the run seed from A (match_seed)
        settings = replace(settings, run_seed=seed)
    return Artifact(cfg.save_path, "perm", as_key(settings), {"dense_a": a, "dense_b": b}, origin=(cfg, seed))


def permuted_mask(cfg: Config, seed: int, b_epoch: int | None = None, b_seed: int | None = None) -> Artifact:
    return Artifact(cfg.save_path, "pmask", as_key(PermutedMaskSettings()),
                    {"perm": permutation(cfg, seed, b_epoch, b_seed), "imp": imp(cfg, seed)}, origin=(cfg, seed))


def interpolation(cfg: Config, seed: int) -> Artifact:
    return Artifact(cfg.save_path, "interp", as_key(interpolation_settings(cfg)),
                    {"dense_a": dense(cfg, seed, "A"), "dense_b": dense(cfg, seed, "B"),
                     "perm": permutation(cfg, seed)}, origin=(cfg, seed))


def mask_source(cfg: Config, seed: int, run: str, b_epoch: int | None = None,
                b_seed: int | None = None) -> Artifact:
    if SOURCES[run][1] == "permuted_mask":
        return permuted_mask(cfg, seed, b_epoch, b_seed)
    return imp(cfg, seed)


def sparse(cfg: Config, seed: int, k: int, run: str, *, b_epoch: int | None = None, b_seed: int | None = None,
           data_order: int | None = None) -> Artifact:
    """Sparse ``run`` from rewind point k. A study's variants: the mask pi(M_A) from B at ``b_epoch`` (early
    matching), B of run seed ``b_seed`` (an ensemble member's weights and pi), another ``data_order``."""
    role = SOURCES[run][0]
    own = sparse_settings(cfg, k, run)
    if data_order:
        own = replace(own, data_order=data_order)
    weights = dense(cfg, seed if role == "A" or b_seed is None else b_seed, role)
    mask = mask_source(cfg, seed, run, b_epoch, b_seed)
    if seed != mask_seed(mask):  # the maker could not tell the run seed from its parents (SparseSettings.seed)
        own = replace(own, seed=seed)
    return Artifact(cfg.save_path, "sparse", as_key(own), {"weights": weights, "mask": mask}, origin=(cfg, seed))


def mask_seed(mask: Artifact) -> int:
    """The run seed of the dense A an IMP or permuted-mask artifact was pruned from: a sparse run's seed unless
    its settings say otherwise.

    Not the weights' seed: an ensemble member trains B of seed s + i under the mask of seed s, and its data
    order is seed s's; only a fixed ``pruning.mask_from.seed`` takes the mask from another seed than the run's.
    """
    imp = mask.parents.get("imp", mask)
    return imp.parents["chain"].parents["dense_a"].settings["seed"]


def sparse_runs(cfg: Config) -> list[str]:
    runs = list(cfg.sparse.runs)
    if cfg.sparse.random_control and "random" not in runs:
        runs.append("random")
    if cfg.sparse.rescale_init:
        runs += [r + RESCALED for r in runs if not r.endswith(RESCALED) and r + RESCALED not in runs]
    return runs


def phase1_artifacts(cfg: Config, seed: int) -> dict[str, Artifact]:
    return {"dense_A": dense(cfg, seed, "A"), "imp": imp(cfg, seed), "dense_B": dense(cfg, seed, "B"),
            "perm": permutation(cfg, seed), "pmask": permuted_mask(cfg, seed),
            "interp": interpolation(cfg, seed)}


def every_run(cfg: Config) -> Config:
    """``cfg`` asking for every sparse run type: the same settings, all the rows a run directory can hold."""
    return replace(cfg, sparse=replace(cfg.sparse, runs=list(SOURCES)))


def run_artifacts(cfg: Config, seed: int, rewinds: list[int] | None = None) -> dict[str, Artifact]:
    """Every artifact a (config, seed) uses, by a stable name (``sparse_<run>_k<k>`` for sparse runs)."""
    arts = phase1_artifacts(cfg, seed)
    for k in cfg.rewind_points if rewinds is None else rewinds:
        for run in sparse_runs(cfg):
            arts[f"sparse_{run}_k{k}"] = sparse(cfg, seed, k, run)
    return arts

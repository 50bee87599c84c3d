"""Training epochs of a whole paper table (one width, its four sparsities): ours versus the original's.

Counted, not timed, from the configs in ``configs/`` (CIFAR-10 ResNet20; the
paper's settings where a width has no config). Phase 1 of the original code
retrains dense A and B for every config; ours keys dense A and B by what they
depend on (``phases.graph.dense``: model, data, optimizer, epochs, precision, seed;
not the sparsity), so the four sparsities of a width share one A and one B. IMP
(``planned_rounds`` x epochs per round) and phase 2 (each sparse run trains
``sparse_epochs - k`` epochs per rewind point k) are the same in both.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from benchmarks.common import REPO, add_check, add_table, base_parser, emit, new_section
from models.registry import canonical_model_type
from phases import graph
from pruning.imp import planned_amounts, planned_rounds
from utils.config import Config, config_from_dict, load_config
from utils.hashing import stable_hash

PAPER_SPARSITIES = (0.8, 0.9, 0.95, 0.97)


def paper_config(width: int, sparsity: float) -> Config:
    """The paper's CIFAR-10 ResNet20 settings (docs/paper.md) for one cell."""
    return config_from_dict({"model_type": "ResNet", "width_multiplier": width, "dataset": "cifar10",
                             "epochs": 200, "model_b_epochs": 200, "sparse_epochs": 200,
                             "pruning": {"sparsity": sparsity, "prune_perc": 0.2, "train_epochs_per_prune": 50}},
                            check_data=False)


def load_tables(config_dir: Path) -> tuple[dict[int, list[tuple[str, Config]]], str]:
    """CIFAR-10 ResNet20 configs by width; the paper's settings for widths without any."""
    by_width: dict[int, list[tuple[str, Config]]] = defaultdict(list)
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            cfg = load_config(path, check_data=False)
        except Exception:  # a config another engineer is still writing: count the others
            continue
        if cfg.dataset == "cifar10" and canonical_model_type(cfg.model_type) == "ResNet":
            by_width[cfg.width_multiplier].append((path.name, cfg))
    source = f"{config_dir.relative_to(REPO) if config_dir.is_relative_to(REPO) else config_dir}/*.yaml"
    if not by_width:
        source = "the paper's settings (no configs found)"
        for w in (1, 4, 8, 16):
            by_width[w] = [(f"paper w{w} s{int(s * 100)}", paper_config(w, s)) for s in PAPER_SPARSITIES]
    return dict(sorted(by_width.items())), source


def imp_epochs(cfg: Config) -> int:
    p = cfg.pruning
    rounds = planned_rounds(p.sparsity, p.prune_perc, p.tolerance_for(cfg.model_type), p.prune_epochs)
    return rounds * p.train_epochs_per_prune


def sparse_epochs(cfg: Config) -> int:
    return len(cfg.sparse.runs) * sum(cfg.total_sparse_epochs - k for k in cfg.rewind_points)


def count(configs: list[Config], seed: int = 0) -> dict[str, int]:
    dense_ours: dict[str, int] = {}
    imp_rounds_ours: dict[str, int] = {}  # one entry per distinct round of the shared round chains
    original_dense = 0
    for cfg in configs:
        for role, epochs in (("A", cfg.epochs), ("B", cfg.b_epochs)):
            dense_ours[graph.dense(cfg, seed, role).hash] = epochs
            original_dense += epochs
        p = cfg.pruning
        chain = graph.imp_chain(cfg, seed).hash
        amounts = planned_amounts(p.sparsity, p.prune_perc, p.tolerance_for(cfg.model_type), p.prune_epochs)
        for r in range(1, len(amounts) + 1):  # a round is identified by its chain and all amounts up to it
            imp_rounds_ours[stable_hash([chain, amounts[:r]])] = p.train_epochs_per_prune
    imp = sum(imp_epochs(cfg) for cfg in configs)
    return {"dense_ours": sum(dense_ours.values()), "dense_models_ours": len(dense_ours),
            "dense_original": original_dense, "imp_ours": sum(imp_rounds_ours.values()), "imp_original": imp,
            "phase2": sum(sparse_epochs(cfg) for cfg in configs)}


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--configs", default=str(REPO / "configs"))
    args = p.parse_args(argv)
    tables, source = load_tables(Path(args.configs))
    section = new_section("paper_table", "6. Training epochs of a whole paper table (counted)")
    rows = []
    ratios = {}
    for width, named in tables.items():
        c = count([cfg for _, cfg in named])
        ours1, orig1 = c["dense_ours"] + c["imp_ours"], c["dense_original"] + c["imp_original"]
        ratios[width] = orig1 / ours1
        sparsities = "/".join(f"{100 * cfg.pruning.sparsity:g}" for _, cfg in named)
        rows.append([f"ResNet20x{width}", sparsities, c["dense_models_ours"], c["dense_ours"], c["dense_original"],
                     c["imp_ours"], c["imp_original"], ours1, orig1, orig1 / ours1, c["phase2"], (orig1 + c["phase2"]) /
                     (ours1 + c["phase2"])])
    add_table(section, f"Per width, seed 0, from {source}",
              ["table", "sparsities %", "dense models (ours)", "dense epochs ours", "dense epochs original",
               "IMP epochs ours", "IMP epochs original", "phase 1 ours", "phase 1 original", "phase 1 original / ours",
               "phase 2 epochs (both)", "phases 1+2 original / ours"], rows)
    if ratios:
        w = min(ratios)
        add_check(section, f"phase-1 epochs of a ResNet20x{w} table, original / ours", ratios[w], "", None,
                  unit="x", note="dense A and B trained once per width instead of once per sparsity; "
                  "IMP rounds common to several targets trained once")
    section["notes"].append("Original IMP epochs = planned_rounds(sparsity, ...) x train_epochs_per_prune per config; "
                            "ours count each distinct round of the shared round chain once (a round is identified "
                            "by the amounts of all rounds up to it); phase 2 = runs x sum over rewind points k of "
                            "(sparse_epochs - k).")
    section["data"] = {"ratios": ratios}
    return emit(section, args.json)


if __name__ == "__main__":
    main()

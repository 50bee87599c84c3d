"""Our runs beside the paper's tables, cell by cell.

    python -m analysis.compare runs/                  # Markdown to stdout
    python -m analysis.compare runs/ --csv cmp.csv    # also one CSV row per paper cell (and config that fills it)

The paper's numbers are in ``analysis/paper_tables.csv``: every cell of the paper's Tables 5 and 6 (mean ± std
over 3 seeds), and, for the settings of which we keep only a summary computed from the paper's Tables 5-14
(ResNet20×8 and ×16 on CIFAR-10, VGG11, ResNet20 on CIFAR-100), the best-over-k mean of each method at the k
where it was reached, without a std. Each row says which table, row and column it came from.

A run matches a cell by model, width, dataset, target sparsity, method and rewind point. The paper's tables were
made by code that saved "checkpoint k" after k+1 epochs (the ``released`` convention); a run made under
``epochs`` (checkpoint k after k epochs, k = 0 the initialisation) is therefore compared at our k = paper k + 1,
and its k = 0 has no paper cell. ``results.json`` records which convention made it (runs from before the key
say nothing and ran ``epochs``).

A run is compared with a cell only when it ran the paper's experiment: its settings are checked against the paper
config of that cell (``configs/``, ``configs_cifar100/``) in the order of ``COMPARED`` (model, width, dataset and
the whole of it, sparsity, epochs, rewind convention, precision, normalisation, matching), and the numbers of
examples it saw (``results.json``'s ``data``) against the real dataset's. A run that differs is listed at its
cells as ``not comparable`` with the first setting that differs, and gets no verdict.

"Within 2 SE": |ours − paper| ≤ 2·√(s_paper²/3 + s_ours²/n), the standard error of the difference of two means
from their variances (a missing std counts as 0, so with one seed or a summary cell the test is stricter than it
should be).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.table import SeedRun, find_runs, setting_of
from models.registry import canonical_model_type, display_name
from utils.config import Config, config_from_dict, load_config
from utils.errors import UserError

PAPER_TABLES = Path(__file__).with_name("paper_tables.csv")
PAPER_SEEDS = 3
PAPER_CONVENTION = "released"
METHOD_LABELS = {"lth": "LTH", "naive": "naive", "permuted": "perm."}
CSV_COLUMNS = ("table", "row", "column", "setting", "sparsity", "method", "paper_k", "status", "config", "our_k",
               "rewind_convention", "paper_mean", "paper_std", "our_mean", "our_std", "our_seeds", "difference",
               "within_2se", "perm_ge_naive_paper", "perm_ge_naive_ours", "not_comparable")
REPO = Path(__file__).resolve().parent.parent
PAPER_CONFIG_DIRS = ("configs", "configs_cifar100")
# The settings a run must share with its cell's paper config, in the order they are checked (the first that
# differs is named). Epoch counts as the runner uses them: B's and the sparse runs' follow `epochs` when unset.
COMPARED = ("model_type", "width_multiplier", "dataset", "train_subset", "test_subset", "pruning.sparsity", "epochs",
            "model_b_epochs", "sparse_epochs", "rewind_convention", "precision", "normalization", "matching.method",
            "matching.num_batches", "matching.augment", "matching.stream", "matching.std")
# Training and test examples of the datasets the paper used: a run that saw others (a generated stand-in) differs.
REAL_SIZES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000), "imagenet": (1281167, 50000)}


@dataclass(frozen=True)
class Cell:
    """One number of the paper: a method's test accuracy at rewind point k (paper's convention) in one setting."""

    table: str
    row: str
    column: str
    setting: str
    model: str
    width: int
    dataset: str
    sparsity: int  # percent
    method: str
    k: int
    mean: float
    std: float | None
    source: str

    @property
    def key(self) -> tuple[str, int, str, int, str, int]:
        return (self.model, self.width, self.dataset, self.sparsity, self.method, self.k)


# Table 1 (ensembles) holds metrics of a study, not accuracies at a rewind point: it has its own comparison.
ENSEMBLE_TABLE = "1"
# Our metric each Table 1 column is compared with: its JS is the midpoint-first form (analysis/diversity.py).
ENSEMBLE_METRICS = {"test_accuracy": "mean_accuracy", "ensemble_accuracy": "ensemble_accuracy",
                    "disagreement": "disagreement", "kl": "kl", "js": "js_midpoint_first"}
PAPER_MEMBERS = 5


def load_paper(path: Path = PAPER_TABLES) -> list[Cell]:
    """The accuracy cells (Tables 5, 6 and the summary); Table 1 is read by :func:`load_ensemble_paper`."""
    cells = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["table"] == ENSEMBLE_TABLE:
                continue
            if r["rewind_convention"] != PAPER_CONVENTION:  # the shift below assumes one convention for all
                raise ValueError(f"{path}: a cell in the {r['rewind_convention']!r} convention")
            cells.append(Cell(r["table"], r["row"], r["column"], r["setting"], r["model"], int(r["width"]),
                              r["dataset"], int(r["sparsity"]), r["method"], int(r["k"]), float(r["mean"]),
                              float(r["std"]) if r["std"] else None, r["source"]))
    return cells


def load_ensemble_paper(path: Path = PAPER_TABLES) -> list[dict[str, Any]]:
    """Table 1's numbers: one dict per (setting, group, column) with its mean and, for test accuracy, its std."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{**r, "width": int(r["width"]), "sparsity": int(r["sparsity"]), "mean": float(r["mean"]),
                 "std": float(r["std"]) if r["std"] else None}
                for r in csv.DictReader(f) if r["table"] == ENSEMBLE_TABLE]


def ensemble_rows(found: dict[str, list[SeedRun]], paper: list[dict[str, Any]],
                  papers: dict[tuple, Config] | None = None) -> list[dict[str, Any]]:
    """Each config's ``--study ensemble`` reports beside Table 1: per group and column, our mean over run seeds.

    A config is held to the paper config of its setting like a main run, and to the paper's 5 members. Table 1
    gives a std only for test accuracy (over its 5 models); ours is the std over run seeds of each number.
    """
    papers = paper_configs() if papers is None else papers
    rows = []
    for label, runs in found.items():
        reports = [r for r in (_study_report(run, "ensemble") for run in runs) if r]
        if not reports or not runs[0].config:
            continue
        s = setting_of(runs[0])
        key = (s.model, s.width, s.dataset, round(100 * (s.sparsity or 0)))
        cells = [c for c in paper if (c["model"], c["width"], c["dataset"], c["sparsity"]) == key]
        if not cells:
            continue
        differs = first_difference(runs, papers.get(key))
        members = {r.get("members") for r in reports}
        if differs is None and members != {PAPER_MEMBERS}:
            differs = f"studies.ensemble.members: {sorted(members, key=str)} (paper: {PAPER_MEMBERS})"
        for c in cells:
            values = [row[ENSEMBLE_METRICS[c["column"]]] for r in reports for row in r.get("rows", [])
                      if row.get("group") == c["method"] and ENSEMBLE_METRICS[c["column"]] in row]
            if not values:
                continue
            ours = Ours(label, 0, "", values, differs)
            row = {"setting": c["setting"], "group": c["row"], "column": c["column"], "config": label,
                   "paper_mean": c["mean"], "paper_std": c["std"], "our_mean": ours.mean, "our_std": ours.std,
                   "our_seeds": len(values)}
            if differs is None:
                se = standard_error(c["std"], PAPER_MEMBERS, ours.std, len(values))
                row.update(difference=ours.mean - c["mean"], within_2se=abs(ours.mean - c["mean"]) <= 2 * se + 1e-9)
            else:
                row["not_comparable"] = differs
            rows.append(row)
    return rows


def _study_report(run: SeedRun, name: str) -> dict[str, Any] | None:
    try:
        report = json.loads((run.path / "studies" / f"{name}.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return report if isinstance(report, dict) else None


def ensemble_markdown(rows: list[dict[str, Any]]) -> str:
    out = ["# Our ensemble study beside the paper's Table 1", "",
           "Mean over run seeds (each seed's study is one ensemble of its members). JS is compared in the paper's "
           "form (js_midpoint_first, analysis/diversity.py); the paper gives a std only for test accuracy.", ""]
    if not rows:
        return "\n".join(out + ["No `--study ensemble` report under this save_path is of a Table 1 setting.", ""])
    out += ["| setting | group | column | config | paper | ours (n) | ours − paper | within 2 SE |",
            "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = f"not comparable: {r['not_comparable']}" if "not_comparable" in r else _yes(r["within_2se"])
        diff = f"{r['difference']:+.3f}" if "difference" in r else ""
        out.append(f"| {r['setting']} | {r['group']} | {r['column']} | {r['config']} "
                   f"| {_pm(r['paper_mean'], r['paper_std'])} | {_pm(r['our_mean'], r['our_std'])} "
                   f"({r['our_seeds']}) | {diff} | {verdict} |")
    return "\n".join(out + [""])


def paper_k(our_k: int, convention: str) -> int | None:
    """The paper's column for our rewind point k; None where the paper has no such checkpoint (our init)."""
    if convention == PAPER_CONVENTION:
        return our_k
    if convention == "epochs":
        # Ours after k epochs = the released code's "k-1" (saved after its k-th epoch); our init has no twin.
        return our_k - 1 if our_k >= 1 else None
    raise ValueError(f"unknown rewind convention {convention!r}")


def our_k(paper_col: int, convention: str) -> int:
    return paper_col if convention == PAPER_CONVENTION else paper_col + 1


def convention_of(run: SeedRun) -> str:
    return run.results.get("rewind_convention") or run.config.get("rewind_convention") or "epochs"


def setting_value(cfg: Config, key: str) -> Any:
    """A ``COMPARED`` setting of ``cfg`` as the runner uses it."""
    if key == "model_type":
        return canonical_model_type(cfg.model_type)
    if key == "model_b_epochs":
        return cfg.b_epochs
    if key == "sparse_epochs":
        return cfg.total_sparse_epochs
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def paper_configs(root: Path = REPO) -> dict[tuple[str, int, str, int], Config]:
    """(model as tables show it, width, dataset, sparsity %) -> the paper config that makes that cell."""
    out = {}
    for folder in PAPER_CONFIG_DIRS:
        for path in sorted((root / folder).glob("*.yaml")):
            cfg = load_config(path, check_data=False)
            out[(display_name(cfg.model_type), cfg.width_multiplier, cfg.dataset,
                 round(100 * cfg.pruning.sparsity))] = cfg
    return out


def first_difference(runs: list[SeedRun], paper: Config | None) -> str | None:
    """The first way these seeds' experiment differs from the paper config ``paper``; None if it is the paper's."""
    if paper is None:
        return "no paper config makes this cell"
    try:
        ours = config_from_dict(runs[0].config, check_data=False)
    except (UserError, ValueError) as err:
        return f"its config.yaml does not load ({err})"
    for key in COMPARED:
        mine, theirs = setting_value(ours, key), setting_value(paper, key)
        if mine != theirs:
            return f"{key}: {mine} (paper: {theirs})"
    real = REAL_SIZES.get(paper.dataset)
    for run in runs:
        data = run.results.get("data")
        if real and isinstance(data, dict) and (data.get("train"), data.get("test")) != real:
            return (f"data: {data.get('train')} training and {data.get('test')} test examples (paper: the real "
                    f"{paper.dataset}, {real[0]} and {real[1]})")
    return None


@dataclass
class Ours:
    """One config's seeds at one (sparsity, method, paper k): the accuracies over seeds."""

    config: str
    our_k: int
    convention: str
    values: list[float]
    differs: str | None = None  # the first setting in which this config is not the paper's experiment

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)  # exact: identical seeds give back that very number

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def collect_ours(found: dict[str, list[SeedRun]], cells: set[tuple],
                 papers: dict[tuple, Config] | None = None) -> tuple[dict[tuple, list[Ours]], list[str]]:
    """Paper-cell key -> our configs' numbers there; and one line per config whose runs no paper cell holds.

    ``papers`` (default: ``paper_configs()``) gives each cell's paper config, to which each config is held.
    """
    papers = paper_configs() if papers is None else papers
    ours: dict[tuple, list[Ours]] = defaultdict(list)
    unmatched: list[str] = []
    for label, seeds in found.items():
        # One convention per group: a config hash that saw both is split, never averaged across conventions.
        by_conv: dict[str, list[SeedRun]] = defaultdict(list)
        for run in seeds:
            by_conv[convention_of(run)].append(run)
        for conv, runs in sorted(by_conv.items()):
            if conv not in ("epochs", PAPER_CONVENTION):
                unmatched.append(f"{label}: unknown rewind convention {conv!r}, so its k cannot be lined up")
                continue
            setting = setting_of(runs[0])
            if not runs[0].config:
                unmatched.append(f"{label}: no config.yaml beside results.json, so its setting is unknown")
                continue
            if setting.width is None or setting.sparsity is None:
                unmatched.append(f"{label}: its config.yaml names no width or no sparsity")
                continue
            sparsity = round(100 * setting.sparsity)
            values: dict[tuple[str, int], list[float]] = defaultdict(list)
            for run in runs:
                for k, entries in run.results.get("sparse", {}).items():
                    for method, entry in entries.items():
                        values[(method, int(k))].append(entry["accuracy"])
            no_cell = []
            differs = first_difference(runs, papers.get((setting.model, setting.width, setting.dataset, sparsity)))
            for (method, k), accs in sorted(values.items()):
                pk = paper_k(k, conv)
                key = (setting.model, setting.width, setting.dataset, sparsity, method, pk)
                if key in cells:
                    ours[key].append(Ours(label, k, conv, accs, differs))
                else:
                    no_cell.append(f"{method} k={k}")
            if no_cell:
                name = f"{label} ({setting.model}, width {setting.width}, {setting.dataset}, {sparsity} %, {conv})"
                if not any(c[:4] == (setting.model, setting.width, setting.dataset, sparsity) for c in cells):
                    unmatched.append(f"{name}: a setting the paper's tables do not have")
                    continue
                why = "; under `epochs` our k=0 is the initialisation, which the paper's tables never ran" \
                    if conv == "epochs" and any(c.endswith(" k=0") for c in no_cell) else ""
                unmatched.append(f"{name}: {', '.join(no_cell)}{why}")
    return ours, unmatched


def compare_rows(paper: list[Cell], ours: dict[tuple, list[Ours]]) -> list[dict[str, Any]]:
    """One row per paper cell and config that fills it; a cell nobody filled is one row with status missing."""
    paper_means = {c.key: c.mean for c in paper}
    rows = []
    for cell in paper:
        base = {"table": cell.table, "row": cell.row, "column": cell.column, "setting": cell.setting,
                "sparsity": cell.sparsity, "method": cell.method, "paper_k": cell.k,
                "paper_mean": cell.mean, "paper_std": cell.std}
        naive_key = (*cell.key[:4], "naive", cell.k)
        paper_ge = None
        if cell.method == "permuted" and naive_key in paper_means:
            paper_ge = cell.mean >= paper_means[naive_key]
        filled = ours.get(cell.key, [])
        if not filled:
            rows.append({**base, "status": "missing", "perm_ge_naive_paper": paper_ge})
            continue
        for o in filled:
            if o.differs is not None:  # another experiment: its numbers are shown, with no verdict
                rows.append({**base, "status": "not comparable", "config": o.config, "our_k": o.our_k,
                             "rewind_convention": o.convention, "our_mean": o.mean, "our_std": o.std,
                             "our_seeds": len(o.values), "not_comparable": o.differs})
                continue
            se = standard_error(cell.std, PAPER_SEEDS, o.std, len(o.values))
            diff = o.mean - cell.mean
            ours_ge = None
            if cell.method == "permuted":
                naive = [n for n in ours.get(naive_key, []) if n.config == o.config and n.convention == o.convention]
                if naive:
                    ours_ge = o.mean >= naive[0].mean
            rows.append({**base, "status": "filled", "config": o.config, "our_k": o.our_k,
                         "rewind_convention": o.convention, "our_mean": o.mean, "our_std": o.std,
                         "our_seeds": len(o.values), "difference": diff,
                         "within_2se": abs(diff) <= 2 * se + 1e-9,  # 1e-9: two-decimal paper numbers, float sums
                         "perm_ge_naive_paper": paper_ge, "perm_ge_naive_ours": ours_ge})
    return rows


def standard_error(std_a: float | None, n_a: int, std_b: float | None, n_b: int) -> float:
    """The standard error of the difference of two independent means, from their variances: √(s_a²/n_a + s_b²/n_b).

    A std we do not have counts as 0.
    """
    return math.sqrt((std_a or 0.0) ** 2 / n_a + (std_b or 0.0) ** 2 / n_b)


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "**no**")


def _ks(ks: list[int]) -> str:
    return ", ".join(str(k) for k in sorted(set(ks)))


def markdown(rows: list[dict[str, Any]], unmatched: list[str]) -> str:
    out = ["# Our runs beside the paper's tables", "",
           "Test accuracy (%), mean ± std over seeds. Paper k is the column of the paper's table (checkpoint after "
           "k+1 epochs); our k is the rewind point of our run in its own convention. Within 2 SE: "
           "|ours − paper| ≤ 2·√(s_paper²/3 + s_ours²/n). A run whose settings are not the paper config's is "
           "`not comparable` (the first setting that differs) and gets no verdict.", ""]
    filled = [r for r in rows if r["status"] == "filled"]
    other = [r for r in rows if r["status"] == "not comparable"]
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] != "missing":
            by_table[(r["table"], r["setting"])].append(r)
    for (table, setting), group in by_table.items():
        title = f"Table {table}" if table != "summary" else "Derived summary (best over k, means only)"
        out += [f"## {title}: {setting}", "",
                "| S | method | paper k | our k | config | paper | ours (n) | ours − paper | within 2 SE "
                "| perm ≥ naive (paper / ours) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            ge = f"{_yes(r.get('perm_ge_naive_paper'))} / {_yes(r.get('perm_ge_naive_ours'))}" \
                if r["method"] == "permuted" else ""
            if r["status"] == "not comparable":
                diff, verdict, ge = "", f"not comparable: {r['not_comparable']}", ""
            else:
                diff, verdict = f"{r['difference']:+.2f}", _yes(r["within_2se"])
            out.append(f"| {r['sparsity']}% | {METHOD_LABELS[r['method']]} | {r['paper_k']} | {r['our_k']} "
                       f"| {r['config']} ({r['rewind_convention']}) | {_pm(r['paper_mean'], r['paper_std'])} "
                       f"| {_pm(r['our_mean'], r['our_std'])} ({r['our_seeds']}) | {diff} | {verdict} | {ge} |")
        out.append("")
    if filled:
        within = sum(r["within_2se"] for r in filled)
        pairs = [r for r in filled if r["perm_ge_naive_ours"] is not None]
        out += [f"Filled cells: {len(filled)}, within 2 SE: {within}. "
                f"permuted ≥ naive in ours: {sum(r['perm_ge_naive_ours'] for r in pairs)} of {len(pairs)}, "
                f"in the paper at the same cells: {sum(bool(r['perm_ge_naive_paper']) for r in pairs)} of "
                f"{len(pairs)}.", ""]
    elif not other:
        out += ["No run under this save_path fills a cell of the paper's tables.", ""]
    if other:
        out += [f"Not comparable: {len(other)} cells, from runs whose settings are not the paper's "
                f"(e.g. {other[0]['config']}: {other[0]['not_comparable']}).", ""]
    out += missing_lines(rows)
    if unmatched:
        out += ["## Runs with no paper cell", ""] + [f"- {line}" for line in unmatched] + [""]
    return "\n".join(out)


def missing_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Every paper cell nobody filled, named by table, sparsity, method and k; whole tables in one line."""
    missing = [r for r in rows if r["status"] == "missing"]
    if not missing:
        return ["## Missing cells", "", "None: every cell of the paper's tables is filled.", ""]
    filled_tables = {(r["table"], r["setting"]) for r in rows if r["status"] != "missing"}
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in missing:
        by_table[(r["table"], r["setting"])].append(r)
    out = ["## Missing cells", "", f"{len(missing)} paper cells have no run here:", ""]
    for (table, setting), group in by_table.items():
        name = f"Table {table}" if table != "summary" else "Derived summary"
        if (table, setting) not in filled_tables:
            sparsities = ", ".join(str(s) for s in sorted({r["sparsity"] for r in group}))
            out.append(f"- {name}, {setting}: all {len(group)} cells (S {sparsities} %; "
                       f"k {_ks([r['paper_k'] for r in group])})")
            continue
        # Whole sparsities and whole method rows in a word, so the partly filled ones stand out.
        size: dict[tuple, int] = defaultdict(int)
        for r in rows:
            if (r["table"], r["setting"]) == (table, setting):
                size[(r["sparsity"],)] += 1
                size[(r["sparsity"], r["method"])] += 1
        by_row: dict[tuple[int, str], list[int]] = defaultdict(list)
        for r in group:
            by_row[(r["sparsity"], r["method"])].append(r["paper_k"])
        parts, done = [], set()
        for (s, m), ks in by_row.items():
            if s in done:
                continue
            if sum(len(v) for (s2, _), v in by_row.items() if s2 == s) == size[(s,)]:
                parts.append(f"{s}% all {size[(s,)]} cells")
                done.add(s)
            elif len(ks) == size[(s, m)]:
                parts.append(f"{s}% {METHOD_LABELS[m]} all k")
            else:
                parts.append(f"{s}% {METHOD_LABELS[m]} k={_ks(ks)}")
        out.append(f"- {name}, {setting}: " + "; ".join(parts))
    out.append("")
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    def cell(v: Any) -> Any:
        if v is None:
            return ""
        return ("yes" if v else "no") if isinstance(v, bool) else v

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: cell(r.get(c)) for c in CSV_COLUMNS})


def _write_dicts(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__.splitlines()[0])
    p.add_argument("save_path", type=Path, nargs="?", default=Path("runs"),
                   help="the save_path of the runs (holds <config>/seed_<N>/; default: runs)")
    p.add_argument("--csv", type=Path, help="also write one row per paper cell (and config that fills it) here")
    p.add_argument("--study", choices=["ensemble"], help="compare a study's reports instead (ensemble: Table 1)")
    args = p.parse_args(argv)
    found = find_runs(args.save_path)
    if not found:
        print(f"error: no <config>/seed_<N>/results.json under {args.save_path}", file=sys.stderr)
        return 2
    if args.study == "ensemble":
        rows = ensemble_rows(found, load_ensemble_paper())
        print(ensemble_markdown(rows))
        if args.csv:
            _write_dicts(args.csv, rows)
        return 0
    paper = load_paper()
    ours, unmatched = collect_ours(found, {c.key for c in paper})
    rows = compare_rows(paper, ours)
    print(markdown(rows, unmatched))
    if args.csv:
        write_csv(args.csv, rows)
    return 0


if __name__ == "__main__":
    from utils.errors import run_command

    sys.exit(run_command(main, "nothing was written"))

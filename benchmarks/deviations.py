"""Each way a paper config differs from our own defaults, measured: ours against the released code's choice.

For ``matching.stream`` (pooled | released), ``matching.augment`` (false | true) and ``normalization``
(dataset | imagenet), one variant per deviation flips that one setting from ours to the released code's.
Every variant runs both phases of ``benchmarks/deviations.yaml`` (ResNet20 on a Fashion-MNIST subset,
a few epochs) through ``experiment.py`` at widths x1 and x2 over three seeds. Stream and augment change
only the matching, so their runs share dense A, B and IMP with ours through the artifact keys; the
normalisation variant trains its own.

Rows go to ``--out`` (JSON lines) as they finish; a rerun skips rows already there, so an interrupted
measurement resumes. ``--report`` prints the table: per width and variant, the mean over seeds of permuted
and naive accuracy and of the test loss barrier after matching, and each variant's paired difference from
ours with its seed spread (standard deviation of the per-seed differences).

    nice .venv/bin/python -m benchmarks.deviations --out runs/deviations.jsonl
    .venv/bin/python -m benchmarks.deviations --out runs/deviations.jsonl --report
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from analysis.runs import mean_std

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "benchmarks" / "deviations.yaml"
# variant -> the --set flags that make it; "ours" is the config as it is.
VARIANTS: dict[str, list[str]] = {
    "ours": [],
    "stream=released": ["matching.stream=released"],
    # the released ResNet20 matching whole: its stream activations and its estimate of each unit's deviation
    "stream+std=released": ["matching.stream=released", "matching.std=batch_mean"],
    "augment=true": ["matching.augment=true"],
    "normalization=imagenet": ["normalization=imagenet"],
}
METRICS = ("permuted", "naive", "barrier")
DIGITS = {"permuted": 2, "naive": 2, "barrier": 3}


def run_variant(width: int, seed: int, variant: str, save_path: Path, extra: list[str]) -> dict[str, Any]:
    """Both phases of one variant; the row of its results.json that the table needs."""
    sets = [f"width_multiplier={width}", *VARIANTS[variant], *extra]
    cmd = [sys.executable, str(REPO / "experiment.py"), "-config", str(CONFIG), "-seed", str(seed),
           "-save_path", str(save_path), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} x{width} seed {seed} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    line = next(x for x in out.stdout.splitlines() if "results in " in x)
    results = json.loads(Path(line.split("results in ")[1].strip()).read_text())
    (k, runs), = results["sparse"].items()
    return {"width": width, "seed": seed, "variant": variant, "rewind": int(k),
            "permuted": runs["permuted"]["accuracy"], "naive": runs["naive"]["accuracy"],
            "barrier": results["matching"]["test_loss_barrier_after"],
            "midpoint_after": results["matching"]["midpoint_accuracy_after"],
            "dense_a": results["dense"]["A"]["accuracy"]}


def measure(out: Path, widths: list[int], seeds: list[int], save_path: Path, extra: list[str]) -> None:
    done = {(r["width"], r["seed"], r["variant"]) for r in read_rows(out)}
    # every width's first seed before any width's further seeds: a measurement cut short still covers each width
    order = sorted(((w, s) for w in widths for s in seeds), key=lambda ws: (seeds.index(ws[1]) > 0, ws[0], ws[1]))
    for width, seed in order:
        for variant in VARIANTS:
            if (width, seed, variant) in done:
                continue
            row = run_variant(width, seed, variant, save_path, extra)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _mean_sd(values: list[float], digits: int = 2) -> str:
    mean, sd = mean_std(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def report(rows: list[dict[str, Any]]) -> str:
    """The markdown table: means ± seed SD per variant, and each variant's paired difference from ours."""
    by = {(r["width"], r["seed"], r["variant"]): r for r in rows}
    lines = ["| width | variant | seeds | permuted acc. % | naive acc. % | loss barrier after | "
             "Δ permuted vs ours | Δ barrier vs ours |", "|---|---|---|---|---|---|---|---|"]
    for width in sorted({r["width"] for r in rows}):
        for variant in VARIANTS:
            seeds = sorted(s for (w, s, v) in by if w == width and v == variant and (w, s, "ours") in by)
            if not seeds:
                continue
            cells = [_mean_sd([by[(width, s, variant)][m] for s in seeds], DIGITS[m]) for m in METRICS]
            if variant == "ours":
                deltas = ["", ""]
            else:
                deltas = [_mean_sd([by[(width, s, variant)][m] - by[(width, s, "ours")][m] for s in seeds], DIGITS[m])
                          for m in ("permuted", "barrier")]
            lines.append(f"| x{width} | {variant} | {len(seeds)} | " + " | ".join(cells + deltas) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "deviations.jsonl")
    p.add_argument("--save-path", type=Path, default=REPO / "runs" / "deviations")
    p.add_argument("--widths", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", dest="extra", action="append", default=[], help="another override for every run")
    p.add_argument("--report", action="store_true", help="print the table of what --out holds")
    args = p.parse_args(argv)
    if not args.report:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        measure(args.out, args.widths, args.seeds, args.save_path, args.extra)
    print(report(read_rows(args.out)))


if __name__ == "__main__":
    main()

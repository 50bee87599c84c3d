"""Run every benchmark and write benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.run_all                 # about 10 minutes on 2 cores
    .venv/bin/python -m benchmarks.run_all --threads 2     # another thread count
    .venv/bin/python -m benchmarks.run_all --tiny --out /tmp/R.md   # seconds: a smoke test

Each benchmark runs in its own process (thread settings and compiled code do
not leak between them), prints its tables, and hands its results back as
JSON; RESULTS.md gets the machine's description, every figure set against its
target, and each benchmark's tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Section, checks_table, machine, md_table, render_section

BENCHMARKS = ("bench_threads", "bench_training", "bench_activation_matching", "bench_weight_matching",
              "bench_demo", "bench_paper_table")


def machine_table(m: dict[str, Any]) -> str:
    rows = [
        ["CPU (/proc/cpuinfo model name)", m["cpu"]],
        ["vendor, family/model", f"{m['vendor']}, {m['family_model']}"],
        ["logical CPUs / physical cores", f"{m['logical_cpus']} / {m['physical_cores']}"],
        ["clock (/proc/cpuinfo cpu MHz)", f"{m['clock_ghz']:.3f} GHz"],
        ["vector flags", ", ".join(m["vector_flags"]) or "none"],
        ["fp32 FLOP/cycle/core (assumption)", f"{m['flops_per_cycle']}: {m['peak_assumption']}"],
        ["fp32 peak, all cores (cores x clock x FLOP/cycle)", f"{m['peak_gflops_all_cores']:.1f} GFLOP/s"],
        ["torch / python", f"{m['torch']} / {m['python']}"],
        ["torch threads used (torch default here)", f"{m['torch_threads']} ({m['torch_default_threads']})"],
        ["load average (1, 5, 15 min) at start", ", ".join(f"{v:.2f}" for v in m["loadavg"])],
    ]
    return md_table(["", ""], rows)


HAND_MARKER = "<!-- Measured by hand below this line"


def kept_sections(path: Path) -> str:
    """What follows the hand-measured marker in the current file (multi-seed studies no script reruns), or ""."""
    text = path.read_text() if path.is_file() else ""
    at = text.find(HAND_MARKER)
    return "\n" + text[at:] if at >= 0 else ""


def results_markdown(m: dict[str, Any], sections: list[Section], command: str, seconds: float,
                     load_after: list[float] | None = None) -> str:
    checks = [c for s in sections for c in s["checks"]]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        f"Produced by `{command}` on {when} in {seconds / 60:.1f} minutes. Speeds are ratios of variants run "
        "side by side in one process (interleaved rounds, medians), except where a target is in seconds.",
        "## Machine\n\n" + machine_table(m)
        + (f"\n\nLoad average at the end: {', '.join(f'{v:.2f}' for v in load_after)}." if load_after else ""),
        "## Every figure against its target\n\n" + (checks_table(checks) if checks else "(no figures)"),
    ]
    parts += [render_section(s) for s in sections]
    return "\n\n".join(parts) + "\n"


def run_one(name: str, threads: int, tiny: bool, out_dir: Path) -> Section | None:
    json_path = out_dir / f"{name}.json"
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--threads", str(threads), "--json", str(json_path)]
    if tiny:
        cmd.append("--tiny")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if name != "bench_threads":  # that one compares thread counts itself, from torch's default
        env["OMP_NUM_THREADS"] = str(threads)
    print(f"\n=== {name} ===", flush=True)
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    print(f"=== {name}: {time.perf_counter() - began:.0f} s, exit {proc.returncode} ===", flush=True)
    if not json_path.exists():
        return None
    section = json.loads(json_path.read_text())
    if proc.returncode != 0:
        section["notes"].append(f"the benchmark exited with status {proc.returncode}")
    return section


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads for every benchmark (default 1)")
    p.add_argument("--tiny", action="store_true", help="seconds-long versions of every benchmark")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = p.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    m = machine(args.threads)
    began = time.perf_counter()
    sections, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            section = run_one(name, args.threads, args.tiny, Path(tmp))
            if section is None:
                failed.append(name)
            else:
                sections.append(section)
    seconds = time.perf_counter() - began
    command = "python -m benchmarks.run_all" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    text = results_markdown(m, sections, command, seconds, list(os.getloadavg()))
    if failed:
        text += "\n## Failed\n\n" + "\n".join(f"- {n}: no results (see the console output)" for n in failed) + "\n"
    Path(args.out).write_text(text + kept_sections(Path(args.out)))
    print(f"\nwrote {args.out} ({seconds / 60:.1f} min)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: the machine's description, side-by-side timing, tables, results.

Speed is only ever reported as a ratio of things run side by side in one
process: the variants of a benchmark run in interleaved rounds (the order
rotated each round), and each figure is the median over rounds, ratios being
medians of the per-round ratios. On a shared, noisy machine that cancels most
of the drift that absolute times suffer from.

A benchmark's result is a plain dict (``Section``), printed as markdown tables
and optionally written as JSON for ``run_all`` to collect into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
Section = dict[str, Any]


# ---------------------------------------------------------------- the machine


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def physical_cores() -> int:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; os.cpu_count() where unreadable."""
    try:
        blocks = Path("/proc/cpuinfo").read_text().strip().split("\n\n")
    except OSError:
        return os.cpu_count() or 1
    cores = set()
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cores.add((fields.get("physical id", "0"), fields.get("core id", fields.get("processor", "0"))))
    return len(cores) or (os.cpu_count() or 1)


def fp32_flops_per_cycle(info: dict[str, str]) -> tuple[int, str]:
    """Peak fp32 FLOPs per cycle per core from the vector/FMA flags, and the assumption made.

    The flags say which instructions exist, not how many units execute them, so
    the vendor and family decide between the usual configurations.
    """
    flags = set(info.get("flags", "").split())
    vendor = info.get("vendor_id", "")
    family = int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags and "fma" in flags:
        if vendor == "AuthenticAMD" and family == 0x19:
            return 32, ("AVX-512 on AMD Zen 4 (family 25): executed on two 256-bit FMA pipes, "
                        "2 x 8 lanes x 2 FLOP = 32 FLOP/cycle")
        return 64, "AVX-512 with two 512-bit FMA units: 2 x 16 lanes x 2 FLOP = 64 FLOP/cycle"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 with two 256-bit FMA units: 2 x 8 lanes x 2 FLOP = 32 FLOP/cycle"
    if "avx" in flags:
        return 16, "AVX without FMA: one 256-bit add + one mul per cycle = 16 FLOP/cycle"
    return 8, "SSE: 4 lanes add + 4 lanes mul = 8 FLOP/cycle"


def clock_ghz(info: dict[str, str]) -> float:
    try:
        return float(info.get("cpu MHz", "0")) / 1000.0
    except ValueError:
        return 0.0


def peak_gflops(cores: int, info: dict[str, str] | None = None) -> float:
    """Theoretical fp32 peak of ``cores`` cores at the clock /proc/cpuinfo reports."""
    info = cpuinfo() if info is None else info
    per_cycle, _ = fp32_flops_per_cycle(info)
    return cores * clock_ghz(info) * per_cycle


def sgemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GEMM throughput (MKL/oneDNN via torch.mm): the practical compute limit."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            began = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - began)
        return 2 * size**3 / best / 1e9
    finally:
        torch.set_num_threads(old)


def machine(threads: int | None = None) -> dict[str, Any]:
    """The machine's description for RESULTS.md."""
    info = cpuinfo()
    per_cycle, assumption = fp32_flops_per_cycle(info)
    cores = physical_cores()
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "cpu": info.get("model name", platform.processor() or "unknown"),
        "vendor": info.get("vendor_id", ""),
        "family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
        "logical_cpus": os.cpu_count(),
        "physical_cores": cores,
        "clock_ghz": clock_ghz(info),
        "vector_flags": [f for f in wanted if f in set(info.get("flags", "").split())],
        "flops_per_cycle": per_cycle,
        "peak_assumption": assumption,
        "peak_gflops_all_cores": cores * clock_ghz(info) * per_cycle,
        "torch": torch.__version__,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch_default_threads": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
    }


# ---------------------------------------------------------------- timing


def interleaved(
    variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each variant over ``rounds`` rounds after ``warmup`` untimed ones.

    Every round runs every variant once, the order rotated by one each round so
    that no variant always follows the same neighbour.
    """
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            began = time.perf_counter()
            variants[name]()
            elapsed = time.perf_counter() - began
            if r >= warmup:
                times[name].append(elapsed)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator/denominator (paired by round)."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True)])


# ---------------------------------------------------------------- tables and results


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def new_section(name: str, title: str) -> Section:
    return {"name": name, "title": title, "tables": [], "checks": [], "notes": [], "data": {}}


def add_table(section: Section, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    section["tables"].append({"title": title, "columns": list(columns), "rows": [list(r) for r in rows]})


def add_check(section: Section, figure: str, measured: float, target: str, met: bool | None,
              note: str = "", unit: str = "") -> None:
    """One figure set against its target (``met`` None: informational, no target)."""
    section["checks"].append({"figure": figure, "measured": measured, "unit": unit, "target": target,
                              "met": met, "note": note})


def render_section(section: Section) -> str:
    parts = [f"## {section['title']}"]
    for table in section["tables"]:
        parts.append(f"**{table['title']}**\n\n" + md_table(table["columns"], table["rows"]))
    if section["notes"]:
        parts.append("\n".join(f"- {n}" for n in section["notes"]))
    return "\n\n".join(parts)


def emit(section: Section, json_path: str | None) -> Section:
    """Print the section's tables (markdown) and write it as JSON if asked."""
    print(render_section(section), flush=True)
    if section["checks"]:
        print("\n" + checks_table(section["checks"]), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(section, indent=1, default=str))
    return section


def checks_table(checks: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        met = "—" if c["met"] is None else ("**met**" if c["met"] else "**missed**")
        measured = f"{fmt(c['measured'])}{(' ' + c['unit']) if c['unit'] else ''}"
        rows.append([c["figure"], measured, c["target"] or "—", met, c["note"]])
    return md_table(["figure", "measured", "target", "", "note"], rows)


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (for the tests)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, see RESULTS.md)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    return p


def set_threads(n: int) -> None:
    if n < 1:
        raise SystemExit(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)

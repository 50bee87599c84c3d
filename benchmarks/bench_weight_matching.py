"""Weight matching (``matching.match_weights``) of two ResNet20s at widths 1, 4, 8 and 16: seconds, sweeps.

A and B are freshly initialised models from different seeds (kaiming normal,
as the paper's code initialises them); trained models take a different
number of sweeps. The target is about seconds, so this one is an absolute
time on this machine: the load average is reported with it.

``--starts`` also times, side by side in interleaved rounds, ``match_weights`` (two descents: the
identity start and a data-flow first pass, the better kept) against the identity start alone (the
previous algorithm, ``init_perms`` = identity), with both objectives: the ratio is the cost of the
second start.
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.common import (
    add_check,
    add_table,
    base_parser,
    emit,
    interleaved,
    median,
    new_section,
    paired_ratio,
    set_threads,
)
from matching import identity_permutations, match_weights
from models import create

TARGET_W16_SECONDS = 15.0


def state(width: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return create("ResNet", num_classes=10, in_channels=3, width=width).state_dict()


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--starts", action="store_true", help="both starts against the identity start alone")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --starts")
    args = p.parse_args(argv)
    set_threads(args.threads)
    widths = [1] if args.tiny else args.widths
    rows, seconds = [], {}
    load = os.getloadavg()[0]
    for width in widths:
        sd_a, sd_b = state(width, 0), state(width, 1)
        spec = create("ResNet", num_classes=10, in_channels=3, width=width).permutation_spec()
        began = time.perf_counter()
        result = match_weights(spec, sd_a, sd_b, seed=0, max_iter=100)
        seconds[width] = time.perf_counter() - began
        params = sum(v.numel() for v in sd_a.values() if v.is_floating_point())
        rows.append([f"ResNet20x{width}", params / 1e6, seconds[width], result.sweeps, result.converged])
        print(f"width {width}: {seconds[width]:.2f} s, {result.sweeps} sweeps", flush=True)
    section = new_section("weight_matching", f"4. Weight matching, {args.threads} thread(s)")
    add_table(section, f"match_weights(max_iter=100), random-init A and B; load average {load:.2f} at start",
              ["model", "M params", "s", "sweeps", "converged"], rows)
    if 16 in seconds:
        w16 = seconds[16]
        add_check(section, "weight matching ResNet20x16", w16, f"<= {TARGET_W16_SECONDS:.0f} s",
                  w16 <= TARGET_W16_SECONDS, unit="s", note=f"load average {load:.1f}")
    section["data"] = {"seconds": seconds}
    if args.starts:
        compare_starts(section, widths, 1 if args.tiny else args.rounds)
    return emit(section, args.json)


def _start_variants(results: dict, spec, sd_a: dict, sd_b: dict) -> dict:
    identity = identity_permutations(spec, sd_a)

    def before() -> None:
        results["before"] = match_weights(spec, sd_a, sd_b, seed=0, init_perms=identity)

    def now() -> None:
        results["now"] = match_weights(spec, sd_a, sd_b, seed=0)

    return {"before": before, "now": now}


def compare_starts(section: dict, widths: list[int], rounds: int) -> None:
    """Both starts (now) against the identity start alone (before), interleaved, per width."""
    rows = []
    for width in widths:
        sd_a, sd_b = state(width, 0), state(width, 1)
        spec = create("ResNet", num_classes=10, in_channels=3, width=width).permutation_spec()
        results: dict = {}
        times = interleaved(_start_variants(results, spec, sd_a, sd_b), rounds=rounds, warmup=0)
        before, now = results["before"], results["now"]
        rows.append([f"ResNet20x{width}", median(times["before"]), median(times["now"]),
                     paired_ratio(times["now"], times["before"]), before.objective, now.objective,
                     before.sweeps, now.sweeps])
        print(f"width {width}: now/before {rows[-1][3]:.2f}x, objective {before.objective:.6g} -> "
              f"{now.objective:.6g}", flush=True)
    add_table(section, f"both starts (now) vs the identity start alone (before), {rounds} interleaved rounds",
              ["model", "before s", "now s", "now/before", "before objective", "now objective", "before sweeps",
               "now sweeps (kept run)"], rows)


if __name__ == "__main__":
    main()

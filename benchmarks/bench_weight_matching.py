"""Weight matching (``matching.match_weights``) of two ResNet20s at widths 1, 4, 8 and 16: seconds, sweeps.

A and B are freshly initialised models from different seeds (kaiming normal,
as the paper's code initialises them); trained models take a different
number of sweeps. The target is about seconds, so this one is an absolute
time on this machine: the load average is reported with it.
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.common import add_check, add_table, base_parser, emit, new_section, set_threads
from matching import match_weights
from models import create

TARGET_W16_SECONDS = 15.0


def state(width: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return create("ResNet", num_classes=10, in_channels=3, width=width).state_dict()


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[1, 4, 8, 16])
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
    return emit(section, args.json)


if __name__ == "__main__":
    main()

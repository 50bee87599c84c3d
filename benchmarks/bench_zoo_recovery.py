"""Planted-permutation recovery on torchvision classifiers: objective found vs planted, exact recovery, time.

For each model of ``benchmarks.torchvision_zoo`` (``--narrow``: the test suite's narrow versions),
the spec is derived from the traced graph, B is A with a random permutation of every group, and
both matching methods are asked to find it again:

- weight matching (``match_weights``): the objective ``sum <pi(A), B>`` it reaches against the
  planted permutation's (which is the maximum, ``|B|^2``), its sweeps, and whether it moved A
  exactly onto B;
- activation matching on a few random batches: whether it moved A exactly onto B.

Times are seconds on this machine, one thread (absolute: they are for comparing the rows, and
before against after on the same machine, not a target).
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import add_table, base_parser, emit, new_section, set_threads
from benchmarks.torchvision_zoo import NARROW, ZOO, planted, recovered, trained_like
from matching import activation_matching, derive_spec, match_weights, weight_matching_objective


def run_model(name: str, build, shape: tuple[int, ...], seed: int, batches: int) -> list:
    torch.manual_seed(seed)
    model = trained_like(build(), seed + 1)
    x = torch.randn(shape)
    spec = derive_spec(model, x, report=lambda _line: None)
    model_b, perms = planted(model, spec, seed + 7)
    sd_a, sd_b = model.state_dict(), model_b.state_dict()
    best = weight_matching_objective(spec, sd_a, sd_b, perms)
    began = time.perf_counter()
    result = match_weights(spec, sd_a, sd_b, seed=seed)
    wm_s = time.perf_counter() - began
    g = torch.Generator().manual_seed(seed + 5)
    data = [torch.randn(shape, generator=g) for _ in range(batches)]
    began = time.perf_counter()
    found = activation_matching(model, model_b, data, spec=spec)
    am_s = time.perf_counter() - began
    units = sum(n.numel() for n in perms.values())
    return [name, seed, len(spec.groups), units, result.objective, best, result.objective / best,
            result.sweeps, recovered(spec, model, model_b, result.perms), wm_s,
            recovered(spec, model, model_b, found), am_s]


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--narrow", action="store_true", help="the narrow, shallow versions the tests use")
    p.add_argument("--models", nargs="+", default=None, help="a subset of the zoo (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--batches", type=int, default=2, help="batches of random inputs for activation matching")
    args = p.parse_args(argv)
    set_threads(args.threads)
    zoo = NARROW if args.narrow or args.tiny else ZOO
    names = args.models or (["mobilenet_v3_small"] if args.tiny else list(zoo))
    rows = []
    for name in names:
        build, shape = zoo[name]
        for seed in args.seeds:
            row = run_model(name, build, shape, seed, args.batches)
            rows.append(row)
            print(f"{name} seed {seed}: weight {row[4]:.6g} of {row[5]:.6g} ({row[6]:.4f}) exact={row[8]} "
                  f"{row[9]:.2f}s; activation exact={row[10]} {row[11]:.2f}s", flush=True)
    section = new_section("zoo_recovery", "Planted permutations in torchvision classifiers")
    add_table(section, f"{'narrow' if zoo is NARROW else 'standard'} models, B = permuted A, "
              f"{args.threads} thread(s)",
              ["model", "seed", "groups", "units", "WM objective", "planted", "ratio", "sweeps", "WM exact",
               "WM s", "AM exact", "AM s"], rows)
    section["data"] = {"rows": rows}
    return emit(section, args.json)


if __name__ == "__main__":
    main()

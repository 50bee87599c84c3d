"""Planted-permutation recovery on torchvision classifiers: objective found vs planted, exact recovery, time.

For each model of ``benchmarks.torchvision_zoo`` (``--narrow``: the test suite's narrow versions),
the spec is derived from the traced graph, B is A with a random permutation of every group, and
both matching methods are asked to find it again:

- weight matching (``match_weights``): the objective ``sum <pi(A), B>`` it reaches against the
  planted permutation's (which is the maximum, ``|B|^2``), its sweeps, and whether it moved A
  exactly onto B;
- activation matching on a few random batches: whether it moved A exactly onto B.

"before" is the previous weight matching, a descent from the identity alone (``init_perms`` =
identity reproduces it), run in the same process right after: its objective, and the time of
``match_weights`` divided by its time (one run each, so a rough ratio on a busy machine). Times are
seconds on this machine, one thread.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import add_table, base_parser, emit, new_section, set_threads
from benchmarks.torchvision_zoo import NARROW, ZOO, planted, recovered, trained_like
from matching import (
    activation_matching,
    derive_spec,
    identity_permutations,
    match_weights,
    weight_matching_objective,
)


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
    began = time.perf_counter()
    before = match_weights(spec, sd_a, sd_b, seed=seed, init_perms=identity_permutations(spec, sd_a))
    before_s = time.perf_counter() - began
    g = torch.Generator().manual_seed(seed + 5)
    data = [torch.randn(shape, generator=g) for _ in range(batches)]
    began = time.perf_counter()
    found = activation_matching(model, model_b, data, spec=spec)
    am_s = time.perf_counter() - began
    units = sum(n.numel() for n in perms.values())
    return [name, seed, len(spec.groups), units, best, before.objective / best,
            recovered(spec, model, model_b, before.perms), result.objective / best,
            recovered(spec, model, model_b, result.perms), wm_s, wm_s / before_s,
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
            print(f"{name} seed {seed}: {row[2]} groups; weight matching found/planted {row[5]:.4f} "
                  f"exact={row[6]} before, {row[7]:.4f} exact={row[8]} now, {row[9]:.2f}s ({row[10]:.2f}x); "
                  f"activation exact={row[11]} {row[12]:.2f}s", flush=True)
    section = new_section("zoo_recovery", "Planted permutations in torchvision classifiers")
    add_table(section, f"{'narrow' if zoo is NARROW else 'standard'} models, B = permuted A, "
              f"{args.threads} thread(s)",
              ["model", "seed", "groups", "units", "planted objective", "WM found/planted before",
               "exact before", "WM found/planted now", "exact now", "WM s now", "now/before time", "AM exact",
               "AM s"], rows)
    section["data"] = {"rows": rows}
    return emit(section, args.json)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Mutation check: do the tests notice when the science is broken?

Copies the repository (tracked and untracked-but-not-ignored files, as the working tree has them, plus a
symlink to .venv) into a temporary folder, applies one source mutation at a time there, runs that mutant's
own pytest selection (the tests that pin the line it breaks) and reports whether a test failed (killed),
all passed (survived), the run hit the time limit (timeout: not a kill) or pytest could not run (error).
Every selected mutant must apply first: one whose source text is gone or ambiguous stops the check with
one line per stale mutant. The checkout itself is never modified.

    nice .venv/bin/python scripts/mutation_check.py                     # every mutant, each with its own tests
    .venv/bin/python scripts/mutation_check.py --match imp.py --list    # the matching mutants and their tests
    .venv/bin/python scripts/mutation_check.py --match compare tests/test_analysis.py   # other tests for them

Exit status 0 when every mutant was killed by a failing test, 1 when any survived, timed out or errored,
2 for a mutant that does not apply, an unmutated selection that fails, or bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutant:
    """One source mutation and the tests that must fail under it (its own selection: a kill in seconds, not a
    whole-suite run; a mutant of one line of science has the test that pins that line)."""

    file: str
    old: str  # must occur exactly once in ``file``: a mutant that no longer applies stops the whole check
    new: str
    what: str
    tests: tuple[str, ...] = ()  # empty: TESTS_FOR[file]


# The selection of a mutant that names none, by the file it mutates.
TESTS_FOR = {
    "pruning/magnitude.py": ("tests/test_pruning.py",),
    "pruning/masks.py": ("tests/test_pruning.py",),
    "pruning/imp.py": ("tests/test_pruning.py",),
    "phases/graph.py": ("tests/test_science.py",),
    "phases/sparse_step.py": ("tests/test_science.py", "tests/test_released_recipe.py"),
    "phases/keys.py": ("tests/test_released_recipe.py", "tests/test_science.py"),
    "utils/config.py": ("tests/test_released_recipe.py",),
    "phases/match_step.py": ("tests/test_science.py", "tests/test_released_recipe.py"),
    "training/loop.py": ("tests/test_released_recipe.py",),
    "training/evaluate.py": ("tests/test_released_recipe.py",),
    "data/memory.py": ("tests/test_data.py",),
    "data/imagenet.py": ("tests/test_data.py",),
}
PINS = "tests/test_science_pins.py"


def M(file: str, old: str, new: str, what: str, *tests: str) -> Mutant:  # noqa: N802 - reads as a table row
    return Mutant(file, old, new, what, tests)


MUTATIONS: list[Mutant] = [
    # --- global magnitude pruning
    M("pruning/magnitude.py", "n_prune, largest=False", "n_prune, largest=True",
     "magnitude pruning removes the largest weights"),
    M("pruning/magnitude.py", "n_prune = round(amount * remaining)", "n_prune = int(amount * remaining)",
     "pruned count truncated (round -> int)"),
    M("pruning/magnitude.py", "n_prune = round(amount * remaining)", "n_prune = round(amount * remaining) + 1",
     "pruned count off by one"),
    M("pruning/magnitude.py", 'float("inf")', "0.0",
     "already-masked weights can be chosen again"),
    M("pruning/magnitude.py", ".to(masks[n].device) & masks[n]", ".to(masks[n].device)",
     "previously masked weights come back"),
    M("pruning/magnitude.py", "remaining = int(sum(int(masks[n].sum()) for n in names))",
     "remaining = int(sum(masks[n].numel() for n in names))",
     "amount taken of all weights, not of the remaining ones"),
    M("pruning/magnitude.py", "0.0 <= amount < 1.0", "0.0 <= amount <= 1.0",
     "amount 1.0 (prune everything) accepted"),
    # --- masks and sparsity
    M("pruning/masks.py", "return 1.0 - kept / total if total else 0.0", "return kept / total if total else 0.0",
     "sparsity returns density"),
    M("pruning/masks.py", "1.0 - float(m.sum()) / m.numel()", "float(m.sum()) / m.numel()",
     "layer_sparsity returns density"),
    M("pruning/masks.py", "(state[n] == 0)", "(state[n] <= 0)",
     "weight_sparsity counts negative weights as zeros"),
    M("pruning/masks.py",
     "    out = {}\n"
     "    for name, m in masks.items():\n"
     "        kept = int(m.sum())\n"
     "        order = torch.randperm(m.numel(), generator=generator)\n"
     "        flat = torch.zeros(m.numel(), dtype=torch.bool)\n"
     "        flat[order[:kept]] = True\n"
     "        out[name] = flat.view_as(m)\n"
     "    return out\n",
     "    total = sum(m.numel() for m in masks.values())\n"
     "    kept = sum(int(m.sum()) for m in masks.values())\n"
     "    flat = torch.zeros(total, dtype=torch.bool)\n"
     "    flat[torch.randperm(total, generator=generator)[:kept]] = True\n"
     "    out, offset = {}, 0\n"
     "    for name, m in masks.items():\n"
     "        out[name] = flat[offset:offset + m.numel()].view_as(m)\n"
     "        offset += m.numel()\n"
     "    return out\n",
     "random control with one global density instead of per-layer density"),
    M("pruning/masks.py", "flat[order[:kept]] = True", "flat[order[kept:]] = True",
     "random control keeps the complement count"),
    M("pruning/masks.py", "torch.randperm(m.numel(), generator=generator)",
     "torch.randperm(m.numel(), generator=torch.Generator().manual_seed(0))",
     "random control ignores its generator"),
    # --- IMP schedule
    M("pruning/imp.py", "return min(prune_perc, (target - current) / (1.0 - current))", "return prune_perc",
     "last IMP round not capped"),
    M("pruning/imp.py", "return min(prune_perc, (target - current) / (1.0 - current))",
     "return max(prune_perc, (target - current) / (1.0 - current))",
     "IMP cap uses max instead of min"),
    M("pruning/imp.py", "return min(prune_perc, (target - current) / (1.0 - current))",
     "return min(prune_perc, target - current)",
     "IMP cap as a fraction of all weights, not of the remaining"),
    M("pruning/imp.py", "return current >= target - tolerance - slack - 1e-12", "return current >= target - tolerance",
     "reached: no half-weight slack, no float slack (tolerance 0 never stops)"),
    M("pruning/imp.py", "return current >= target - tolerance - slack", "return current >= target + tolerance - slack",
     "reached: tolerance on the wrong side"),
    M("pruning/imp.py", "s = s + (1.0 - s) * amounts[-1]", "s = s + amounts[-1]",
     "planned schedule composes amounts of the total, not of the remaining"),
    M("pruning/imp.py", "params[n].mul_(masks[n].to(params[n].dtype))", "pass",
     "IMP does not zero the pruned weights before fine-tuning"),
    M("pruning/imp.py", "masks = prune_global_magnitude({n: params[n].detach() for n in prunable}, masks, amount)",
     "masks = prune_global_magnitude({n: params[n].detach() for n in prunable}, masks, prune_perc)",
     "IMP prunes prune_perc every round, ignoring the computed amount"),
    M("pruning/imp.py",
     "    rnd = start_round\n"
     "    total = sum(m.numel() for m in masks.values())\n"
     "    while rnd < max_rounds and not reached(sparsity(masks), target, tolerance, total):\n"
     "        amount = next_amount(sparsity(masks), target, prune_perc)\n"
     "        rnd += 1\n"
     "        stored = restore(rnd, amount) if restore else None\n"
     "        if stored is not None:\n"
     "            masks, metrics = stored\n"
     "        else:\n"
     "            remaining = sum(int(m.sum()) for m in masks.values())\n"
     "            masks = prune_global_magnitude({n: params[n].detach() for n in prunable}, masks, amount)\n",
     "    rnd = start_round\n"
     "    total = sum(m.numel() for m in masks.values())\n"
     "    stale = {n: params[n].detach().clone() for n in prunable}\n"
     "    while rnd < max_rounds and not reached(sparsity(masks), target, tolerance, total):\n"
     "        amount = next_amount(sparsity(masks), target, prune_perc)\n"
     "        rnd += 1\n"
     "        stored = restore(rnd, amount) if restore else None\n"
     "        if stored is not None:\n"
     "            masks, metrics = stored\n"
     "        else:\n"
     "            remaining = sum(int(m.sum()) for m in masks.values())\n"
     "            masks = prune_global_magnitude(stale, masks, amount)\n",
     "IMP ranks by the weights before the first round, not the fine-tuned ones"),
    # --- sparse runs (DESIGN §1 table; the run -> (weights, mask) table moved from sparse_step.py to graph.py)
    M("phases/graph.py", '"naive": ("B", "imp")', '"naive": ("A", "imp")',
     "naive trains from A's weights"),
    M("phases/graph.py", '"lth": ("A", "imp")', '"lth": ("B", "imp")',
     "lth trains from B's weights"),
    M("phases/graph.py", '"permuted": ("B", "permuted_mask")', '"permuted": ("B", "imp")',
     "permuted uses the unpermuted mask"),
    M("phases/graph.py", '"random": ("B", "random")', '"random": ("A", "random")',
     "random control trains from A's weights"),
    M("phases/sparse_step.py", "return random_masks_like(mask_a, gen)", "return mask_a",
     "random control uses M_A itself"),
    M("phases/keys.py", "epochs=cfg.total_sparse_epochs - k,", "epochs=cfg.total_sparse_epochs,",
     "sparse runs train sparse_epochs, not sparse_epochs - k"),
    M("phases/sparse_step.py", 'model = ctx.load_model(art.parents["weights"], checkpoint_name(at))',
     'model = ctx.load_model(art.parents["weights"], checkpoint_name(0))',
     "sparse runs start from epoch 0 whatever k"),
    # --- the released code's meaning of k, and the rest of issue 10's recipe
    M("utils/config.py", 'REWIND_CONVENTIONS = {"epochs": 0, "released": 1}',
     'REWIND_CONVENTIONS = {"epochs": 0, "released": 0}',
     "released rewind point k is the checkpoint after k epochs, not k + 1"),
    M("phases/sparse_step.py", 'model = ctx.load_model(art.parents["weights"], checkpoint_name(at))',
     'model = ctx.load_model(art.parents["weights"], checkpoint_name(k))',
     "sparse runs load epoch k whatever the convention"),
    M("phases/keys.py", "epochs=cfg.total_sparse_epochs - k,",
      "epochs=cfg.total_sparse_epochs - cfg.checkpoint_epoch(k),",
     "released sparse runs train sparse_epochs - k - 1"),
    M("phases/keys.py", "rewind_convention=cfg.rewind_convention,", 'rewind_convention="epochs",',
     "the rewind convention is not in the sparse key"),
    M("phases/match_step.py", "    if not augment:\n", "    if True:\n",
     "matching.augment is ignored"),
    M("training/loop.py", "return (epoch + 1) / spec.warmup_epochs", "return epoch / spec.warmup_epochs",
     "the warm-up starts at 0 and ends one epoch late"),
    M("training/loop.py", "for m in spec.milestones if m <= epoch)", "for m in spec.milestones if m < epoch)",
     "every step decay one epoch late"),
    M("data/memory.py", "flip=self.info.hflip", "flip=True", "SVHN digits are mirrored"),
    M("data/imagenet.py", "BatchSampler(self._eval_order[:count]", "BatchSampler(list(range(count))",
     "image-folder matching batches are the first class folders"),
    M("training/evaluate.py", "min(TOP_K, logits.shape[1])", "1", "top-5 is top-1"),
    M("phases/match_step.py", 'if m["method"] == "activation":', 'if m["method"] == "never":',
     "an activation config silently runs weight matching"),
    M("phases/match_step.py", "masks_perm = {k: v.bool() for k, v in permute(spec, masks, perms).items()}",
     "masks_perm = {k: v.bool() for k, v in masks.items()}",
     "the permuted mask is M_A unpermuted"),
    # --- science a mutation campaign found unpinned (tests/test_science_pins.py, tests/test_sweep_plan_edges.py)
    M("analysis/compare.py", "(std_b or 0.0) ** 2 / n_b", "(std_b or 0.0) / n_b",
     "compare: our standard error from s/n, not s^2/n", PINS, "tests/test_analysis.py"),
    M("analysis/compare.py", "(std_a or 0.0) ** 2 / n_a", "(std_a or 0.0) / n_a",
     "compare: the paper's standard error from s/n, not s^2/n", PINS, "tests/test_analysis.py"),
    M("phases/studies/early_matching.py", "return b_epoch - cfg.checkpoint_epoch(0)", "return b_epoch",
     "early matching: i is B's epochs trained, not epoch - 1 under released", PINS),
    M("phases/match_step.py", "before = interpolation_curve(model_b, sd_a, sd_b,",
     "before = interpolation_curve(model_b, sd_a_perm, sd_b,",
     "the curve before matching is pi(A)'s, not A's", PINS),
    M("phases/imp_step.py", "if rewind_state is not None:  # IMP with weight rewinding",
     "if rewind_state is not None and rnd == 1:  # IMP with weight rewinding",
     "IMP with rewind_epoch rewinds the first round only", PINS),
    M("sweep/plan.py", "    for parent in art.parents.values():\n        if parent.name in jobs:",
      "    for parent in list(art.parents.values())[:1]:\n        if parent.name in jobs:",
     "a sweep job waits for its first parent's job only (the permuted mask not for IMP)",
     "tests/test_sweep_plan_edges.py"),
]

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    status: str  # killed | survived | timeout | error
    detail: str
    seconds: float


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tests", nargs="*", default=[],
                   help="pytest selection (files or node ids) for every mutant; default: each mutant's own")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run (default %(default)s)")
    p.add_argument("--match", default="", help="only mutations whose file or description contains this text")
    p.add_argument("--list", action="store_true", help="list the selected mutations and their tests, and exit")
    p.add_argument("--all", action="store_true",
                   help="run every test for every mutant (no -x) and list all the tests that failed")
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error("--timeout must be positive")
    return args


def selection(m: Mutant, override: list[str]) -> list[str]:
    return list(override or m.tests or TESTS_FOR[m.file])


def selected_mutations(match: str) -> list[tuple[int, Mutant]]:
    text = match.lower()
    return [(i, m) for i, m in enumerate(MUTATIONS, 1) if text in m.file.lower() or text in m.what.lower()]


def copy_repo(dest: Path) -> None:
    # --others --exclude-standard: new test files that are not committed yet must be in the copy too.
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         check=True, capture_output=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    if (REPO / ".venv").exists():
        (dest / ".venv").symlink_to(REPO / ".venv")


def python_for(copy: Path) -> str:
    venv = copy / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_pytest(copy: Path, tests: list[str], timeout: float, extra: list[str]) -> tuple[int | None, str, float]:
    """pytest's exit code (None on timeout), the failing tests or its last line, and the seconds it took."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # a same-size mutation must never run from a stale .pyc
    cmd = [python_for(copy), "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", *extra, *tests]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the tests' child processes go too
        out, _ = proc.communicate()
        code = None
    return code, summary(out.decode(errors="replace")), time.monotonic() - start


def summary(output: str) -> str:
    """The failing tests (what killed the mutant), or else pytest's last line."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip() and not ln.startswith("!!!")]
    failed = [ln.split(" - ")[0].split("::", 1)[-1] for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    if failed:
        return ", ".join(failed)
    return lines[-1] if lines else ""


def verdict(code: int | None, tail: str, seconds: float) -> Outcome:
    """Killed only by a failing test (pytest's status 1 with the tests named): a run that hit the time limit
    says nothing about whether any test would have caught the mutant."""
    if code is None:
        return Outcome("timeout", "no test failed before the time limit (not a kill)", seconds)
    if code == 0:
        return Outcome("survived", tail, seconds)
    if code == 1 and tail:
        return Outcome("killed", tail, seconds)
    return Outcome("error", f"pytest exit {code}: {tail}", seconds)


def applies(copy: Path, m: Mutant) -> str | None:
    """Why ``m`` cannot be applied to the copy, or None when it can."""
    path = copy / m.file
    if not path.is_file():
        return f"{m.file} not found"
    source = path.read_text()
    count = source.count(m.old)
    if count != 1:
        return "its source text is not found" if count == 0 else f"its source text occurs {count} times"
    try:
        compile(source.replace(m.old, m.new), m.file, "exec")
    except SyntaxError as e:
        return f"the mutated source does not compile: {e}"
    return None


def apply_and_run(copy: Path, m: Mutant, tests: list[str], timeout: float, extra: list[str]) -> Outcome:
    path = copy / m.file
    source = path.read_text()
    path.write_text(source.replace(m.old, m.new))
    try:
        return verdict(*run_pytest(copy, tests, timeout, extra))
    finally:
        path.write_text(source)


def hypothesis_args(copy: Path) -> list[str]:
    ok = subprocess.run([python_for(copy), "-c", "import hypothesis"], capture_output=True).returncode == 0
    # A fixed seed: the same verdicts on every run, also for property tests that are not derandomized.
    return ["--hypothesis-seed=0"] if ok else []


def print_table(rows: list[tuple[int, Mutant, Outcome]]) -> None:
    width = max(len(m.what) for _, m, _ in rows)
    fwidth = max(len(m.file) for _, m, _ in rows)
    print(f"\n{'#':>3}  {'status':<9} {'file':<{fwidth}}  {'mutation':<{width}}  detail")
    for i, m, o in rows:
        print(f"{i:>3}  {o.status:<9} {m.file:<{fwidth}}  {m.what:<{width}}  {o.detail}")
    counts = {s: sum(o.status == s for _, _, o in rows) for s in ("killed", "survived", "timeout", "error")}
    print(f"\n{len(rows)} mutants, all applied: {counts['killed']} killed by a failing test, "
          f"{counts['survived']} survived, {counts['timeout']} timed out, {counts['error']} error")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mutations = selected_mutations(args.match)
    if not mutations:
        print(f"no mutation matches {args.match!r}", file=sys.stderr)
        return 2
    if args.list:
        for i, m in mutations:
            print(f"{i:>3}  {m.file}  {m.what}  [{' '.join(selection(m, args.tests))}]")
        return 0
    missing = sorted({t for _, m in mutations for t in selection(m, args.tests)
                      if not (REPO / t.split("::")[0]).exists()})
    if missing:
        print(f"error: no such test file: {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        copy = Path(tmp) / "repo"
        copy.mkdir()
        copy_repo(copy)
        # Every mutant must apply: one whose text moved on would otherwise count as "nothing to see" forever.
        stale = [(i, m, why) for i, m in mutations if (why := applies(copy, m)) is not None]
        for i, m, why in stale:
            print(f"error: mutant #{i} ({m.file}: {m.what}) does not apply: {why}; update it in "
                  f"scripts/mutation_check.py", file=sys.stderr)
        if stale:
            return 2
        extra = hypothesis_args(copy) + ([] if args.all else ["-x"])
        union = list(dict.fromkeys(t for _, m in mutations for t in selection(m, args.tests)))
        print(f"{len(mutations)} mutants, all apply; baseline: {' '.join(union)} (timeout {args.timeout:g} s per run)")
        code, tail, seconds = run_pytest(copy, union, args.timeout, extra)
        print(f"baseline (no mutation): {'pass' if code == 0 else 'FAIL'} in {seconds:.1f} s: {tail}", flush=True)
        if code != 0:
            print("the unmutated tests do not pass, so no mutant can be judged; fix that first", file=sys.stderr)
            return 2
        rows = []
        for i, m in mutations:
            outcome = apply_and_run(copy, m, selection(m, args.tests), args.timeout, extra)
            print(f"[{i:>2}] {outcome.status:<9} {m.what} ({outcome.seconds:.1f} s): {outcome.detail}", flush=True)
            rows.append((i, m, outcome))
    print_table(rows)
    return 0 if all(o.status == "killed" for _, _, o in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Mutation check: do the tests notice when the pruning science is broken?

Copies the repository (tracked and untracked-but-not-ignored files, as the working tree has them, plus a
symlink to .venv) into a temporary folder, applies one source mutation at a time there, runs a pytest
selection in the copy and reports whether the tests failed (killed), passed (survived) or could not run
(error). The checkout itself is never modified.

    .venv/bin/python scripts/mutation_check.py                          # default selection, 300 s per run
    .venv/bin/python scripts/mutation_check.py tests/test_pruning.py --timeout 120
    .venv/bin/python scripts/mutation_check.py --match imp.py --list    # show the matching mutations only

Exit status 0 whatever the verdicts (this is a report); 2 for bad arguments.
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

# (file, exact source substring, replacement, description). A substring must occur exactly once in its file;
# one that is missing or ambiguous (the source moved on) is reported as "not applicable", so keep these easy
# to edit rather than clever.
MUTATIONS: list[tuple[str, str, str, str]] = [
    # --- global magnitude pruning
    ("pruning/magnitude.py", "n_prune, largest=False", "n_prune, largest=True",
     "magnitude pruning removes the largest weights"),
    ("pruning/magnitude.py", "n_prune = round(amount * remaining)", "n_prune = int(amount * remaining)",
     "pruned count truncated (round -> int)"),
    ("pruning/magnitude.py", "n_prune = round(amount * remaining)", "n_prune = round(amount * remaining) + 1",
     "pruned count off by one"),
    ("pruning/magnitude.py", 'float("inf")', "0.0",
     "already-masked weights can be chosen again"),
    ("pruning/magnitude.py", ".to(masks[n].device) & masks[n]", ".to(masks[n].device)",
     "previously masked weights come back"),
    ("pruning/magnitude.py", "remaining = int(sum(int(masks[n].sum()) for n in names))",
     "remaining = int(sum(masks[n].numel() for n in names))",
     "amount taken of all weights, not of the remaining ones"),
    ("pruning/magnitude.py", "0.0 <= amount < 1.0", "0.0 <= amount <= 1.0",
     "amount 1.0 (prune everything) accepted"),
    # --- masks and sparsity
    ("pruning/masks.py", "return 1.0 - kept / total if total else 0.0", "return kept / total if total else 0.0",
     "sparsity returns density"),
    ("pruning/masks.py", "1.0 - float(m.sum()) / m.numel()", "float(m.sum()) / m.numel()",
     "layer_sparsity returns density"),
    ("pruning/masks.py", "(state[n] == 0)", "(state[n] <= 0)",
     "weight_sparsity counts negative weights as zeros"),
    ("pruning/masks.py",
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
    ("pruning/masks.py", "flat[order[:kept]] = True", "flat[order[kept:]] = True",
     "random control keeps the complement count"),
    ("pruning/masks.py", "torch.randperm(m.numel(), generator=generator)",
     "torch.randperm(m.numel(), generator=torch.Generator().manual_seed(0))",
     "random control ignores its generator"),
    # --- IMP schedule
    ("pruning/imp.py", "return min(prune_perc, (target - current) / (1.0 - current))", "return prune_perc",
     "last IMP round not capped"),
    ("pruning/imp.py", "return min(prune_perc, (target - current) / (1.0 - current))",
     "return max(prune_perc, (target - current) / (1.0 - current))",
     "IMP cap uses max instead of min"),
    ("pruning/imp.py", "return min(prune_perc, (target - current) / (1.0 - current))",
     "return min(prune_perc, target - current)",
     "IMP cap as a fraction of all weights, not of the remaining"),
    ("pruning/imp.py", "return current >= target - tolerance - slack - 1e-12", "return current >= target - tolerance",
     "reached: no half-weight slack, no float slack (tolerance 0 never stops)"),
    ("pruning/imp.py", "return current >= target - tolerance - slack", "return current >= target + tolerance - slack",
     "reached: tolerance on the wrong side"),
    ("pruning/imp.py", "s = s + (1.0 - s) * amounts[-1]", "s = s + amounts[-1]",
     "planned schedule composes amounts of the total, not of the remaining"),
    ("pruning/imp.py", "params[n].mul_(masks[n].to(params[n].dtype))", "pass",
     "IMP does not zero the pruned weights before fine-tuning"),
    ("pruning/imp.py", "masks = prune_global_magnitude({n: params[n].detach() for n in prunable}, masks, amount)",
     "masks = prune_global_magnitude({n: params[n].detach() for n in prunable}, masks, prune_perc)",
     "IMP prunes prune_perc every round, ignoring the computed amount"),
    ("pruning/imp.py",
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
    ("phases/graph.py", '"naive": ("B", "imp")', '"naive": ("A", "imp")',
     "naive trains from A's weights"),
    ("phases/graph.py", '"lth": ("A", "imp")', '"lth": ("B", "imp")',
     "lth trains from B's weights"),
    ("phases/graph.py", '"permuted": ("B", "permuted_mask")', '"permuted": ("B", "imp")',
     "permuted uses the unpermuted mask"),
    ("phases/graph.py", '"random": ("B", "random")', '"random": ("A", "random")',
     "random control trains from A's weights"),
    ("phases/sparse_step.py", "return random_masks_like(mask_a, gen)", "return mask_a",
     "random control uses M_A itself"),
    ("phases/sparse_step.py", "epochs = ctx.cfg.total_sparse_epochs - k", "epochs = ctx.cfg.total_sparse_epochs",
     "sparse runs train sparse_epochs, not sparse_epochs - k"),
    ("phases/sparse_step.py", 'model = ctx.load_model(art.parents["weights"], checkpoint_name(at))',
     'model = ctx.load_model(art.parents["weights"], checkpoint_name(0))',
     "sparse runs start from epoch 0 whatever k"),
    # --- the released code's meaning of k, and the rest of issue 10's recipe
    ("utils/config.py", 'REWIND_CONVENTIONS = {"epochs": 0, "released": 1}',
     'REWIND_CONVENTIONS = {"epochs": 0, "released": 0}',
     "released rewind point k is the checkpoint after k epochs, not k + 1"),
    ("phases/sparse_step.py", 'model = ctx.load_model(art.parents["weights"], checkpoint_name(at))',
     'model = ctx.load_model(art.parents["weights"], checkpoint_name(k))',
     "sparse runs load epoch k whatever the convention"),
    ("phases/sparse_step.py", "epochs = ctx.cfg.total_sparse_epochs - k", "epochs = ctx.cfg.total_sparse_epochs - at",
     "released sparse runs train sparse_epochs - k - 1"),
    ("phases/keys.py", "                          rewind_convention=cfg.rewind_convention)",
     '                          rewind_convention="epochs")',
     "the rewind convention is not in the sparse key"),
    ("phases/match_step.py", "    if not m.augment:\n", "    if True:\n",
     "matching.augment is ignored"),
    ("training/loop.py", "return (epoch + 1) / spec.warmup_epochs", "return epoch / spec.warmup_epochs",
     "the warm-up starts at 0 and ends one epoch late"),
    ("training/loop.py", "for m in spec.milestones if m <= epoch)", "for m in spec.milestones if m < epoch)",
     "every step decay one epoch late"),
    ("data/memory.py", "flip=self.info.hflip", "flip=True", "SVHN digits are mirrored"),
    ("data/imagenet.py", "BatchSampler(self._eval_order[:count]", "BatchSampler(list(range(count))",
     "image-folder matching batches are the first class folders"),
    ("training/evaluate.py", "min(TOP_K, logits.shape[1])", "1", "top-5 is top-1"),
    ("phases/match_step.py", 'if m.method == "activation":', 'if m.method == "never":',
     "an activation config silently runs weight matching"),
    ("phases/match_step.py", "masks_perm = {k: v.bool() for k, v in permute(spec, masks, perms).items()}",
     "masks_perm = {k: v.bool() for k, v in masks.items()}",
     "the permuted mask is M_A unpermuted"),
]

DEFAULT_SELECTION = ["tests/test_pruning.py", "tests/test_science.py", "tests/test_released_recipe.py",
                     "tests/test_data.py", "tests/test_pipeline.py"]
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    status: str  # killed | survived | error | not applicable
    detail: str
    seconds: float


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tests", nargs="*", default=DEFAULT_SELECTION,
                   help="pytest selection (files or node ids); default: %(default)s")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per pytest run (default %(default)s)")
    p.add_argument("--match", default="", help="only mutations whose file or description contains this text")
    p.add_argument("--list", action="store_true", help="list the selected mutations and exit")
    p.add_argument("--all", action="store_true",
                   help="run every test for every mutant (no -x) and list all the tests that failed")
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error("--timeout must be positive")
    return args


def selected_mutations(match: str) -> list[tuple[str, str, str, str]]:
    m = match.lower()
    return [mu for mu in MUTATIONS if m in mu[0].lower() or m in mu[3].lower()]


def existing_selection(tests: list[str]) -> list[str]:
    kept = []
    for t in tests:
        if (REPO / t.split("::")[0]).exists():
            kept.append(t)
        else:
            print(f"note: {t} does not exist, dropped from the selection")
    return kept


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
    cmd = [python_for(copy), "-m", "pytest", "-p", "no:cacheprovider", *extra, *tests]
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
    if code is None:
        return Outcome("killed", "timeout", seconds)  # a mutant that hangs the tests is caught by them
    if code == 0:
        return Outcome("survived", tail, seconds)
    if code == 1:
        return Outcome("killed", tail, seconds)
    return Outcome("error", f"pytest exit {code}: {tail}", seconds)


def apply_and_run(copy: Path, mutation: tuple[str, str, str, str], tests: list[str], timeout: float,
                  extra: list[str]) -> Outcome:
    rel, old, new, _ = mutation
    path = copy / rel
    if not path.is_file():
        return Outcome("not applicable", f"{rel} not found", 0.0)
    source = path.read_text()
    count = source.count(old)
    if count != 1:
        return Outcome("not applicable", "substring not found" if count == 0 else f"substring found {count} times",
                       0.0)
    mutated = source.replace(old, new)
    try:
        compile(mutated, rel, "exec")
    except SyntaxError as e:
        return Outcome("error", f"mutated source does not compile: {e}", 0.0)
    path.write_text(mutated)
    try:
        return verdict(*run_pytest(copy, tests, timeout, extra))
    finally:
        path.write_text(source)


def hypothesis_args(copy: Path) -> list[str]:
    ok = subprocess.run([python_for(copy), "-c", "import hypothesis"], capture_output=True).returncode == 0
    # A fixed seed: the same verdicts on every run, also for property tests that are not derandomized.
    return ["--hypothesis-seed=0"] if ok else []


def print_table(rows: list[tuple[int, tuple[str, str, str, str], Outcome]]) -> None:
    width = max(len(m[3]) for _, m, _ in rows)
    fwidth = max(len(m[0]) for _, m, _ in rows)
    print(f"\n{'#':>3}  {'status':<15} {'file':<{fwidth}}  {'mutation':<{width}}  detail")
    for i, m, o in rows:
        print(f"{i:>3}  {o.status:<15} {m[0]:<{fwidth}}  {m[3]:<{width}}  {o.detail}")
    counts = {s: sum(o.status == s for _, _, o in rows) for s in ("killed", "survived", "error", "not applicable")}
    print(f"\n{len(rows)} mutants, {counts['killed']} killed, {counts['survived']} survived"
          f" ({counts['error']} error, {counts['not applicable']} not applicable)")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mutations = selected_mutations(args.match)
    if not mutations:
        print(f"no mutation matches {args.match!r}", file=sys.stderr)
        return 2
    if args.list:
        for i, m in enumerate(MUTATIONS, 1):
            if m in mutations:
                print(f"{i:>3}  {m[0]}  {m[3]}")
        return 0
    tests = existing_selection(args.tests)
    if not tests:
        print("no test file of the selection exists", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        copy = Path(tmp) / "repo"
        copy.mkdir()
        copy_repo(copy)
        extra = hypothesis_args(copy) + ([] if args.all else ["-x"])
        print(f"selection: {' '.join(tests)}  (timeout {args.timeout:g} s per run)")
        code, tail, seconds = run_pytest(copy, tests, args.timeout, extra)
        print(f"baseline (no mutation): {'pass' if code == 0 else 'FAIL'} in {seconds:.1f} s: {tail}")
        if code != 0:
            print("the unmutated tests do not pass, so no mutant can be judged; fix that first")
            return 0
        rows = []
        for i, m in enumerate(MUTATIONS, 1):
            if m not in mutations:
                continue
            outcome = apply_and_run(copy, m, tests, args.timeout, extra)
            print(f"[{i:>2}] {outcome.status:<15} {m[3]} ({outcome.seconds:.1f} s)", flush=True)
            rows.append((i, m, outcome))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

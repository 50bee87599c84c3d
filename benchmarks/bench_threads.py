"""Thread count: 1 versus all cores, side by side, for the work this project does on CPU.

Three workloads, each timed at every thread count in interleaved rounds, on the machine as found
and with one spinning process added (as another user's job would be):
a ResNet20x1 training step (batch 128, channels_last: large convolutions), an
MLP 784-512-512-10 training step (the demo: small matmuls), and a burst of
small tensor ops of the kind the test suite is made of. On a machine whose
other cores are busy, OpenMP threads wait at every barrier for a core that
is running someone else's work, so more threads can be much slower; the load
average at the start and end says how busy the machine was.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from benchmarks.common import add_check, add_table, base_parser, emit, median, new_section, paired_ratio
from models import create
from training.device import prepare_model


def resnet_step(batch: int):
    torch.manual_seed(0)
    model = prepare_model(create("ResNet", num_classes=10, in_channels=3, width=1), torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def run() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def mlp_steps(batch: int, steps: int):
    torch.manual_seed(0)
    model = create("MLP", num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def run() -> None:
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def small_ops(reps: int):
    a, b = torch.randn(64, 256), torch.randn(256, 64)

    def run() -> None:
        for _ in range(reps):
            c = (a @ b).relu_()
            c.sum().item()
            torch.cat([c, c]).mean(0)

    return run


@contextlib.contextmanager
def busy_neighbour(active: bool) -> Iterator[None]:
    """A spinning Python process for the duration (another user's job); nothing when not ``active``."""
    if not active:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it get scheduled
        yield
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    counts = sorted({1, cores})
    rounds = 1 if args.tiny else args.rounds
    batch, steps, reps = (16, 2, 5) if args.tiny else (128, 20, 200)
    resnet = f"ResNet20x1 train step (batch {batch})"
    work = {
        resnet: resnet_step(batch),
        f"MLP train steps (batch 128, x{steps})": mlp_steps(128, steps),
        f"small ops (x{reps})": small_ops(reps),
    }
    load_before = os.getloadavg()
    old = torch.get_num_threads()
    settings = [(busy, n) for busy in (False, True) for n in counts]
    times: dict[tuple[str, bool, int], list[float]] = {(w, b, n): [] for w in work for b, n in settings}
    try:
        for r in range(rounds + 1):
            for busy in (False, True) if r % 2 else (True, False):
                with busy_neighbour(busy):
                    for n in counts if r % 2 else reversed(counts):
                        torch.set_num_threads(n)
                        for w, fn in work.items():
                            began = time.perf_counter()
                            fn()
                            if r:  # round 0 warms up
                                times[(w, busy, n)].append(time.perf_counter() - began)
    finally:
        torch.set_num_threads(old)
    load_after = os.getloadavg()
    section = new_section("threads", "Thread count (torch.set_num_threads), side by side")
    rows = []
    for w in work:
        for busy in (False, True):
            row = [w, "one busy process added" if busy else "as found"]
            row += [median(times[(w, busy, n)]) * 1000 for n in counts]
            if len(counts) > 1:
                row.append(paired_ratio(times[(w, busy, counts[-1])], times[(w, busy, 1)]))
            rows.append(row)
    columns = ["workload", "machine"] + [f"{n} thread(s), ms" for n in counts]
    if len(counts) > 1:
        columns.append(f"time {counts[-1]} threads / 1 thread")
    add_table(section, f"Median of {rounds} interleaved rounds; load average {load_before[0]:.2f} before, "
              f"{load_after[0]:.2f} after, on {cores} logical CPUs. 'one busy process added': a spinning "
              "Python process started by the benchmark for those runs, as another user's job would be", columns,
              rows)
    if len(counts) > 1:
        for busy in (False, True):
            ratio = paired_ratio(times[(resnet, busy, counts[-1])], times[(resnet, busy, 1)])
            add_check(section, f"ResNet20 step time, {counts[-1]} threads / 1 thread, "
                      f"{'one busy process added' if busy else 'machine as found'}", ratio, "", None, unit="x",
                      note=f"load average {load_before[0]:.1f} at start")
    section["notes"].append(
        "More threads pay only while every core is free: an OpenMP thread that waits for a core held by another "
        "process stalls every parallel op at its barrier. `training.device.set_cpu_threads` (config `threads: "
        "null`) uses one thread per core but one (1 on a 2-core machine): it gives up the 2-thread gain on an "
        "idle machine to avoid the much larger loss on a shared one. The tests run single-threaded "
        "(tests/conftest.py).")
    section["data"] = {"times": {f"{w}@{'busy' if b else 'found'}@{n}": t for (w, b, n), t in times.items()},
                       "load_before": load_before, "load_after": load_after}
    return emit(section, args.json)


if __name__ == "__main__":
    main()

"""What one sweep job runs, in its own process (a Slurm job or a local subprocess).

A job makes one artifact with the same step functions as ``experiment.py``,
then rebuilds the run directories of the (config, seed) pairs that use it. It
is a ``submitit`` checkpointable: on a time limit or a preemption, submitit
requeues it, and since training saves its state after every epoch, the
requeued job resumes from the last finished epoch. Nothing here imports torch
at module level, so a job can pick its GPU (``CUDA_VISIBLE_DEVICES``) first.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import submitit

import models.registry  # noqa: F401 - registers the model and dataset facts the job's config is checked with


class StepJob(submitit.helpers.Checkpointable):
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec

    def __call__(self) -> dict[str, Any]:
        gpu = self.spec.get("gpu")
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        from tracking import close_all

        try:
            return run_step(self.spec)
        finally:
            close_all()  # this job's trainings and its consumers' results, each its own run of their group

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # Training state is on disk after every epoch: requeueing the same job resumes it.
        print(f"[sweep] {self.spec['what']}: time limit or preemption, requeueing", flush=True)
        return submitit.helpers.DelayedSubmission(StepJob(self.spec))


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    from phases.context import RunContext
    from phases.results import write_run_dir
    from training.device import resolve_device, set_cpu_threads, set_precision
    from utils.config import config_from_dict

    began = time.perf_counter()
    target = spec["targets"][0]
    cfg = config_from_dict(target["config"])
    cfg.seed = target["seed"]
    ctx = RunContext(cfg=cfg, seed=target["seed"], device=resolve_device(cfg.device), label=target["label"],
                     command=spec["command"], progress=False, config_path=target["config_path"])
    set_cpu_threads(cfg.threads, ctx.device)
    set_precision(cfg.precision)
    print(f"[sweep] job {spec['name']}: {spec['what']} for {target['label']} seed {target['seed']} "
          f"on {ctx.device} (host {os.uname().nodename}, pid {os.getpid()})", flush=True)
    if spec["step"] == "study-report":  # the one job that makes no artifact
        from phases.studies import report_study

        report_study(ctx, spec["args"]["study"])
    else:
        make_artifact(ctx, spec, target)
    for consumer in spec["targets"]:
        c = config_from_dict(consumer["config"], check_data=False)
        write_run_dir(RunContext(cfg=c, seed=consumer["seed"], device=ctx.device, label=consumer["label"],
                                 command="", config_path=consumer["config_path"]))
    seconds = time.perf_counter() - began
    print(f"[sweep] job {spec['name']} done in {seconds:.0f} s", flush=True)
    return {"name": spec["name"], "seconds": seconds}


def make_artifact(ctx: Any, spec: dict[str, Any], target: dict[str, Any]) -> None:
    """Make the job's artifact, found by name in its target's graph, with the checkpoints the plan asked for."""
    from phases.stages import closure, ensure
    from sweep.plan import Target, target_artifacts

    t = Target(label=target["label"], config_path=target["config_path"], raw=target["config"], seed=target["seed"],
               rewinds=list(target["rewinds"]), studies=list(target.get("studies", [])))
    found = closure(target_artifacts(t)).get(spec["name"])
    if found is None:
        raise RuntimeError(f"sweep job {spec['name']}: no such artifact in the graph of {target['label']} seed "
                           f"{target['seed']} (was the plan made by another version of the code?)")
    ensure(ctx, [found], checkpoints={found.name: spec["args"].get("checkpoints", [])})


def main(argv: list[str] | None = None) -> int:
    """``python -m sweep.job SPEC.json``: run one job by hand (what the executors do for you)."""
    import json

    from utils.errors import UserError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sweep.job SPEC.json", file=sys.stderr)
        return 2
    try:
        run_step(json.loads(open(args[0]).read()))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

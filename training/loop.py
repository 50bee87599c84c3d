"""The training loop: SGD + cosine schedule, optional masks, resumable.

One function serves dense training, IMP fine-tuning and sparse training; they
differ only in their :class:`TrainSpec` and masks.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.device import autocast
from training.evaluate import EvalResult, evaluate
from training.masks import MaskEnforcer
from training.metrics import MetricsLog
from utils import distributed
from utils.checkpoint import join_state, load_tensors, save_tensors, split_state
from utils.errors import UserError


class TrainData(Protocol):
    """What the loop needs from a dataset (``data.DataBundle`` provides it)."""

    batches_per_epoch: int

    batch_size: int

    def train_batches(self, epoch: int, seed: int, augment: bool = True): ...

    def test_batches(self): ...


@dataclass
class TrainSpec:
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    seed: int = 0  # data order and augmentation of every epoch derive from (seed, epoch)
    eval_every: int = 1  # test evaluation every N epochs, and always after the last
    save_epochs: tuple[int, ...] = field(default_factory=tuple)  # on_checkpoint after k epochs (0 = init)
    tag: str = ""  # names the run, so a stale state file of another run is never resumed
    schedule: str = "cosine"  # cosine | step | constant (see lr_factor)
    warmup_epochs: int = 0  # step: linear warm-up over the first epochs
    # step: epochs after which the lr is multiplied by gamma. A list, not a tuple: the spec is stored as JSON
    # with the training state and compared on resume, and a tuple would come back as a list.
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class TrainOutcome:
    final: EvalResult  # test metrics after the last epoch trained
    epochs_run: int  # epochs actually trained in this call (0 when already complete)


class TrainingDiverged(UserError):
    """A non-finite loss: continuing would only write NaN weights and NaN results."""


def make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay, nesterov=spec.nesterov and spec.momentum > 0)


def lr_factor(spec: TrainSpec, epoch: int) -> float:
    """The fraction of ``spec.lr`` that epoch ``epoch`` (0-based) of a ``step`` or ``constant`` schedule trains at.

    ``step`` is the released ResNet50 recipe (docs/paper.md): a linear warm-up, epoch e < warmup_epochs at
    (e + 1) / warmup_epochs of the peak, then gamma to the power of the milestones passed (m <= e). The
    released code sets lr = set_lr(e + 1) / 10 with set_lr(ep) = (0.4 - 0.01) / 5 * ep for ep <= 5, else
    0.4 * 0.1^(ep // 31): peak 0.04 = our lr, decays after 30 and 61 epochs = milestones [30, 61]. Its ramp
    tops out at 0.039, 2.5 % under the peak; ours reaches the peak in the last warm-up epoch.
    """
    if spec.schedule == "constant":
        return 1.0
    if epoch < spec.warmup_epochs:
        return (epoch + 1) / spec.warmup_epochs
    return spec.gamma ** sum(1 for m in spec.milestones if m <= epoch)


def make_schedule(optimizer: torch.optim.Optimizer, spec: TrainSpec) -> torch.optim.lr_scheduler.LRScheduler:
    """The spec's schedule, stepped once per epoch (as the paper's code) and resumable with its state."""
    if spec.schedule == "cosine":  # to zero at the end of the run, as in the paper's CIFAR code
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs, eta_min=0.0)
    if spec.schedule in ("step", "constant"):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(spec, epoch))
    raise ValueError(f"unknown schedule {spec.schedule!r}")


def _save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LRScheduler, epoch: int, spec: TrainSpec) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {
        "epoch": epoch,
        "spec": asdict(spec),
        "optimizer": split_state(opt.state_dict(), "optimizer", tensors),
        "scheduler": split_state(sched.state_dict(), "scheduler", tensors),
        "rng": split_state(torch.get_rng_state(), "rng.cpu", tensors),
    }
    save_tensors(path, tensors, meta)


def _load_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LRScheduler, spec: TrainSpec, device: torch.device) -> int:
    tensors, meta = load_tensors(path)
    saved = dict(meta["spec"], save_epochs=tuple(meta["spec"]["save_epochs"]))
    if saved != asdict(spec):
        raise UserError(f"{path} was saved by a different training setup; delete it to start over")
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    opt.load_state_dict(join_state(meta["optimizer"], tensors))
    for state in opt.state.values():  # optimizer state follows its parameters' device
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)
    sched.load_state_dict(join_state(meta["scheduler"], tensors))
    torch.set_rng_state(join_state(meta["rng"], tensors))
    return int(meta["epoch"])


def train(
    model: nn.Module,
    data: TrainData,
    spec: TrainSpec,
    *,
    name: str,
    device: torch.device,
    masks: dict[str, torch.Tensor] | None = None,
    state_path: str | os.PathLike | None = None,
    metrics: MetricsLog | None = None,
    on_checkpoint: Callable[[int, nn.Module], None] | None = None,
    step_fn: Callable | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> TrainOutcome:
    """Train ``model`` in place for ``spec.epochs`` epochs.

    With ``state_path`` the full training state (model, optimizer, schedule,
    RNG, epoch) is written atomically after every epoch, and a call that finds
    it resumes from there; since the data order of epoch e depends only on
    (seed, e), the resumed run ends with exactly the weights of an
    uninterrupted one. ``on_checkpoint(k, model)`` is called after k epochs
    for every k in ``spec.save_epochs`` (k = 0 before any training).
    ``progress=None`` shows tqdm bars only on a terminal; without bars, one
    plain line per epoch goes to stdout instead (see ``show_bars``). ``stop_after=e``
    ends after epoch e of the same schedule (to re-derive early checkpoints).

    A non-finite training or test loss raises :class:`TrainingDiverged`
    before that epoch's state is saved, so the last good state is kept.
    """
    run = _Run.start(model, data, spec, name, device, masks, state_path, step_fn, show_bars(progress))
    start = _begin(model, run.optimizer, run.schedule, spec, device, name, run.state_path, metrics, on_checkpoint,
                   run.bars)
    final: EvalResult | None = None
    end = spec.epochs if stop_after is None else min(stop_after, spec.epochs)
    bar = tqdm(range(start, end), desc=name, unit="ep", disable=not run.bars, initial=start,
               total=spec.epochs, dynamic_ncols=True)
    loop_began = time.perf_counter()
    for epoch in bar:
        began = time.perf_counter()
        record = run.train_epoch(epoch)
        done = epoch + 1
        if done % spec.eval_every == 0 or done == end:
            result = run.evaluate(record, done)
            final = result if done == end else None
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{result.accuracy:.2f}")
        run.close_epoch(record, done, began, metrics, on_checkpoint)
        if not run.bars:
            # Timed after the state is saved: saving is part of what each remaining epoch costs.
            per_epoch = (time.perf_counter() - loop_began) / (done - start)
            print(epoch_line(name, done, spec.epochs, record["lr"], record["train_loss"],
                             record.get("test_accuracy"), per_epoch, end - done), flush=True)
    bar.close()
    if final is None:
        final = evaluate(model, data.test_batches())
    return TrainOutcome(final=final, epochs_run=max(end - start, 0))


@dataclass
class _Run:
    """What every epoch of one :func:`train` call works with."""

    model: nn.Module
    data: TrainData
    spec: TrainSpec
    name: str
    device: torch.device
    forward: Callable  # the model, its compiled step, or its DistributedDataParallel wrapper
    shard: tuple[int, int] | None  # (rank, world) under torchrun
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    enforcer: MaskEnforcer | None
    state_path: Path | None
    bars: bool

    @classmethod
    def start(cls, model: nn.Module, data: TrainData, spec: TrainSpec, name: str, device: torch.device,
              masks: dict[str, torch.Tensor] | None, state_path: str | os.PathLike | None,
              step_fn: Callable | None, bars: bool) -> _Run:
        """The forward, a fresh optimizer and schedule, and the masks applied to the weights."""
        forward, shard = data_parallel(model, data, device, step_fn)
        optimizer = make_optimizer(model, spec)
        schedule = make_schedule(optimizer, spec)
        enforcer = MaskEnforcer(model, masks) if masks else None
        if enforcer:
            enforcer.apply_to_weights()
        return cls(model, data, spec, name, device, forward, shard, optimizer, schedule, enforcer,
                   Path(state_path) if state_path is not None else None, bars)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Epoch ``epoch``'s steps and the schedule's step; its record (lr, mean training loss), checked finite."""
        self.model.train()
        seed = self.spec.seed
        epoch_batches = (self.data.train_batches(epoch, seed, shard=self.shard) if self.shard
                         else self.data.train_batches(epoch, seed))
        batches = tqdm(epoch_batches, total=self.data.batches_per_epoch, leave=False,
                       desc=f"{self.name} epoch {epoch + 1}", unit="batch", disable=not self.bars,
                       dynamic_ncols=True)
        loss_sum, seen = _epoch_steps(self.forward, batches, self.optimizer, self.enforcer, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        self.schedule.step()
        if self.shard:  # every rank saw a slice of each batch: the epoch's loss is over all of them
            loss_sum = distributed.all_reduce_sum(loss_sum)
            seen *= self.shard[1]
        record = {"run": self.name, "epoch": epoch + 1, "lr": lr, "train_loss": float(loss_sum) / max(seen, 1)}
        check_finite(record["train_loss"], "training", self.name, epoch + 1, lr, self.state_path)
        return record

    def evaluate(self, record: dict[str, Any], done: int) -> EvalResult:
        """The test metrics after ``done`` epochs, checked finite and added to the epoch's record."""
        result = evaluate(self.model, self.data.test_batches())
        check_finite(result.loss, "test", self.name, done, record["lr"], self.state_path)
        record.update(test_accuracy=result.accuracy, test_loss=result.loss, test_top5=result.top5)
        return result

    def close_epoch(self, record: dict[str, Any], done: int, began: float, metrics: MetricsLog | None,
                    on_checkpoint: Callable[[int, nn.Module], None] | None) -> None:
        """The epoch's checkpoint when asked for, its record (timed) logged, then the training state saved."""
        if on_checkpoint and done in self.spec.save_epochs:
            on_checkpoint(done, self.model)
        record["seconds"] = round(time.perf_counter() - began, 3)
        if metrics:
            metrics.log(record)
        if self.state_path is not None:
            _save_state(self.state_path, self.model, self.optimizer, self.schedule, done, self.spec)


def _begin(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, spec: TrainSpec,
           device: torch.device, name: str, state_path: Path | None, metrics: MetricsLog | None,
           on_checkpoint: Callable[[int, nn.Module], None] | None, bars: bool) -> int:
    """The epoch training starts from: the saved state's, or 0 (after the epoch-0 checkpoint when asked for)."""
    start = 0
    if state_path is not None and state_path.exists():
        start = _load_state(state_path, model, optimizer, schedule, spec, device)
        if not bars:
            print(f"[{name}] resuming from epoch {start}/{spec.epochs} ({state_path})", flush=True)
        if metrics:
            metrics.truncate_run(name, start)
    elif on_checkpoint and 0 in spec.save_epochs:
        on_checkpoint(0, model)
    if metrics and start == 0:  # a first epoch logged but killed before its state was saved is redone: drop it
        metrics.truncate_run(name, 0)
    return start


def _epoch_steps(forward: Callable, batches: Iterable, optimizer: torch.optim.Optimizer,
                 enforcer: MaskEnforcer | None, device: torch.device) -> tuple[torch.Tensor, int]:
    """One optimizer step per batch (masked weights kept at zero); the summed loss (on the device), examples."""
    loss_sum = torch.zeros((), device=device)
    seen = 0
    for x, y in batches:
        with autocast(device):  # bf16 only when the config's precision asks for it
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if enforcer:
            enforcer.apply_to_grads()
        optimizer.step()
        if enforcer:
            enforcer.apply_to_weights()
        # Accumulate on the device: reading the loss every step would sync with the GPU.
        loss_sum += loss.detach().float() * y.shape[0]
        seen += y.shape[0]
    return loss_sum, seen


def data_parallel(model: nn.Module, data: TrainData, device: torch.device,
                  step_fn: Callable | None) -> tuple[Callable, tuple[int, int] | None]:
    """The forward to train with, and this rank's shard of every batch (None outside torchrun).

    Under torchrun the model is wrapped in DistributedDataParallel and each rank
    takes an equal slice of every global batch: gradients averaged over ranks
    are then the gradient of the whole batch's mean loss, the step one process
    would take. BatchNorm becomes SyncBatchNorm on CUDA, so its batch
    statistics are those of the whole batch too (it has no CPU kernel: CPU
    data-parallel runs are for models without BatchNorm).
    """
    if not distributed.active():
        return (step_fn if step_fn is not None else model), None  # a compiled module has no truth value
    world = distributed.world_size()
    if data.batch_size % world:
        raise UserError(f"batch_size {data.batch_size} does not split evenly over {world} processes; "
                        f"choose a batch size divisible by {world}")
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BatchNorms inside ``model`` in place
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return ddp, (distributed.rank(), world)


def show_bars(progress: bool | None) -> bool:
    """Whether to draw tqdm bars: as asked, else only when both stdout and stderr are terminals.

    tqdm draws on stderr with carriage returns and escape codes; those must never
    reach a file (a Slurm log, ``2> err.log``), and a redirected stdout (``| tee``)
    wants the plain per-epoch lines instead, so either stream not being a
    terminal turns the bars off and the lines on.
    """
    if progress is not None:
        return progress
    return _is_terminal(sys.stdout) and _is_terminal(sys.stderr)


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def epoch_line(name: str, epoch: int, epochs: int, lr: float, loss: float, accuracy: float | None,
               seconds_per_epoch: float, epochs_left: int) -> str:
    """``[dense_A] epoch 37/200 lr 0.0712 loss 0.4213 acc 88.12% 12.3 s/epoch, ETA 33m`` (acc when evaluated)."""
    acc = "" if accuracy is None else f" acc {accuracy:.2f}%"
    pace = f"{seconds_per_epoch:.1f}" if seconds_per_epoch >= 1 else f"{seconds_per_epoch:.2f}"
    return (f"[{name}] epoch {epoch}/{epochs} lr {lr:.4g} loss {loss:.4f}{acc} {pace} s/epoch, "
            f"ETA {format_duration(seconds_per_epoch * epochs_left)}")


def format_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``: as precise as an estimate deserves."""
    secs = round(seconds)
    if secs < 60:
        return f"{secs}s"
    minutes = round(secs / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def check_finite(loss: float, which: str, name: str, epoch: int, lr: float, state_path: Path | None) -> None:
    if math.isfinite(loss):
        return
    kept = f"; the state after epoch {epoch - 1} is kept in {state_path}" if state_path and epoch > 1 else ""
    raise TrainingDiverged(f"[{name}] epoch {epoch}: the {which} loss is {loss} at lr {lr:g}: training diverged"
                           f"{kept}; lower the learning rate")

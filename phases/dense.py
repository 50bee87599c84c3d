"""Phase-1 step: train a dense model (A or B), saving the checkpoints later steps need.

Saved epochs are not part of the dense key: they are what the artifact holds,
listed in its manifest (``checkpoints``). When a new rewind point needs an
epoch the artifact lacks, the model is re-trained from its initialisation up
to that epoch only, with the same seed, schedule and data order, and the
checkpoint is added to the same artifact; its final model, and everything
made from it, stay as they are. On CPU the re-derived checkpoint is
bit-identical to the one an uninterrupted training would have saved (tested).
"""

from __future__ import annotations

import warnings

import torch

from phases.context import RunContext
from training.evaluate import accuracy_text
from training.loop import TrainSpec, train
from utils import distributed
from utils.artifacts import Artifact
from utils.checkpoint import save_tensors
from utils.seeding import derive_seed


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.safetensors"


def saved_epochs(art: Artifact) -> list[int]:
    return list((art.manifest() or {}).get("checkpoints", []))


def dense_spec(art: Artifact, eval_every: int, save_epochs: tuple[int, ...]) -> TrainSpec:
    """The training the key of dense ``art`` names: its optimizer, schedule, epochs and data order."""
    s = art.settings
    o = dict(s["optimizer"])
    for unused in ("type",):  # SGD, the one optimizer (utils/config.py checks it)
        o.pop(unused, None)
    lr, momentum, weight_decay, nesterov = o.pop("lr"), o.pop("momentum"), o.pop("weight_decay"), o.pop("nesterov")
    return TrainSpec(epochs=s["epochs"], lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                     seed=derive_seed(s["seed"], "data", s["role"]), eval_every=eval_every, save_epochs=save_epochs,
                     **o)


def make_dense(ctx: RunContext, a: Artifact, checkpoints: tuple[int, ...] = ()) -> None:
    """Train dense A or B from its initialisation, saving ``checkpoints`` (epochs) on the way (resumable)."""
    role, epochs = a.settings["role"], a.settings["epochs"]
    model = ctx.new_model(derive_seed(a.settings["seed"], "init", role))
    spec = dense_spec(a, ctx.cfg.eval_every, checkpoints)

    def save_checkpoint(k: int, m) -> None:
        ctx.save_model(a.path(checkpoint_name(k)), m, {"epoch": k, "role": role})

    outcome = train(model, ctx.data, spec, name=f"dense_{role}", device=ctx.device,
                    state_path=a.path("train_state.safetensors"), metrics=ctx.metrics_for(a.dir),
                    on_checkpoint=save_checkpoint, step_fn=ctx.step_fn(model), progress=ctx.progress)
    ctx.save_model(a.path("final.safetensors"), model, {"epoch": epochs, "role": role})
    final = outcome.final
    a.finish({"accuracy": final.accuracy, "loss": final.loss, "top5": final.top5, "epochs": epochs},
             checkpoints=list(checkpoints))
    print(f"[dense {role}] {accuracy_text(final, ctx.data.num_classes)}  loss {final.loss:.4f}")


def add_checkpoints(ctx: RunContext, art: Artifact, needed: tuple[int, ...]) -> None:
    """Give a complete dense artifact the checkpoints it lacks, by re-training up to the latest of them."""
    if not distributed.broadcast(bool(set(needed) - set(saved_epochs(art)))):
        return
    with art.lock():
        have = distributed.broadcast(saved_epochs(art))
        missing = sorted(set(needed) - set(have))
        if not missing:  # another process added them while we waited
            return
        role, epochs = art.settings["role"], art.settings["epochs"]
        # An epoch already saved on the way is re-derived too, to check the re-training reproduces it.
        witness = max((e for e in have if e <= missing[-1]), default=None)
        wanted = tuple(sorted({*missing, *([witness] if witness is not None else [])}))
        print(f"[dense {role}] adding checkpoint(s) at epoch(s) {missing} to {art.dir}: re-training "
              f"{missing[-1]} of {epochs} epochs with the same seed and data order", flush=True)
        made: dict[int, dict[str, torch.Tensor]] = {}

        def keep(k: int, m) -> None:
            made[k] = {n: t.detach().cpu().clone() for n, t in m.state_dict().items()}

        model = ctx.new_model(derive_seed(art.settings["seed"], "init", role))
        train(model, ctx.data, dense_spec(art, ctx.cfg.eval_every, wanted), name=f"dense_{role}_rederive",
              device=ctx.device, on_checkpoint=keep, progress=ctx.progress, stop_after=missing[-1])
        if witness is not None:
            stored, _ = art.tensors(checkpoint_name(witness))
            if not all(torch.equal(stored[n], made[witness][n].to(stored[n].dtype)) for n in stored):
                warnings.warn(f"[dense {role}] re-training did not reproduce the stored epoch-{witness} checkpoint "
                              "bit for bit (non-deterministic kernels, or another device); the added checkpoints "
                              "are from the same schedule but not the identical trajectory", stacklevel=1)
        for k in missing:
            save_tensors(art.path(checkpoint_name(k)), made[k], {"epoch": k, "role": role, "rederived": True})
        art.add_files([checkpoint_name(k) for k in missing], checkpoints=sorted({*have, *missing}))

"""Phase-1 step: train a dense model (A or B), saving every rewind checkpoint."""

from __future__ import annotations

from phases.context import RunContext
from phases.keys import dense_key
from training.loop import train
from utils.artifacts import Artifact
from utils.errors import UserError
from utils.seeding import derive_seed


def dense_artifact(ctx: RunContext, role: str) -> Artifact:
    return Artifact(ctx.save_path, "dense", dense_key(ctx.cfg, ctx.seed, role))


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.safetensors"


def needed_epochs(ctx: RunContext, role: str) -> tuple[int, ...]:
    points = set(ctx.cfg.rewind_points)
    if role == "A" and ctx.cfg.pruning.rewind_epoch is not None:
        points.add(ctx.cfg.pruning.rewind_epoch)
    return tuple(sorted(points))


def ensure_dense(ctx: RunContext, role: str) -> Artifact:
    """Train dense ``role`` unless its artifact is complete; resumes an interrupted training."""
    art = dense_artifact(ctx, role)
    epochs = ctx.cfg.epochs if role == "A" else ctx.cfg.b_epochs
    save_epochs = needed_epochs(ctx, role)
    if art.complete:
        check_checkpoints(art, save_epochs)
        print(f"[dense {role}] reusing {art.dir}")
        return art
    art.begin()
    model = ctx.new_model(derive_seed(ctx.seed, "init", role))
    spec = ctx.dense_spec(epochs, derive_seed(ctx.seed, "data", role), save_epochs)

    def save_checkpoint(k: int, m) -> None:
        ctx.save_model(art.path(checkpoint_name(k)), m, {"epoch": k, "role": role})

    outcome = train(model, ctx.data, spec, name=f"dense_{role}", device=ctx.device,
                    state_path=art.path("train_state.safetensors"), metrics=ctx.metrics_for(art.dir),
                    on_checkpoint=save_checkpoint, step_fn=ctx.step_fn(model), progress=ctx.progress)
    ctx.save_model(art.path("final.safetensors"), model, {"epoch": epochs, "role": role})
    final = outcome.final
    art.finish({"accuracy": final.accuracy, "loss": final.loss, "epochs": epochs,
                "checkpoints": list(save_epochs)})
    art.remove_file("train_state.safetensors")
    print(f"[dense {role}] test accuracy {final.accuracy:.2f}%  loss {final.loss:.4f}")
    return art


def check_checkpoints(art: Artifact, epochs: tuple[int, ...]) -> None:
    missing = [k for k in epochs if not art.path(checkpoint_name(k)).exists()]
    if missing:
        raise UserError(
            f"dense model {art.dir} has no checkpoint at epoch(s) {missing}: it was trained for a config "
            f"with other rewind_points (saved: {art.result().get('checkpoints')}); delete that folder to "
            "retrain it with this config's rewind points")

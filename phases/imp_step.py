"""Phase-1 step: iterative magnitude pruning of the trained dense A.

Every finished round is stored in a *round chain* keyed by everything IMP
depends on except the target (its parent is dense A), under the amounts of
all rounds so far. A rerun resumes from it after a kill, and IMP targets that
share the chain reuse the rounds they have in common: 95 % is the first 13
rounds of 97 %, 90 % and 80 % share the first 10 and 7. One width's four
sparsities then fine-tune 16 + 1 + 1 rounds instead of 8 + 11 + 13 + 16.
The chain is written only while its lock is held, so two targets pruned at
once never train the same round twice.
"""

from __future__ import annotations

from torch import nn

from phases.context import RunContext
from phases.dense import checkpoint_name
from pruning.imp import (
    ImpRound,
    PruningStalled,
    iterative_magnitude_pruning,
    planned_counts,
    planned_schedule,
    reached,
)
from pruning.masks import Masks, sparsity, weight_sparsity
from training.evaluate import accuracy_text, evaluate
from training.loop import TrainSpec, train
from training.metrics import read_metrics
from utils import distributed
from utils.artifacts import Artifact
from utils.checkpoint import save_tensors
from utils.errors import UserError
from utils.hashing import stable_hash
from utils.seeding import derive_seed

MASK_PREFIX = "mask."


def load_masks(art: Artifact, filename: str = "mask.safetensors", device="cpu") -> Masks:
    tensors, _ = art.tensors(filename, device=device)
    return {k: v.bool() for k, v in tensors.items()}


def round_file(rnd: int, amounts: list[float]) -> str:
    return f"round_{rnd}-{stable_hash(amounts, 10)}.safetensors"


def count_prunable(cfg, cache: dict[str, int]) -> int:
    """Prunable weights of ``cfg``'s model, built once per architecture (the slow part of planning)."""
    from models import build_model, model_settings

    key = repr((model_settings(cfg), cfg.dataset, cfg.prune_exclude))
    if key not in cache:
        model = build_model(cfg)
        cache[key] = sum(model.get_parameter(n).numel() for n in model.prunable_parameters())
    return cache[key]


def imp_schedule(art: Artifact, cache: dict[str, int]) -> list[float]:
    """The amounts of every round of IMP target ``art``, exactly as IMP will compute them (from its settings)."""
    t, c = art.settings, art.parents["chain"].settings
    try:
        return [a for a, _ in planned_schedule(count_prunable(art.origin[0], cache), t["sparsity"], c["prune_perc"],
                                               t["tolerance"], t["max_rounds"])]
    except PruningStalled:
        return []  # the IMP job itself will stop with the error that explains it


def imp_epochs_to_train(art: Artifact, missing: list[int], memo: dict) -> int:
    """Fine-tuning epochs of IMP target ``art`` that no earlier-planned target of its round chain trains
    (``memo`` is shared by one plan: the chain's rounds planned so far, the model sizes)."""
    amounts = imp_schedule(art, memo.setdefault("prunable", {}))
    chain = art.parents["chain"]
    todo = memo.setdefault("rounds", {}).setdefault(chain.name, set())
    new = 0
    for r in range(1, len(amounts) + 1):
        prefix = tuple(amounts[:r])
        if prefix not in todo and not chain.path(round_file(r, list(prefix))).exists():
            todo.add(prefix)
            new += 1
    return new * chain.settings["train_epochs_per_prune"]


def check_schedule(art: Artifact, total: int, tolerance_key: str = "tolerance") -> None:
    """Stop before any fine-tuning when IMP cannot reach its target: a stalled round, or too few rounds."""
    t, c = art.settings, art.parents["chain"].settings
    sparsity_target, tolerance, rounds = t["sparsity"], t["tolerance"], t["max_rounds"]
    try:
        counts = planned_counts(total, sparsity_target, c["prune_perc"], tolerance, rounds)
    except PruningStalled as err:
        if err.round == 1 or (sparsity_target - err.current) * total > 2:
            advice = f"raise pruning.prune_perc (now {c['prune_perc']:g}): it removes no whole weight"
        else:
            advice = (f"raise pruning.{tolerance_key} (now {tolerance:g}) to at least "
                      f"{2.0 / total:.2g}: the target cannot be met more closely in whole weights")
        raise UserError(f"{err} of {total} prunable weights, towards pruning.sparsity={sparsity_target}; {advice}") \
            from None
    got = 1.0 - (total - sum(counts)) / total
    if len(counts) == rounds and not reached(got, sparsity_target, tolerance, total):
        raise UserError(f"IMP would stop at sparsity {100 * got:.2f}% after pruning.prune_epochs={rounds} "
                        f"rounds, short of pruning.sparsity={sparsity_target}; raise prune_epochs or prune_perc")


def make_imp(ctx: RunContext, art: Artifact) -> None:
    """IMP of dense A to the target sparsity, each finished round kept in the round chain (resumable, shared)."""
    chain = art.parents["chain"]
    target = art.settings  # the target and when to stop
    with chain.lock():
        chain.begin()
        model = ctx.load_model(chain.parents["dense_a"], "final.safetensors")
        prunable = model.prunable_parameters()
        check_schedule(art, sum(model.get_parameter(n).numel() for n in prunable),
                       ctx.cfg.pruning.tolerance_key(ctx.cfg.model_type))
        rounds = _RoundChain(ctx, art, model)
        masks = iterative_magnitude_pruning(
            model, prunable, target=target["sparsity"], prune_perc=rounds.recipe["prune_perc"],
            tolerance=target["tolerance"], max_rounds=target["max_rounds"], finetune=rounds.finetune,
            on_round=rounds.on_round, restore=rounds.restore)
    _finish_imp(ctx, art, model, prunable, masks, rounds.history)


class _RoundChain:
    """IMP's three callbacks for one target over its round chain: a stored round restored, a round fine-tuned,
    a finished round stored; the amounts and records of the rounds so far, in order."""

    def __init__(self, ctx: RunContext, art: Artifact, model: nn.Module) -> None:
        self.ctx, self.art, self.model = ctx, art, model
        self.chain = art.parents["chain"]
        self.recipe = self.chain.settings  # how every round prunes and fine-tunes
        self.dense_a = self.chain.parents["dense_a"]
        self.metrics = ctx.metrics_for(art.dir)
        self.amounts: list[float] = []  # of the rounds done so far: what identifies the next round in the chain
        self.history: list[dict] = []
        self.rewind_state = None
        if self.recipe.get("rewind_epoch") is not None:
            self.rewind_state, _ = self.dense_a.tensors(checkpoint_name(self.recipe["rewind_epoch"]),
                                                        device=ctx.device)

    def restore(self, rnd: int, amount: float) -> tuple[Masks, dict[str, float]] | None:
        """Round ``rnd`` from the chain when a target sharing these rounds stored it: its masks and test metrics."""
        chain, metrics = self.chain, self.metrics
        name = round_file(rnd, [*self.amounts, amount])
        if not chain.path(name).exists():
            return None
        tensors, meta = chain.tensors(name, device=self.ctx.device)
        self.model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)})
        masks = {k[len(MASK_PREFIX):]: v.bool() for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
        metrics.truncate_run(f"imp_round_{rnd}", 0)  # the stored epochs replace any partial ones
        for record in meta["epochs"]:
            metrics.log(record)
        print(f"[imp] round {rnd}: reusing {chain.path(name)}", flush=True)
        return masks, meta["metrics"]

    def finetune(self, rnd: int, round_masks: Masks) -> dict[str, float]:
        """Round ``rnd``'s fine-tuning under its masks (resumable within the round): its test metrics."""
        ctx, model, p, rewind_state = self.ctx, self.model, self.recipe, self.rewind_state
        if rewind_state is not None:  # IMP with weight rewinding: restart from A at the rewind epoch
            model.load_state_dict(rewind_state)
        # A fresh schedule every round: cosine to 0 as the CIFAR code, or constant as the released ResNet50 IMP.
        spec = TrainSpec(epochs=p["train_epochs_per_prune"], lr=p["prune_lr"], momentum=p["momentum"],
                         weight_decay=p["weight_decay"], seed=derive_seed(self.dense_a.settings["seed"], "imp", rnd),
                         eval_every=ctx.cfg.eval_every, tag=f"imp-round-{rnd}-{stable_hash(self.amounts, 10)}",
                         schedule=p["schedule"])
        out = train(model, ctx.data, spec, name=f"imp_round_{rnd}", device=ctx.device, masks=round_masks,
                    state_path=self.art.path("round_state.safetensors"), metrics=self.metrics,
                    step_fn=ctx.step_fn(model), progress=ctx.progress)
        return {"accuracy": out.final.accuracy, "loss": out.final.loss}

    def on_round(self, record: ImpRound, round_masks: Masks) -> None:
        """A finished round: stored in the chain unless a target sharing it did so already, and reported."""
        self.amounts.append(record.amount)
        self.history.append(record.as_dict())
        path = self.chain.path(round_file(record.round, self.amounts))
        if not path.exists():
            if distributed.is_main():  # under torchrun rank 0 alone keeps the metrics and the chain
                tensors = dict(self.model.state_dict())
                tensors.update({MASK_PREFIX + k: v for k, v in round_masks.items()})
                epochs = [r for r in read_metrics(self.metrics.path) if r.get("run") == f"imp_round_{record.round}"]
                save_tensors(path, tensors, {"amounts": self.amounts, "metrics": {"accuracy": record.accuracy,
                                                                                  "loss": record.loss},
                                             "epochs": epochs, "record": record.as_dict()})
            print(f"[imp] round {record.round}: removed {100 * record.amount:.1f}% of the rest -> sparsity "
                  f"{100 * record.sparsity:.2f}%, test accuracy {record.accuracy:.2f}%", flush=True)
            if self.ctx.verbose:
                for name, s in record.layer_sparsity.items():
                    print(f"        {name:<40s} {100 * s:6.2f}%")
        self.art.remove_file("round_state.safetensors")


def _finish_imp(ctx: RunContext, art: Artifact, model: nn.Module, prunable: list[str], masks: Masks,
                history: list[dict]) -> None:
    """The target's mask and pruned model stored, with its summary (sparsity, test metrics, the rounds)."""
    got = sparsity(masks)
    final = evaluate(model, ctx.data.test_batches())
    save_tensors(art.path("mask.safetensors"), masks)
    ctx.save_model(art.path("model.safetensors"), model)
    art.finish({"sparsity": got, "weight_sparsity": weight_sparsity(model.state_dict(), prunable),
                "accuracy": final.accuracy, "loss": final.loss, "top5": final.top5, "rounds": len(history),
                "history": history, "chain": str(art.parents["chain"].dir)})
    print(f"[imp] done: sparsity {100 * got:.2f}% after {len(history)} rounds, "
          f"{accuracy_text(final, ctx.data.num_classes)}")

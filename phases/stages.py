"""The stage table: one entry per artifact kind, and the one walk that makes any part of the graph.

An entry says how a kind's artifacts are made (``make``: from the artifact's
own settings and its parents' files), which of them a (config, seed) asks for
in the main experiment (``targets``, in phase 1 or phase 2), and what its
edges require of its parents (``checkpoints``: the dense epochs it reads).
The nodes themselves, their typed settings and named parents, are built by
``phases/graph.py`` from ``phases/keys.py``; ``Artifact.parents`` is the only
list of edges. ``experiment.py`` (``ensure``), ``python -m sweep``
(``sweep/plan.py``: one job per artifact, its dependencies the parents' jobs),
a sweep job (``ensure`` of one artifact) and the studies (more targets, and
their own kinds registered with ``register_stage``) all walk it.

Adding a stage kind is one entry (docs/development.md, Adding a stage)::

    register_stage(Stage("probe", make=make_probe, targets=lambda cfg, seed, rewinds: [probe(cfg, seed)]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from phases import graph
from phases.context import RunContext
from phases.dense import add_checkpoints, make_dense
from phases.imp_step import imp_epochs_to_train, make_imp
from phases.match_step import make_interpolation, make_permutation, make_permuted_mask
from phases.sparse_step import checkpoint_epoch, make_sparse
from utils.artifacts import Artifact
from utils.config import Config

Maker = Callable[..., None]  # (ctx, artifact) -> None; writes the artifact's files and finishes it
Targets = Callable[[Config, int, list[int]], list[Artifact]]  # (config, run seed, rewind points) -> nodes


def _no_targets(cfg: Config, seed: int, rewinds: list[int]) -> list[Artifact]:
    return []


def _no_checkpoints(art: Artifact) -> dict[str, tuple[int, ...]]:
    return {}


def _label(art: Artifact) -> str:
    return f"[{art.kind}]"


@dataclass(frozen=True)
class Stage:
    """How one kind of artifact is made, and where it enters the main experiment."""

    kind: str
    make: Maker  # make(ctx, art): ctx is the context of the artifact's origin (its config's data, device)
    targets: Targets = _no_targets  # what the main experiment asks of this kind (studies ask for more)
    phase: int = 1  # 1: `-pretrain True`; 2: the sparse runs, once per rewind point
    label: Callable[[Artifact], str] = _label  # in logs: "[dense A]"
    what: Callable[[Artifact], str] | None = None  # in the sweep's plan: "IMP to 80%"; default: the label
    # parent name -> the dense checkpoints (epochs trained) this artifact reads from it
    checkpoints: Callable[[Artifact], dict[str, tuple[int, ...]]] = _no_checkpoints
    # A kind that holds checkpoints (dense): make(ctx, art, checkpoints=...) and `complete` adds the missing ones.
    keeps_checkpoints: bool = False
    complete: Callable[..., None] | None = None  # complete(ctx, art, checkpoints): an existing artifact's additions
    made_by_child: bool = False  # the IMP round chain: extended by each IMP target's maker, never made alone
    plan_epochs: Callable[[Artifact, list[int], dict[str, Any]], int] | None = None  # training epochs (the plan)
    serial: Callable[[Artifact], tuple[str, Any]] | None = None  # (group, order): a group's jobs run in order
    plan_args: Callable[[Artifact], dict[str, Any]] | None = None  # what a sweep job shows of it (--pack groups by)


STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    STAGES[stage.kind] = stage
    return stage


def stage_of(art: Artifact) -> Stage:
    try:
        return STAGES[art.kind]
    except KeyError:
        raise RuntimeError(f"no stage makes artifacts of kind {art.kind!r} ({art.dir})") from None


def main_artifacts(cfg: Config, seed: int, rewinds: Iterable[int] | None = None,
                   phases: tuple[int, ...] = (1, 2)) -> list[Artifact]:
    """What the main experiment asks for of (cfg, seed): every stage's targets, in table order."""
    points = list(cfg.rewind_points if rewinds is None else rewinds)
    return [a for s in list(STAGES.values()) if s.phase in phases for a in s.targets(cfg, seed, points)]


# ------------------------------------------------------------------ the walk


def closure(arts: Iterable[Artifact]) -> dict[str, Artifact]:
    """``arts`` and all their ancestors, by name, parents before children."""
    out: dict[str, Artifact] = {}

    def visit(art: Artifact) -> None:
        if art.name in out:
            return
        for parent in art.parents.values():
            visit(parent)
        out[art.name] = art

    for art in arts:
        visit(art)
    return out


def requested_checkpoints(arts: Iterable[Artifact]) -> dict[str, set[int]]:
    """dense artifact name -> the epochs that ``arts`` and their ancestors read from it."""
    out: dict[str, set[int]] = {}
    for art in closure(arts).values():
        for parent, epochs in stage_of(art).checkpoints(art).items():
            out.setdefault(art.parents[parent].name, set()).update(epochs)
    return out


def making_order(targets: Iterable[Artifact]) -> list[Artifact]:
    """The targets, their incomplete ancestry and the parents of every incomplete one, parents first.

    A complete artifact ends the walk up (its ancestry made it); it is listed
    when a target, or when an incomplete child reads it (it may lack a
    checkpoint the child reads). Made-by-child kinds are walked through.
    """
    out: dict[str, Artifact] = {}

    def visit(art: Artifact, listed: bool) -> None:
        if art.name in out:
            return
        stage = stage_of(art)
        if art.complete:
            if listed and not stage.made_by_child:
                out[art.name] = art
            return
        for parent in art.parents.values():
            visit(parent, True)
        if not stage.made_by_child:
            out[art.name] = art

    for art in targets:
        visit(art, True)
    return list(out.values())


def ensure(ctx: RunContext, targets: Iterable[Artifact], consumers: Iterable[Artifact] = (),
           checkpoints: dict[str, Iterable[int]] | None = None, after: Callable[[], Any] | None = None) -> None:
    """Make every incomplete artifact among ``targets`` and their ancestry, parents first, each under its lock.

    A dense model keeps the checkpoints that ``targets``, ``consumers`` (artifacts
    to be made later from it, e.g. phase 2's runs during phase 1) and
    ``checkpoints`` (name -> epochs) read. ``after`` runs after each artifact
    (results so far survive a kill between steps).
    """
    targets = list(targets)
    wanted = requested_checkpoints([*targets, *consumers])
    for name, epochs in (checkpoints or {}).items():
        wanted.setdefault(name, set()).update(epochs)
    for art in making_order(targets):
        make_one(ctx.at(art.origin), art, tuple(sorted(wanted.get(art.name, ()))))
        if after is not None:
            after()


def describe(art: Artifact) -> str:
    """What making ``art`` is, for people: "dense A", "sparse k=5 lth"."""
    stage = stage_of(art)
    return stage.what(art) if stage.what is not None else stage.label(art).strip("[]")


def make_one(ctx: RunContext, art: Artifact, checkpoints: tuple[int, ...] = ()) -> Artifact:
    """``art`` made unless complete (its parents are); a dense one holding ``checkpoints``."""
    stage = stage_of(art)
    if stage.keeps_checkpoints:
        art.make_once(lambda a: stage.make(ctx, a, checkpoints=checkpoints), stage.label(art))
    else:
        art.make_once(lambda a: stage.make(ctx, a), stage.label(art))
    if stage.complete is not None:
        stage.complete(ctx, art, checkpoints)
    return art


# ------------------------------------------------------------------ the main experiment's stages


def _made_by_child(ctx: RunContext, art: Artifact) -> None:
    raise RuntimeError(f"{art.dir} is made by its child's maker, never alone")


def _dense_epochs(art: Artifact, missing: list[int], memo: dict[str, Any]) -> int:
    return max(missing) if art.complete else art.settings["epochs"]


def _settings_epochs(art: Artifact, missing: list[int], memo: dict[str, Any]) -> int:
    return art.settings["epochs"]


def _sparse_targets(cfg: Config, seed: int, rewinds: list[int]) -> list[Artifact]:
    return [graph.sparse(cfg, seed, k, run) for k in rewinds for run in graph.sparse_runs(cfg)]


def _perm_label(art: Artifact) -> str:
    b_epoch = art.settings.get("b_epoch")
    return "[match]" if b_epoch is None else f"[match B@{b_epoch}]"


def _rewind_epoch(art: Artifact) -> dict[str, tuple[int, ...]]:
    epoch = art.settings.get("rewind_epoch")  # IMP with weight rewinding restarts every round from A at it
    return {} if epoch is None else {"dense_a": (epoch,)}


def _early_b(art: Artifact) -> dict[str, tuple[int, ...]]:
    b_epoch = art.settings.get("b_epoch")
    return {} if b_epoch is None else {"dense_b": (b_epoch,)}


# In table order the targets are walked: IMP (with its parent dense A) before dense B, the order phase 1 always had.
for _stage in (
    Stage("impchain", _made_by_child, checkpoints=_rewind_epoch, made_by_child=True),
    Stage("imp", make_imp, lambda cfg, seed, r: [graph.imp(cfg, seed)], plan_epochs=imp_epochs_to_train,
          label=lambda a: "[imp]", what=lambda a: f"IMP to {100 * a.settings['sparsity']:g}%",
          serial=lambda a: (a.parents["chain"].name, a.settings["sparsity"])),  # shared rounds: smallest first
    Stage("dense", make_dense, lambda cfg, seed, r: [graph.dense(cfg, seed, "A"), graph.dense(cfg, seed, "B")],
          label=lambda a: f"[dense {a.settings['role']}]", keeps_checkpoints=True, complete=add_checkpoints,
          plan_epochs=_dense_epochs),
    Stage("perm", make_permutation, lambda cfg, seed, r: [graph.permutation(cfg, seed)], label=_perm_label,
          checkpoints=_early_b, what=lambda a: _perm_label(a)[1:-1].replace("match", "permutation")),
    Stage("pmask", make_permuted_mask, lambda cfg, seed, r: [graph.permuted_mask(cfg, seed)],
          label=lambda a: "[pmask]", what=lambda a: "permuted mask"),
    Stage("interp", make_interpolation, lambda cfg, seed, r: [graph.interpolation(cfg, seed)],
          what=lambda a: "interpolation"),
    Stage("sparse", make_sparse, _sparse_targets, phase=2, plan_epochs=_settings_epochs,
          label=lambda a: f"[sparse k={a.settings['rewind']} {a.settings['run']}]",
          checkpoints=lambda a: {"weights": (checkpoint_epoch(a.settings),)},
          plan_args=lambda a: {"k": a.settings["rewind"], "run": a.settings["run"]}),
):
    register_stage(_stage)

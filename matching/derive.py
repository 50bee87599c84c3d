"""A model's permutation spec derived from its traced graph, checked before it is returned.

``derive_spec(model, example_input)`` traces the model (``torch.fx``; ``torch.export``
where fx cannot trace, e.g. data-dependent Python control flow), finds which channel
axes must share a permutation (``matching.channel_graph``), and builds the spec:

- every state-dict axis joined to a group that is not held fixed gets the group,
  with a repeat factor where a flatten spread a channel over spatial positions;
- each group is observed where its units are most meaningful: after a nonlinearity,
  else at a residual sum, a normalisation, or the layer that makes it. A module that
  runs once is observed by its name; any other graph node (a residual addition, a
  shared ReLU module's second use, a channels-last tensor) through ``spec.observe``,
  a traced view of the model with an observation module after that node;
- operations it does not understand hold the channels that pass through them fixed,
  each reported as one line naming the graph node.

The spec is then checked (``check_spec``: random permutations of every group leave the
outputs unchanged in eval mode, every observation carries its group). Should a group
still break invariance (an operation understood wrongly), it is held fixed as well and
reported, so the returned spec is never wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.autograd.function as autograd_function
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from matching.channel_graph import TIER_OTHER, ChannelGraph
from matching.check import SpecError, check_spec
from matching.derive_report import spec_summary, spec_table
from matching.spec import PermutationSpec
from utils.plugins import plugin_arguments, resolve_plugin

Report = Callable[[str], None]
_PROBES = "fx_nodes"  # the view's submodule holding one observation module per observed graph node


class UntraceableModelError(SpecError):
    """Neither torch.fx nor torch.export could trace the model."""


def report_line(line: str) -> None:
    """Print one line of derive_spec's report to stderr, with its ``[derive_spec]`` prefix."""
    print(f"[derive_spec] {line}", file=sys.stderr, flush=True)


def derive_spec(model: nn.Module, example_input: torch.Tensor, *, report: Report | None = None) -> PermutationSpec:
    """The permutation spec of ``model``, read from its graph on ``example_input`` and checked.

    ``report`` receives one line per graph node that holds channels fixed (default: printed to
    stderr with a ``[derive_spec]`` prefix). Raises ``UntraceableModelError`` (one line) when the
    model cannot be traced. The model is left as it was (its mode included).
    """
    report = report or report_line
    graph, source = trace(model, example_input)
    channels = ChannelGraph(graph, dict(source.named_modules()), set(model.state_dict()))
    channels.run()
    for line in channels.fixed_by:
        report(line)
    spec = _build_spec(model, channels, graph, source)
    return _verified(model, spec, example_input, report)


def trace(model: nn.Module, example_input: torch.Tensor) -> tuple[fx.Graph, nn.Module]:
    """The model's graph with every tensor's shape on ``example_input``, and the module owning its targets.

    Traced in eval mode (what the spec is checked and observed in); fx first, torch.export if fx fails.
    """
    was_training = model.training
    model.eval()
    try:
        try:
            gm = fx.GraphModule(model, _FxTracer().trace(model))
            gm.eval()
            with torch.no_grad():
                ShapeProp(gm).propagate(example_input)
            return gm.graph, gm
        except Exception as fx_error:  # noqa: BLE001 - any failure of fx: try torch.export
            first = _first_line(fx_error)
        logging.disable(logging.WARNING)  # a failing export logs pages of its internals; its error is enough
        try:
            with torch.no_grad():
                exported = torch.export.export(model, (example_input,), strict=False)
            gm = exported.module()
            return gm.graph, gm
        except Exception as export_error:  # noqa: BLE001
            raise UntraceableModelError(
                f"cannot trace {type(model).__name__} to derive its permutation spec: torch.fx failed ({first}) "
                f"and torch.export failed ({_first_line(export_error)}); define permutation_spec() on the model"
            ) from None
        finally:
            logging.disable(logging.NOTSET)
    finally:
        model.train(was_training)


class _FxTracer(fx.Tracer):
    """fx's tracer, with custom autograd functions kept as one opaque node each.

    fx would trace into ``Function.apply``'s forward and lose that a custom backward
    exists (which may treat channels differently): as a node of its own the function
    counts as an operation not understood, and holds its channels fixed.
    """

    def trace(self, root: Any, concrete_args: Any = None) -> fx.Graph:
        original = autograd_function.Function.__dict__["apply"]
        tracer = self

        def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
            if any(isinstance(a, fx.Proxy) for a in (*args, *kwargs.values())):
                return tracer.create_proxy("call_function", _opaque_function(cls), args, kwargs)
            return original.__get__(None, cls)(*args, **kwargs)

        autograd_function.Function.apply = classmethod(apply)
        try:
            return super().trace(root, concrete_args)
        finally:
            autograd_function.Function.apply = original


def _opaque_function(cls: type) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        return cls.apply(*args, **kwargs)

    run.__name__ = f"{cls.__name__}_apply"
    run.__qualname__ = f"{cls.__qualname__}.apply"
    run.autograd_function = cls  # type: ignore[attr-defined]
    return run


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def _build_spec(model: nn.Module, channels: ChannelGraph, graph: fx.Graph, source: nn.Module) -> PermutationSpec:
    state = model.state_dict()
    elements = channels.elements
    members = elements.groups()
    names: dict[int, str] = {}
    for root in members:  # a module called twice may make two groups: number the later ones
        name, n = elements.origin[root], 1
        while name in names.values():
            n += 1
            name = f"{elements.origin[root]}#{n}"
        names[root] = name
    axes: dict[str, list[str | None]] = {}
    repeats: dict[tuple[str, int], int] = {}
    blocks = {names[root]: elements.blocks[root] for root in members if elements.blocks[root] > 1}
    tied = frozenset(names[root] for root in members if elements.tied[root] and elements.blocks[root] > 1)
    folded = frozenset((key, axis) for items in members.values() for key, axis, _, f in items if f)
    for root, items in members.items():
        for key, axis, repeat, _ in items:
            axes.setdefault(key, [None] * state[key].ndim)[axis] = names[root]
            if repeat != 1:
                repeats[(key, axis)] = repeat

    # observations: per group, the nodes of its best tier
    best: dict[int, int] = {}
    seen: dict[int, list[fx.Node]] = {}
    for node, tier in channels.observed:
        chan = channels.chan(node)
        root = elements.find(chan.element)
        if root not in members:
            continue
        if tier < best.get(root, TIER_OTHER + 1):
            best[root], seen[root] = tier, []
        if tier == best[root] and node not in seen[root]:
            seen[root].append(node)
    activations: dict[str, list[str]] = {}
    probes: dict[str, tuple[fx.Node, int, int]] = {}
    for root, nodes in seen.items():
        for node in nodes:
            chan = channels.chan(node)
            once = node.op == "call_module" and channels.module_calls.get(node.target) == 1
            if once and chan.dim == 1 and chan.repeat == 1:
                name = str(node.target)
            else:
                name = f"{_PROBES}.{node.name}"
                probes[name] = (node, chan.dim, chan.repeat)
            activations.setdefault(names[root], []).append(name)
    observe = _observer(graph, source, probes) if probes else None
    return PermutationSpec(axes={k: tuple(v) for k, v in axes.items()}, activations=activations, repeats=repeats,
                           blocks=blocks, tied=tied, folded=folded, observe=observe)


class _Observe(nn.Module):
    """Returns its input with the channels on dim 1 (blocks of a repeated axis split off as positions)."""

    def __init__(self, dim: int, repeat: int) -> None:
        super().__init__()
        self.dim, self.repeat = dim, repeat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(self.dim, 1)
        return x.unflatten(1, (-1, self.repeat)) if self.repeat != 1 else x


def _fetch(model: nn.Module, source: nn.Module, target: str) -> Any:
    """``target`` (a dotted attribute) of ``model``, or of the traced ``source`` (tracing's own constants)."""
    for owner in (model, source):
        obj: Any = owner
        try:
            for part in target.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise AttributeError(f"{target!r} is neither an attribute of the model nor of its trace")


def _observer(graph: fx.Graph, source: nn.Module,
              probes: dict[str, tuple[fx.Node, int, int]]) -> Callable[[nn.Module], nn.Module]:
    """A function building, for any model of this architecture, its traced view with observation modules.

    The view's submodules and tensors are the model's own (not copies), so it computes the model's
    function from the model's current parameters; it is traced in eval mode and meant for evaluation.
    """

    def observe(model: nn.Module) -> nn.Module:
        copy = fx.Graph()
        copy.set_codegen(graph._codegen)  # torch.export's graphs flatten inputs and outputs as pytrees
        env: dict[fx.Node, fx.Node] = {}
        out = copy.graph_copy(graph, env)
        copy.output(out)
        root: dict[str, Any] = {}
        for node in copy.nodes:
            if node.op in ("call_module", "get_attr"):
                root[str(node.target)] = _fetch(model, source, str(node.target))
        for name, (node, dim, repeat) in probes.items():
            with copy.inserting_after(env[node]):
                copy.call_module(name, (env[node],))
            root[name] = _Observe(dim, repeat)
        view = fx.GraphModule(root, copy)
        return view.eval()

    return observe


def _restricted(spec: PermutationSpec, groups: set[str]) -> PermutationSpec:
    """``spec`` with only ``groups`` permuted (and no observations): to test groups one by one."""
    axes = {k: tuple(g if g in groups else None for g in v) for k, v in spec.axes.items()}
    axes = {k: v for k, v in axes.items() if any(g is not None for g in v)}
    repeats = {ka: r for ka, r in spec.repeats.items() if ka[0] in axes}
    blocks = {g: k for g, k in spec.blocks.items() if g in groups}
    folded = frozenset(ka for ka in spec.folded if ka[0] in axes and axes[ka[0]][ka[1]] is not None)
    return PermutationSpec(axes=axes, repeats=repeats, blocks=blocks, tied=spec.tied & groups, folded=folded)


def _verified(model: nn.Module, spec: PermutationSpec, x: torch.Tensor, report: Report) -> PermutationSpec:
    """``spec`` once it passes ``check_spec``; groups that break invariance on their own are held fixed."""
    for _ in range(2):
        try:
            check_spec(model, spec, x, diagnose=False)
            return spec
        except SpecError as err:
            failure = err
        groups = set(spec.groups)
        culprits = []
        for g in sorted(groups):
            try:
                check_spec(model, _restricted(spec, {g}), x, diagnose=False)
            except SpecError:
                culprits.append(g)
        if not culprits:
            break
        for g in culprits:
            report(f"holding channel group {g!r} fixed: permuting it alone changed the model's outputs")
        keep = groups - set(culprits)
        narrowed = _restricted(spec, keep)
        spec = PermutationSpec(axes=narrowed.axes, repeats=narrowed.repeats, blocks=narrowed.blocks,
                               tied=narrowed.tied, folded=narrowed.folded, observe=spec.observe,
                               activations={g: v for g, v in spec.activations.items() if g in keep})
    raise SpecError(f"the permutation spec derived for {type(model).__name__} failed its check: {failure}")


# ---------------------------------------------------------------- python -m matching.derive

_CLI_DOC = """Print the permutation spec derived for a model of your own.

Builds the model as a run builds a plug-in ``model_type`` (the same import and keyword arguments, utils/plugins.py),
derives its spec and prints the table, then the places where channels were held fixed and why."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m matching.derive", description=_CLI_DOC)
    p.add_argument("model", help="package.module:ClassName (or a function returning an nn.Module)")
    p.add_argument("--model-kwargs", default="{}", help="JSON object of keyword arguments for the constructor")
    p.add_argument("--input-shape", default="3,32,32", help="one example's shape, e.g. 3,32,32")
    p.add_argument("--num-classes", type=int, default=10, help="passed where the constructor takes a class count")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the derived spec of a plug-in model; exit status 2 with one line on a user error."""
    args = _parse(argv)
    try:
        shape = tuple(int(s) for s in args.input_shape.split(","))
        kwargs = json.loads(args.model_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("--model-kwargs must be a JSON object")
        build = resolve_plugin(args.model)
        model = build(**plugin_arguments(args.model, kwargs, in_channels=shape[0], num_classes=args.num_classes))
        example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                model.eval()(example)
        except Exception as err:  # noqa: BLE001 - the user's forward: one line, not a traceback
            raise ValueError(f"{args.model} fails on an input of shape {tuple(example.shape)} "
                             f"({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
                             "give --input-shape") from None
        held: list[str] = []
        spec = derive_spec(model, example, report=held.append)
    except (ValueError, TypeError, SpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = model.state_dict()
    print(spec_table(spec, state))
    print()
    print("held fixed:" if held else "held fixed: nothing (beyond the model's input and output axes)")
    for line in held:
        print(f"  {line}")
    print()
    print(spec_summary(spec, state, len(held)))
    return 0


if __name__ == "__main__":  # python -m matching.derive pkg.mod:Class [--model-kwargs '{...}'] [--input-shape 3,32,32]
    sys.exit(main())

"""Which channel axes of a traced graph must share one permutation: union-find over graph values.

Every tensor value of the graph (an fx node) may carry a *channel element* on one
of its dims: ``Chan(element, dim, repeat)``, the dim holding ``repeat`` entries
per unit (a flattened ``C x H x W`` map carries its channels on dim 1 with repeat
``H*W``). Operations join elements (a residual addition: both operands' units must
be permuted alike), create them (a conv's output channels) and attach state-dict
axes to them (a conv's weight output axis, its input axis, a BatchNorm's vectors).
An element is *fixed* (never permuted) when it reaches the model's input or
output, or passes through an operation this module does not understand: such an
operation may depend on the order of its channels, so permuting them could change
the model. Every fixing by an unknown operation is reported as one line naming the
graph node.

Nothing here knows an architecture: only operations (conv, linear, normalisation,
elementwise, pooling, reshapes, concatenation, reductions) and their shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm


@dataclass(frozen=True)
class Chan:
    """A value's channels: ``element``'s units on ``dim``, each owning ``repeat`` consecutive entries."""

    element: int
    dim: int
    repeat: int = 1


class Elements:
    """Union-find over channel elements, each with its state-dict members (key, axis, repeat)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: list[bool] = []
        self.blocks: list[int] = []  # the root's block count: its units may only move inside their block
        self.tied: list[bool] = []  # the root's blocks all move alike (see PermutationSpec.tied)
        self.origin: list[str] = []  # the graph node that created the element: names its group
        self.owner: dict[tuple[str, int], tuple[int, int, bool]] = {}  # (key, axis) -> (element, repeat, folded)
        self.pinned: set[str] = set()  # keys some unknown operation reads as raw tensors

    def new(self, origin: str, fixed: bool = False, blocks: int = 1) -> int:
        self.parent.append(len(self.parent))
        self.fixed.append(fixed)
        self.blocks.append(blocks)
        self.tied.append(False)
        self.origin.append(origin)
        return len(self.parent) - 1

    def find(self, e: int) -> int:
        while self.parent[e] != e:
            self.parent[e] = self.parent[self.parent[e]]
            e = self.parent[e]
        return e

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        keep, drop = min(ra, rb), max(ra, rb)  # the older element names the group
        self.parent[drop] = keep
        self.fixed[keep] = self.fixed[keep] or self.fixed[drop]
        if self.tied[drop]:
            self._tie_root(keep, self.blocks[drop])
        elif self.blocks[drop] > 1:
            self.constrain(keep, self.blocks[drop])
        return keep

    def constrain(self, e: int, blocks: int) -> None:
        """``e``'s units may only move inside ``blocks`` consecutive equal blocks (and any it had already)."""
        r = self.find(e)
        if self.tied[r]:  # tied blocks already keep units inside any coarser blocks; finer ones conflict
            if self.blocks[r] % blocks:
                self.fixed[r] = True
            return
        self.blocks[r] = math.lcm(self.blocks[r], blocks)  # both constraints: the finer blocks

    def tie(self, e: int, blocks: int) -> bool:
        """``e``'s units move by one permutation of a block in all ``blocks`` blocks; False (and ``e``
        fixed) if its other constraints do not allow that."""
        r = self.find(e)
        self._tie_root(r, blocks)
        return not self.fixed[r]

    def _tie_root(self, r: int, blocks: int) -> None:
        if (self.tied[r] and self.blocks[r] != blocks) or (not self.tied[r] and blocks % self.blocks[r]):
            self.fixed[r] = True
            return
        self.blocks[r], self.tied[r] = blocks, True

    def fix(self, e: int) -> bool:
        """Fix ``e``'s group; True if it was not fixed before."""
        r = self.find(e)
        was = self.fixed[r]
        self.fixed[r] = True
        return not was

    def is_fixed(self, e: int) -> bool:
        return self.fixed[self.find(e)]

    def attach(self, e: int, key: str, axis: int, repeat: int, folded: bool = False) -> None:
        """``key``'s ``axis`` is permuted with ``e`` (one tensor axis shared by two elements joins them);
        ``folded``: the axis holds one block of ``e``'s tied blocks."""
        prev = self.owner.get((key, axis))
        if prev is None:
            self.owner[(key, axis)] = (e, repeat, folded)
            return
        self.union(prev[0], e)
        if prev[1:] != (repeat, folded):  # one axis read with two block sizes: no single permutation fits both
            self.fix(e)

    def groups(self) -> dict[int, list[tuple[str, int, int, bool]]]:
        """Root element -> its members (key, axis, repeat, folded), for the elements that are not fixed."""
        for key, axis in list(self.owner):
            if key in self.pinned:
                self.fix(self.owner[(key, axis)][0])
        out: dict[int, list[tuple[str, int, int, bool]]] = {}
        for (key, axis), (e, repeat, folded) in self.owner.items():
            root = self.find(e)
            if not self.fixed[root]:
                out.setdefault(root, []).append((key, axis, repeat, folded))
        return out


# ------------------------------------------------------------------ operation tables

_ACTIVATIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "silu", "silu_", "sigmoid", "sigmoid_", "tanh",
    "tanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu", "leaky_relu_", "elu", "elu_",
    "selu", "selu_", "celu", "softplus", "mish", "mish_", "logsigmoid", "softsign", "tanhshrink", "threshold",
}
_ELEMENTWISE = _ACTIVATIONS | {
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "feature_dropout", "alpha_dropout",
    "feature_alpha_dropout", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "square", "clamp", "clamp_", "clip",
    "contiguous", "clone", "detach", "float", "half", "bfloat16", "double", "sign", "erf", "sin", "cos",
    "reciprocal", "alias", "lift_fresh_copy", "add", "add_", "iadd", "sub", "sub_", "isub", "rsub", "mul", "mul_",
    "imul", "truediv", "div", "div_", "itruediv", "pow", "maximum", "minimum", "where", "addcmul",
    "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__imul__", "__truediv__",
    "__rtruediv__", "__neg__", "__pow__", "masked_fill", "identity",
}
_DTYPE_ONLY = {"to", "type_as", "type", "_to_copy", "cpu", "cuda"}  # later tensor args give only dtype/device
_POOLS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "lp_pool1d", "lp_pool2d", "_adaptive_avg_pool2d", "mean_pool",
}
_RESHAPES = {"flatten", "view", "reshape", "_unsafe_view", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_",
             "view_as", "reshape_as"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "std", "var", "logsumexp", "prod", "norm"}
_SOFTMAX = {"softmax", "log_softmax", "_softmax", "_log_softmax"}
_CONCAT = {"cat", "concat", "concatenate", "stack"}
_TRANSPOSES = {"permute", "transpose", "transpose_", "t", "swapaxes", "swapdims", "movedim"}
_META = {"size", "dim", "numel", "getattr", "len", "sym_size", "_assert", "sym_numel", "eq", "ne", "lt", "le", "gt",
         "ge", "floordiv", "_guards_fn"}

_ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
    nn.SELU, nn.CELU, nn.Softplus, nn.Mish, nn.LogSigmoid, nn.Softsign, nn.Hardtanh, nn.Tanhshrink, nn.Threshold,
)
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
                 nn.Identity)
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.LPPool1d, nn.LPPool2d,
)

# Observation tiers: activation matching reads a group where its units are most meaningful, after the
# nonlinearity (as the paper and the declared specs do); without one, at residual sums, norms, or anywhere.
TIER_ACTIVATION, TIER_SUM, TIER_NORM, TIER_OTHER = 0, 1, 2, 3


def op_name(node: fx.Node) -> str:
    """A node's operation, spelled alike for fx functions, tensor methods and torch.export's aten ops."""
    target = node.target
    if node.op == "call_method":
        return str(target)
    if isinstance(target, torch._ops.OpOverload):
        return target._opname
    return getattr(target, "__name__", str(target))


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The shape a tensor-valued node had on the example input (fx ShapeProp or export's fake value)."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    if meta is not None and hasattr(meta, "shape"):
        return tuple(int(s) for s in meta.shape)
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return tuple(int(s) for s in val.shape)
    return None


def _origin(node: fx.Node) -> str:
    """What a group made at ``node`` is called: the module's name, else the graph node's."""
    return str(node.target) if node.op == "call_module" else node.name


def _nodes_in(arg: Any) -> Iterator[fx.Node]:
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            yield from _nodes_in(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from _nodes_in(a)


@dataclass
class ChannelGraph:
    """The channel elements of one traced graph; ``run`` walks it once."""

    graph: fx.Graph
    modules: dict[str, nn.Module]
    state_keys: set[str]
    elements: Elements = field(default_factory=Elements)
    state: dict[fx.Node, Any] = field(default_factory=dict)  # node -> Chan | None | tuple of those
    fixed_by: list[str] = field(default_factory=list)  # one line per node that held channels fixed
    observed: list[tuple[fx.Node, int]] = field(default_factory=list)  # (node, tier): batched values with a Chan
    module_calls: dict[str, int] = field(default_factory=dict)

    def run(self) -> None:
        for node in self.graph.nodes:
            if node.op == "call_module":
                self.module_calls[node.target] = self.module_calls.get(node.target, 0) + 1
        handlers: dict[str, Callable[[fx.Node], None]] = {
            "placeholder": self._placeholder, "get_attr": self._get_attr, "output": self._output,
            "call_module": self._call_module, "call_function": self._call, "call_method": self._call,
        }
        for node in self.graph.nodes:
            handlers[node.op](node)

    # ------------------------------------------------------------ helpers

    def chan(self, node: Any) -> Chan | None:
        s = self.state.get(node) if isinstance(node, fx.Node) else None
        return s if isinstance(s, Chan) else None

    def _set(self, node: fx.Node, chan: Chan | None, tier: int = TIER_OTHER) -> None:
        self.state[node] = chan
        shape = shape_of(node)
        if chan is not None and shape is not None and len(shape) >= 2:
            self.observed.append((node, tier))

    def _fresh(self, node: fx.Node, dim: int, weight_key: str | None = None, blocks: int = 1) -> Chan:
        origin = weight_key.rsplit(".", 1)[0] if weight_key and "." in weight_key else _origin(node)
        return Chan(self.elements.new(origin, blocks=blocks), dim)

    def unknown(self, node: fx.Node, why: str) -> None:
        """Hold every channel group reaching ``node`` fixed (an operation that may depend on channel order)."""
        newly = False
        for arg in _nodes_in((node.args, node.kwargs)):
            chan = self.chan(arg)
            if chan is not None:
                newly |= self.elements.fix(chan.element)
            key = self._key_of(arg)
            if key is not None and key not in self.elements.pinned:
                self.elements.pinned.add(key)
                newly = True
        if newly:
            self.fixed_by.append(f"holding channels fixed at graph node {node.name!r} ({why})")
        self.state[node] = None

    def _key_of(self, node: Any) -> str | None:
        """The state-dict key a ``get_attr`` node reads, if any."""
        if isinstance(node, fx.Node) and node.op == "get_attr" and node.target in self.state_keys:
            return str(node.target)
        return None

    def _module_key(self, name: str, attr: str) -> str | None:
        key = f"{name}.{attr}" if name else attr
        return key if key in self.state_keys else None

    @staticmethod
    def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
        if len(node.args) > index:
            return node.args[index]
        return node.kwargs.get(name, default)

    # ------------------------------------------------------------ node kinds

    def _placeholder(self, node: fx.Node) -> None:
        self.state[node] = None  # the model's input axis is never permuted

    def _get_attr(self, node: fx.Node) -> None:
        self.state[node] = None

    def _output(self, node: fx.Node) -> None:
        for arg in _nodes_in(node.args):  # the logits axis is never permuted
            chan = self.chan(arg)
            if chan is not None:
                self.elements.fix(chan.element)
            s = self.state.get(arg)
            if isinstance(s, tuple):
                for c in s:
                    if isinstance(c, Chan):
                        self.elements.fix(c.element)

    def _call_module(self, node: fx.Node) -> None:
        name = str(node.target)
        module = self.modules.get(name)
        if module is None:
            if name.startswith("_guards"):  # torch.export's shape guards: no tensor flows through
                self.state[node] = None
                return
            self.unknown(node, f"unknown module {name!r}")
            return
        x = node.args[0] if node.args else None
        kind = type(module).__name__
        if isinstance(module, _ConvNd):
            self._conv(node, x, self._module_key(name, "weight"), self._module_key(name, "bias"),
                       module.groups, module.transposed, has_bias=module.bias is not None)
        elif isinstance(module, nn.Linear):
            self._linear(node, x, self._module_key(name, "weight"), self._module_key(name, "bias"),
                         has_bias=module.bias is not None)
        elif isinstance(module, _BatchNorm | _InstanceNorm):
            keys = [self._module_key(name, a) for a in ("weight", "bias", "running_mean", "running_var")
                    if getattr(module, a, None) is not None]
            self._per_channel(node, x, keys, kind)
        elif isinstance(module, nn.GroupNorm):
            chan = self.chan(x)
            groups = module.num_groups
            if chan is not None and groups != module.num_channels and (module.num_channels // chan.repeat) % groups:
                self.unknown(node, f"GroupNorm with {groups} groups splits a unit's channels between groups")
                return
            keys = [self._module_key(name, a) for a in ("weight", "bias") if getattr(module, a, None) is not None]
            self._per_channel(node, x, keys, kind)
            if chan is not None and groups != module.num_channels:
                self.elements.constrain(chan.element, groups)  # statistics per group: units stay in theirs
        elif isinstance(module, nn.LayerNorm):
            keys = [self._module_key(name, a) for a in ("weight", "bias") if getattr(module, a, None) is not None]
            self._layer_norm(node, x, len(module.normalized_shape), keys)
        elif isinstance(module, nn.PReLU):
            key = self._module_key(name, "weight")
            if module.num_parameters == 1:
                self._elementwise(node, [x], TIER_ACTIVATION)
            else:
                self._per_channel(node, x, [key], kind, tier=TIER_ACTIVATION)
        elif isinstance(module, _ACTIVATION_MODULES):
            self._elementwise(node, [x], TIER_ACTIVATION)
        elif isinstance(module, _PASS_MODULES):
            self._elementwise(node, [x])
        elif isinstance(module, _POOL_MODULES) and not getattr(module, "return_indices", False):
            self._pool(node, x)
        elif isinstance(module, nn.Flatten):
            self._reshape(node, x)
        elif isinstance(module, nn.Softmax | nn.LogSoftmax):
            self._elementwise(node, [x])
        elif isinstance(module, nn.Embedding):
            key = self._module_key(name, "weight")
            if key is None:
                self.unknown(node, "Embedding without a weight in the state dict")
                return
            out = self._fresh(node, len(shape_of(node) or (0, 0)) - 1, key)
            self.elements.attach(out.element, key, 1, 1)
            self._set(node, out)
        else:
            self.unknown(node, f"{kind} is not understood")

    def _call(self, node: fx.Node) -> None:
        name = op_name(node)
        aten = isinstance(node.target, torch._ops.OpOverload)
        args = list(node.args)
        custom = getattr(node.target, "autograd_function", None)
        if custom is not None:
            self.unknown(node, f"custom autograd function {custom.__qualname__}")
        elif name in _META:
            # size(), shape, len(): no tensor comes out. A tensor that does (``x.T``) is one whose channels
            # would otherwise be lost track of.
            if shape_of(node) is not None and any(self.chan(a) is not None for a in _nodes_in(node.args)):
                self.unknown(node, f"{name} returning a tensor")
            else:
                self.state[node] = None
        elif name == "getitem":
            self._getitem(node)
        elif name in _DTYPE_ONLY:
            self._elementwise(node, args[:1])
        elif name in _ELEMENTWISE:
            tier = TIER_ACTIVATION if name in _ACTIVATIONS else TIER_OTHER
            if name in ("add", "add_", "iadd", "__add__", "__radd__", "__iadd__"):
                if sum(self.chan(a) is not None for a in args[:2]) == 2:
                    tier = TIER_SUM
            self._elementwise(node, [a for a in _nodes_in((node.args, node.kwargs))], tier)
        elif name in _POOLS:
            self._pool(node, args[0])
        elif name in _RESHAPES:
            self._reshape(node, args[0])
        elif name in _SOFTMAX:
            self._elementwise(node, args[:1])
        elif name in _TRANSPOSES:
            self._transpose(node, name)
        elif name in _REDUCTIONS:
            self._reduce(node)
        elif name in _CONCAT:
            self._concat(node, name)
        elif name in ("conv1d", "conv2d", "conv3d", "convolution"):
            groups = self._arg(node, 8 if name == "convolution" else 6, "groups", 1)
            transposed = bool(self._arg(node, 6, "transposed", False)) if name == "convolution" else False
            self._functional_layer(node, "conv", groups=groups, transposed=transposed)
        elif name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
            self._functional_layer(node, "conv", groups=self._arg(node, 6, "groups", 1), transposed=True)
        elif name == "linear":
            self._functional_layer(node, "linear")
        elif name in ("batch_norm", "_native_batch_norm_legit_no_training", "instance_norm"):
            # F.batch_norm(x, running_mean, running_var, weight, bias); aten's: (x, weight, bias, mean, var)
            order = (1, 2, 3, 4) if aten else (3, 4, 1, 2)
            params = [args[i] if len(args) > i else None for i in order]
            if name == "instance_norm" and not aten:
                params = [node.kwargs.get(k, args[i] if len(args) > i else None)
                          for k, i in (("weight", 3), ("bias", 4), ("running_mean", 1), ("running_var", 2))]
            self._functional_params(node, params, lambda keys: self._per_channel(node, args[0], keys, name))
        elif name in ("layer_norm", "native_layer_norm"):
            shape = self._arg(node, 1, "normalized_shape")
            params = [self._arg(node, 2, "weight"), self._arg(node, 3, "bias")]
            self._functional_params(
                node, params, lambda keys: self._layer_norm(node, args[0], len(shape), keys))
        else:
            target = name if node.op == "call_method" else getattr(node.target, "__qualname__", name)
            self.unknown(node, f"{target} is not understood")

    # ------------------------------------------------------------ semantics

    def _functional_params(self, node: fx.Node, params: list[Any], then: Callable[[list[str | None]], None]) -> None:
        keys = []
        for p in params:
            if p is None:
                continue
            key = self._key_of(p)
            if key is None:
                self.unknown(node, f"{op_name(node)} with a parameter that is not a stored tensor")
                return
            keys.append(key)
        then(keys)

    def _functional_layer(self, node: fx.Node, kind: str, groups: int = 1, transposed: bool = False) -> None:
        x, w, b = node.args[0], self._arg(node, 1, "weight"), self._arg(node, 2, "bias")
        wkey, bkey = self._key_of(w), self._key_of(b) if b is not None else None
        if wkey is None or (b is not None and bkey is None):
            self.unknown(node, f"{op_name(node)} with a weight that is not a stored tensor")
            return
        if kind == "conv":
            self._conv(node, x, wkey, bkey, int(groups), transposed, has_bias=b is not None)
        else:
            self._linear(node, x, wkey, bkey, has_bias=b is not None)

    def _layer_shapes(self, node: fx.Node, x: Any, wkey: str | None, bkey: str | None, has_bias: bool,
                      what: str) -> tuple[Any, Any] | None:
        """A conv's or linear layer's input and output shapes; None (its channels held fixed, said once) when
        its parameters are not stored tensors of the state dict or its shapes are unknown."""
        if wkey is None or (has_bias and bkey is None):
            self.unknown(node, f"{what} whose weight is not in the state dict")
            return None
        in_shape, out_shape = shape_of(x), shape_of(node)
        if in_shape is None or out_shape is None:
            self.unknown(node, f"{what} of unknown shape")
            return None
        return in_shape, out_shape

    def _conv(self, node: fx.Node, x: Any, wkey: str | None, bkey: str | None, groups: int, transposed: bool,
              has_bias: bool) -> None:
        shapes = self._layer_shapes(node, x, wkey, bkey, has_bias, "a convolution")
        if shapes is None:
            return
        in_shape, out_shape = shapes
        chan = self.chan(x)
        if chan is not None and chan.dim != 1:
            self.unknown(node, "a convolution over a dim that does not hold the channels")
            return
        out_axis, in_axis = (1, 0) if transposed else (0, 1)
        c_in, c_out = in_shape[1], out_shape[1]
        if groups == 1:
            if chan is not None:
                self.elements.attach(chan.element, wkey, in_axis, chan.repeat)
            out = self._fresh(node, 1, wkey)
            self.elements.attach(out.element, wkey, out_axis, 1)
            if bkey is not None:
                self.elements.attach(out.element, bkey, 0, 1)
            self._set(node, out)
            return
        if groups == c_in and not transposed and c_out % c_in == 0:
            # depthwise: output channels i*m .. i*m+m-1 read input channel i alone, so they move with it
            m = c_out // c_in
            if chan is None:
                out = Chan(self.elements.new(_origin(node), fixed=True), 1, m)
            else:
                out = Chan(chan.element, 1, chan.repeat * m)
            self.elements.attach(out.element, wkey, 0, out.repeat)
            if bkey is not None:
                self.elements.attach(out.element, bkey, 0, out.repeat)
            self._set(node, out)
            return
        if transposed:
            self.unknown(node, f"a transposed grouped convolution ({groups} groups) ties channels within groups")
            return
        # grouped: output channel i reads only the inputs of its group, so outputs may move inside their group.
        # Inputs move by one permutation acting alike in every group: the weight's input axis holds one group's
        # inputs and is shared by all groups (a tied group, its input axis folded).
        if chan is not None:
            units = c_in // chan.repeat
            if units % groups == 0 and self.elements.tie(chan.element, groups):
                self.elements.attach(chan.element, wkey, in_axis, chan.repeat, folded=True)
            elif self.elements.fix(chan.element):
                self.fixed_by.append(f"holding channels fixed at graph node {node.name!r} (the inputs of a grouped "
                                     f"convolution, {groups} groups, cannot move alike in every group)")
        out = self._fresh(node, 1, wkey, blocks=groups)
        self.elements.attach(out.element, wkey, 0, 1)
        if bkey is not None:
            self.elements.attach(out.element, bkey, 0, 1)
        self._set(node, out)

    def _linear(self, node: fx.Node, x: Any, wkey: str | None, bkey: str | None, has_bias: bool) -> None:
        shapes = self._layer_shapes(node, x, wkey, bkey, has_bias, "a linear layer")
        if shapes is None:
            return
        in_shape, out_shape = shapes
        chan = self.chan(x)
        if chan is not None:
            if chan.dim != len(in_shape) - 1:
                self.unknown(node, "a linear layer over a dim that does not hold the channels")
                return
            self.elements.attach(chan.element, wkey, 1, chan.repeat)
        out = self._fresh(node, len(out_shape) - 1, wkey)
        self.elements.attach(out.element, wkey, 0, 1)
        if bkey is not None:
            self.elements.attach(out.element, bkey, 0, 1)
        self._set(node, out)

    def _per_channel(self, node: fx.Node, x: Any, keys: list[str | None], kind: str,
                     tier: int = TIER_NORM) -> None:
        """An operation acting on each channel (dim 1) alone, with one vector entry per channel."""
        if any(k is None for k in keys):
            self.unknown(node, f"{kind} whose parameters are not in the state dict")
            return
        chan = self.chan(x)
        if chan is None:
            self.state[node] = None
            return
        if chan.dim != 1:
            self.unknown(node, f"{kind} over a dim that does not hold the channels")
            return
        for key in keys:
            self.elements.attach(chan.element, key, 0, chan.repeat)
        self._set(node, chan, tier)

    def _layer_norm(self, node: fx.Node, x: Any, k: int, keys: list[str | None]) -> None:
        """LayerNorm over the last ``k`` dims: equivariant in channels; its parameters carry them if normalised."""
        if any(key is None for key in keys):
            self.unknown(node, "LayerNorm whose parameters are not in the state dict")
            return
        chan, shape = self.chan(x), shape_of(x)
        if chan is None or shape is None:
            self.state[node] = None
            return
        first = len(shape) - k
        if chan.dim >= first:
            for key in keys:
                self.elements.attach(chan.element, key, chan.dim - first, chan.repeat)
        self._set(node, chan, TIER_NORM)

    def _elementwise(self, node: fx.Node, operands: list[Any], tier: int = TIER_OTHER) -> None:
        """Broadcasting elementwise operations: aligned channel dims join; a tensor that varies along the
        channel dim but carries no channels holds them fixed (a stored one is permuted along instead)."""
        out_shape = shape_of(node)
        tensors = [a for a in operands if shape_of(a) is not None]
        if out_shape is None:
            if any(self.chan(a) is not None for a in tensors):
                self.unknown(node, "an operation whose output is not one tensor")
            else:
                self.state[node] = None
            return
        chans = []
        for a in tensors:
            chan, shape = self.chan(a), shape_of(a)
            if chan is not None:
                chans.append((a, Chan(chan.element, chan.dim + len(out_shape) - len(shape), chan.repeat)))
        if not chans:
            self.state[node] = None
            return
        dim, repeat = chans[0][1].dim, chans[0][1].repeat
        # every channel operand on one dim, none broadcast along it (a single unit spread over many)
        if any(c.dim != dim or c.repeat != repeat or shape_of(a)[self.chan(a).dim] != out_shape[dim]
               for a, c in chans):
            self.unknown(node, "an elementwise operation mixing channel axes")
            return
        element = chans[0][1].element
        for _, c in chans[1:]:
            element = self.elements.union(element, c.element)
        for a in tensors:
            if self.chan(a) is not None:
                continue
            shape = shape_of(a)
            axis = dim - (len(out_shape) - len(shape))
            if axis < 0 or shape[axis] == 1:
                continue  # constant along the channels
            key = self._key_of(a)
            if key is not None and shape[axis] == out_shape[dim]:
                self.elements.attach(element, key, axis, repeat)
            elif self.elements.fix(element):
                self.fixed_by.append(f"holding channels fixed at graph node {node.name!r} (an elementwise "
                                     f"operand {a.name!r} varies along the channels but is not permuted)")
        self._set(node, Chan(element, dim, repeat), tier)

    def _pool(self, node: fx.Node, x: Any) -> None:
        chan, in_shape, out_shape = self.chan(x), shape_of(x), shape_of(node)
        if chan is None:
            self.state[node] = None
            return
        if chan.dim != 1 or in_shape is None or out_shape is None or in_shape[:2] != out_shape[:2]:
            self.unknown(node, "pooling that does not keep the channels on dim 1")
            return
        self._set(node, chan)

    def _reshape(self, node: fx.Node, x: Any) -> None:
        chan, in_shape, out_shape = self.chan(x), shape_of(x), shape_of(node)
        if chan is None:
            self.state[node] = None
            return
        moved = None if in_shape is None or out_shape is None else reshaped_channels(in_shape, out_shape, chan)
        if moved is None:
            self.unknown(node, f"a reshape {in_shape} -> {out_shape} that splits or interleaves the channels")
            return
        self._set(node, moved)

    def _transpose(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        chan, shape = self.chan(x), shape_of(x)
        if chan is None:
            self.state[node] = None
            return
        n = len(shape) if shape is not None else 0
        rest = [a for a in node.args[1:]]
        try:
            if name == "permute":
                dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else list(rest)
                order = [int(d) % n for d in dims]
                new = order.index(chan.dim)
            elif name == "t":
                new = 1 - chan.dim
            elif name == "movedim":
                src, dst = int(rest[0]) % n, int(rest[1]) % n
                order = [d for d in range(n) if d != src]
                order.insert(dst, src)
                new = order.index(chan.dim)
            else:
                a, b = int(rest[0]) % n, int(rest[1]) % n
                new = b if chan.dim == a else a if chan.dim == b else chan.dim
        except (TypeError, ValueError, IndexError, ZeroDivisionError):
            self.unknown(node, f"{name} with arguments that are not plain dims")
            return
        self._set(node, Chan(chan.element, new, chan.repeat))

    def _reduce(self, node: fx.Node) -> None:
        x = node.args[0]
        chan, shape = self.chan(x), shape_of(x)
        out_shape = shape_of(node)
        if chan is None:
            self.state[node] = None
            return
        if shape is None or out_shape is None:
            self.unknown(node, f"{op_name(node)} whose output is not one tensor")
            return
        dims = self._arg(node, 1, "dim")
        if dims is None or dims == []:
            self.state[node] = None  # a reduction over everything is invariant to any permutation
            return
        dims = [int(dims)] if isinstance(dims, int) else [int(d) for d in dims]
        dims = [d % len(shape) for d in dims]
        if chan.dim in dims:
            self.state[node] = None  # summing over the channels forgets their order: nothing to fix
            return
        if len(out_shape) == len(shape):  # keepdim
            self._set(node, chan)
            return
        self._set(node, Chan(chan.element, chan.dim - sum(d < chan.dim for d in dims), chan.repeat))

    def _concat(self, node: fx.Node, name: str) -> None:
        parts = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = self._arg(node, 1, "dim", 0)
        shape = shape_of(parts[0]) if parts else None
        chans = [self.chan(p) for p in parts]
        if shape is None or all(c is None for c in chans):
            self.state[node] = None
            return
        n = len(shape) + (1 if name == "stack" else 0)
        dim = int(dim) % n
        first = next(c for c in chans if c is not None)
        same = all(c is not None and c.dim == first.dim and c.repeat == first.repeat for c in chans)
        if not same or (name != "stack" and dim == first.dim):
            self.unknown(node, f"torch.{name} of several channel groups along the channels" if same else
                         f"torch.{name} of tensors that do not share their channel axis")
            return
        element = first.element
        for c in chans[1:]:
            element = self.elements.union(element, c.element)
        new = first.dim + (1 if name == "stack" and dim <= first.dim else 0)
        self._set(node, Chan(element, new, first.repeat))

    def _getitem(self, node: fx.Node) -> None:
        source, index = node.args[0], node.args[1]
        s = self.state.get(source)
        if isinstance(s, tuple) and isinstance(index, int):
            self._set(node, s[index] if index < len(s) else None)
            return
        if self.chan(source) is None:
            self.state[node] = None
            return
        self.unknown(node, "indexing a tensor that carries channels")


def reshaped_channels(in_shape: tuple[int, ...], out_shape: tuple[int, ...], chan: Chan) -> Chan | None:
    """Where ``chan`` lands after a row-major reshape, or None if the channels do not stay whole outer blocks.

    They stay when the dims before the channel dim keep their product, and the output dim there holds the
    channel dim merged with some of the following dims (a flatten: the repeat factor grows by their
    product) or exactly the channel dim.
    """
    before = math.prod(in_shape[: chan.dim])
    running, out_dim = 1, 0
    while out_dim < len(out_shape) and running < before:
        running *= out_shape[out_dim]
        out_dim += 1
    while out_dim < len(out_shape) and running == before and out_shape[out_dim] == 1 and in_shape[chan.dim] != 1:
        out_dim += 1  # a size-1 dim inserted before the channels
    if running != before or out_dim >= len(out_shape):
        return None
    size = in_shape[chan.dim]
    target = out_shape[out_dim]
    if target % size:
        return None
    merged, k = target // size, chan.dim + 1
    acc = 1
    while acc < merged and k < len(in_shape):
        acc *= in_shape[k]
        k += 1
    if acc != merged:
        return None
    return Chan(chan.element, out_dim, chan.repeat * merged)


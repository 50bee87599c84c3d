"""What every model of this project offers besides ``forward``, and helpers to declare it.

Models import nothing from ``matching`` but the spec type: the dependency points one way.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn
from torch.nn.modules.conv import _ConvNd

from matching.spec import PermutationSpec

# Sub-module names whose convolutions are residual shortcuts: kept dense by pruning, as the paper's code did.
SHORTCUT_NAMES = ("shortcut", "downsample")


@runtime_checkable
class PermutableModel(Protocol):
    def permutation_spec(self) -> PermutationSpec: ...

    def prunable_parameters(self) -> list[str]: ...


class SpecBuilder:
    """Collects a model's permutation spec layer by layer, reading shapes from the modules.

    ``layer(name, out, in_)`` declares a conv or linear layer: its weight gets ``out`` on
    axis 0 and ``in_`` on axis 1 (spatial axes unpermuted) and its bias, if any, ``out``.
    ``norm(name, group)`` declares a BatchNorm: its affine parameters and running statistics
    get ``group``. ``act(group, *modules)`` records modules whose output carries the group.
    """

    def __init__(self, model: nn.Module) -> None:
        self._modules = dict(model.named_modules())
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.activations: dict[str, list[str]] = {}

    def layer(self, name: str, out: str | None, in_: str | None) -> None:
        module = self._modules[name]
        if not isinstance(module, nn.Conv2d | nn.Linear):
            raise TypeError(f"{name} is a {type(module).__name__}, not a Conv2d or Linear")
        if out is None and in_ is None:
            return
        self.axes[f"{name}.weight"] = (out, in_) + (None,) * (module.weight.ndim - 2)
        if module.bias is not None and out is not None:
            self.axes[f"{name}.bias"] = (out,)

    def norm(self, name: str, group: str) -> None:
        module = self._modules[name]
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f"{name} is a {type(module).__name__}, not a BatchNorm")
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, attr, None) is not None:
                self.axes[f"{name}.{attr}"] = (group,)

    def act(self, group: str, *modules: str) -> None:
        for m in modules:
            if m not in self._modules:
                raise KeyError(f"no module named {m!r}")
        self.activations.setdefault(group, []).extend(modules)

    def build(self) -> PermutationSpec:
        activations = {g: list(m) for g, m in self.activations.items()}
        return PermutationSpec(axes=dict(self.axes), activations=activations)


def conv_linear_weights(model: nn.Module, exclude: tuple[str, ...] = SHORTCUT_NAMES) -> list[str]:
    """State-dict keys of every convolution (1-, 2-, 3-d) and Linear weight, skipping modules under any
    name in ``exclude``."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, _ConvNd | nn.Linear) and not set(name.split(".")) & set(exclude):
            names.append(f"{name}.weight")
    return names

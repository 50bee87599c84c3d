"""A plug-in ``model_type``: the path ``"package.module:ClassName"`` of a user's own model, imported and given
its constructor's arguments.

Generic import logic, below every floor that needs it: config validation (``utils.config``), the model
registry (``models.registry``, which builds the model) and ``python -m matching.derive`` (which derives a
plug-in's permutation spec) all take a plug-in path the same way.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

# A plug-in model_type: "package.module:ClassName" (dotted module path, a class name).
_PLUGIN = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")
# Constructor parameters that receive the dataset's input channels and class count, by the names common
# in model zoos (torchvision: num_classes; timm: in_chans, num_classes; MONAI and others: in_channels).
INPUT_CHANNEL_PARAMS = ("in_channels", "in_chans", "input_channels")
CLASS_COUNT_PARAMS = ("num_classes", "n_classes")


def is_plugin(name: Any) -> bool:
    """Whether ``name`` is written as a plug-in path ``package.module:ClassName`` (not whether it imports)."""
    return isinstance(name, str) and _PLUGIN.fullmatch(name) is not None


def resolve_plugin(path: str) -> Callable[..., Any]:
    """What a plug-in path names, imported: an nn.Module class, or a function that builds one (a model zoo's
    ``torchvision.models:resnet18``); ValueError with one line if it is neither.

    The working directory is searched too (after ``sys.path``), so a module of the user's own beside
    their config imports as ``my_model:Net`` however the runner was started.
    """
    if not is_plugin(path):
        raise ValueError(f"model_type {path!r} is not of the form 'package.module:ClassName'")
    module_name, class_name = path.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any failure to import is the user's to fix: say which
        raise ValueError(f"model_type {path!r}: cannot import module {module_name!r} "
                         f"({type(err).__name__}: {err})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"model_type {path!r}: module {module_name!r} has no attribute {class_name!r}")
    from torch import nn

    if isinstance(cls, type) and not issubclass(cls, nn.Module):
        raise ValueError(f"model_type {path!r}: {class_name} is not a torch.nn.Module subclass")
    if not callable(cls):
        raise ValueError(f"model_type {path!r}: {class_name} is neither a torch.nn.Module class nor a function")
    return cls


def plugin_arguments(path: str, model_kwargs: Mapping[str, Any], *, in_channels: int,
                     num_classes: int) -> dict[str, Any]:
    """The keyword arguments a plug-in class is built with: ``model_kwargs`` plus the dataset's input
    channels and class count under the constructor's own names for them. ValueError (one line) when
    they do not fit its signature, or ``model_kwargs`` gives a count the dataset contradicts."""
    cls = resolve_plugin(path)
    kwargs = dict(model_kwargs)
    signature = inspect.signature(cls)
    for names, value in ((INPUT_CHANNEL_PARAMS, in_channels), (CLASS_COUNT_PARAMS, num_classes)):
        for name in names:
            if name not in signature.parameters:
                continue
            if name in kwargs and kwargs[name] != value:
                raise ValueError(f"model_kwargs.{name}: {kwargs[name]!r}, but the dataset has {value}; "
                                 "leave it out (it is passed from the dataset)")
            kwargs[name] = value
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        params = ", ".join(signature.parameters)
        raise ValueError(f"model_kwargs: {cls.__name__}({params}) does not take them: {err}") from None
    return kwargs

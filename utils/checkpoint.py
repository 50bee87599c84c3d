"""Tensor checkpoints: safetensors files with a JSON side-car in their metadata.

Nothing is pickled: tensors go to safetensors, everything else (epoch numbers,
scheduler state, hyper-parameters) is JSON stored in the file's metadata, so a
checkpoint is one self-contained, atomically written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from utils.atomic import atomic_write

_META_KEY = "sparse_rebasin"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: Any = None) -> None:
    """Atomically write ``tensors`` (moved to CPU, made contiguous) plus JSON ``meta``."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    # safetensors refuses tensors that share storage; clone those few.
    seen: set[int] = set()
    for k, v in flat.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen:
            flat[k] = v.clone()
        seen.add(ptr)
    metadata = {_META_KEY: json.dumps(meta if meta is not None else {})}
    atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=metadata))


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], Any]:
    """Read a file written by :func:`save_tensors`: (tensors, meta)."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
        raw = (f.metadata() or {}).get(_META_KEY, "{}")
    return tensors, json.loads(raw)


def split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested state (lists, dicts) into ``tensors``.

    Returns the JSON-able skeleton with each tensor replaced by
    ``{"__tensor__": key}``; :func:`join_state` reverses it. This is how
    optimizer and scheduler states are stored without pickle.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        pairs = [[split_state(k, f"{prefix}.k{i}", tensors), split_state(v, f"{prefix}.{i}", tensors)]
                 for i, (k, v) in enumerate(obj.items())]
        return {"__dict__": pairs}
    if isinstance(obj, (list, tuple)):
        items = [split_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint at {prefix}")


def join_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {join_state(k, tensors): join_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__tuple__" in skeleton:
            return tuple(join_state(v, tensors) for v in skeleton["__tuple__"])
    if isinstance(skeleton, list):
        return [join_state(v, tensors) for v in skeleton]
    return skeleton

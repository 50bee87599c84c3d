"""Tensor checkpoints: safetensors files with a JSON side-car in their metadata.

Nothing is pickled: tensors go to safetensors, everything else (epoch numbers,
scheduler state, hyper-parameters) is JSON stored in the file's metadata, so a
checkpoint is one self-contained, atomically written file.

Every file also carries a sha256 of its tensors and metadata, checked on every
load: safetensors itself would happily return a tensor with a flipped byte, or
a training state whose ``epoch`` was edited, and the run would go on from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from utils.atomic import atomic_write
from utils.errors import UserError, storage_error

_META_KEY = "sparse_rebasin"
_SUM_KEY = "sparse_rebasin.sha256"


class DamagedFile(UserError):
    """A tensor file that cannot be read back as written (truncated, garbled, edited)."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why
        super().__init__(f"{path} is damaged ({why}); delete its folder {path.parent} to recompute it")


def tensors_digest(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of CPU tensors, and the metadata text."""
    h = hashlib.sha256(meta_json.encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


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
    meta_json = json.dumps(meta if meta is not None else {})
    metadata = {_META_KEY: meta_json, _SUM_KEY: tensors_digest(flat, meta_json)}
    try:
        atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=metadata))
    except Exception as err:
        storage = storage_error(err)  # a full disk as an OSError naming the file, not safetensors' own error type
        if storage is None or isinstance(err, OSError):
            raise
        raise OSError(storage.errno, storage.strerror, str(path)) from None


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], Any]:
    """Read a file written by :func:`save_tensors`: (tensors, meta), after checking its sha256.

    A file that is missing raises ``FileNotFoundError``; one that is truncated,
    garbled or edited raises :class:`DamagedFile` (one line naming the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    tensors: dict[str, torch.Tensor] = {}
    try:
        # Read on the CPU: the checksum is over host bytes; moving to the device comes after.
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
            metadata = f.metadata() or {}
        raw = metadata.get(_META_KEY, "{}")
        meta = json.loads(raw)
    except Exception as err:  # safetensors raises its own error types, and OSError for short reads
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise DamagedFile(path, f"unreadable: {first}") from None
    stored = metadata.get(_SUM_KEY)
    if stored is None:  # every file this project writes has one: a file without it was rewritten by hand
        raise DamagedFile(path, "it carries no checksum")
    if stored != tensors_digest(tensors, raw):
        raise DamagedFile(path, "checksum mismatch")
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, meta


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

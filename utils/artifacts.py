"""Artifacts keyed by the hash of the config part they depend on.

An artifact is a folder ``<save_path>/artifacts/<kind>-<hash>/`` holding its
files, ``result.json`` and ``manifest.json``. The manifest records the key
(the config part) and is marked complete last, atomically: a folder without a
complete manifest is work in progress that a rerun resumes. Configs sharing a
key share the artifact (the four sparsities of one width train dense A and B
once).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from utils.atomic import atomic_write_json
from utils.hashing import stable_hash


class Artifact:
    def __init__(self, save_path: str | Path, kind: str, key: dict[str, Any]):
        self.kind = kind
        self.key = key
        self.hash = stable_hash(key)
        self.dir = Path(save_path) / "artifacts" / f"{kind}-{self.hash}"

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.hash}"

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path("manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @property
    def complete(self) -> bool:
        m = self.manifest()
        return bool(m and m.get("complete"))

    def begin(self) -> None:
        """Create the folder and an incomplete manifest (kept if work is already in progress)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.manifest() is None:
            atomic_write_json(self.path("manifest.json"), {"kind": self.kind, "hash": self.hash,
                                                           "complete": False, "key": self.key})

    def finish(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.path("result.json"), result)
        atomic_write_json(self.path("manifest.json"), {"kind": self.kind, "hash": self.hash,
                                                       "complete": True, "key": self.key})

    def result(self) -> dict[str, Any]:
        return json.loads(self.path("result.json").read_text())

    def remove_file(self, filename: str) -> None:
        p = self.path(filename)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

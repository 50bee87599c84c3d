"""Artifacts: the nodes of the experiment's graph, each a folder keyed by what made it.

An artifact is ``<save_path>/artifacts/<kind>-<hash>/``. Its hash is that of
its own typed settings plus its parents' hashes (open_lth's ``Desc`` idea), so
an artifact changes exactly when something it depends on changes. The folder
holds its files, ``result.json`` and ``manifest.json``; the manifest, written
last and atomically, marks it complete and lists every file with its size and
sha256. A folder without a complete manifest is work in progress that a rerun
resumes.

Making an artifact holds its lock (``artifacts/.locks/<name>.lock``): a second
process that needs it waits, then reuses it. Reusing verifies it: every file's
size always, and its sha256 on first use in a process (or always with
``VERIFY_ALWAYS``), so a damaged file is one clear line, never a silent wrong
number.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from utils import distributed
from utils.atomic import atomic_write_json, is_temp_file, sweep_temp_files
from utils.checkpoint import DamagedFile, load_tensors
from utils.errors import UserError
from utils.hashing import stable_hash
from utils.locks import exclusive
from utils.provenance import provenance

MANIFEST = "manifest.json"
# Files that exist only while an artifact is being made (resumable state, and which experiment-tracking runs
# its trainings log to, so a resumed training continues them); never part of a manifest.
TRACKING_STATE = "tracking_state.json"
SCRATCH = ("train_state.safetensors", "round_state.safetensors", TRACKING_STATE)
VERIFY_ALWAYS = False  # hash every file of every artifact used (the --verify flag), not only on first use
_deep_verified: set[str] = set()


class ArtifactDamaged(UserError):
    pass


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class Artifact:
    """One node of the graph; cheap to construct (no IO), so plans and keys can be computed freely."""

    def __init__(self, save_path: str | Path, kind: str, settings: dict[str, Any],
                 parents: dict[str, Artifact] | None = None, origin: Any = None):
        self.kind = kind
        # The (config, run seed) whose graph built this node: where its maker gets its data, model class and
        # device from (phases/stages.py). Not part of the key: two configs that build the same node share it.
        self.origin = origin
        self.settings = settings
        self.parents = dict(parents or {})
        self.key = {"kind": kind, "settings": settings, "parents": {n: p.hash for n, p in self.parents.items()}}
        self.hash = stable_hash(self.key)
        self.save_path = Path(save_path)
        self.dir = self.save_path / "artifacts" / f"{kind}-{self.hash}"

    def __repr__(self) -> str:
        return f"Artifact({self.name})"

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.hash}"

    @property
    def lock_path(self) -> Path:
        return self.save_path / "artifacts" / ".locks" / f"{self.name}.lock"

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def damaged(self, why: str) -> ArtifactDamaged:
        return ArtifactDamaged(f"artifact {self.dir} is damaged ({why}); delete that folder to recompute it")

    # ------------------------------------------------------------- state

    def manifest(self) -> dict[str, Any] | None:
        """The manifest, None while absent; a manifest that cannot be read is damage, not absence."""
        path = self.path(MANIFEST)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
            if not isinstance(manifest, dict):
                raise ValueError("not a mapping")
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise self.damaged(f"{MANIFEST} is not valid JSON") from None
        return manifest

    @property
    def complete(self) -> bool:
        m = self.manifest()
        return bool(m and m.get("complete"))

    def begin(self) -> None:
        """Create the folder (holding the lock) and an incomplete manifest; clear a killed writer's temp files."""
        if not distributed.is_main():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        sweep_temp_files(self.dir)
        if self.manifest() is None:
            atomic_write_json(self.path(MANIFEST), {**self._header(), "complete": False,
                                                    "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    def _header(self) -> dict[str, Any]:
        return {"kind": self.kind, "hash": self.hash, "settings": self.settings,
                "parents": {n: p.name for n, p in self.parents.items()}}

    def _file_entries(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        if names is None:
            names = sorted(p.name for p in self.dir.iterdir()
                           if p.is_file() and p.name != MANIFEST and p.name not in SCRATCH and not is_temp_file(p))
        out = {}
        for name in names:
            p = self.path(name)
            out[name] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
        return out

    def finish(self, result: dict[str, Any], **extra: Any) -> None:
        """Write ``result.json`` and the complete manifest listing every file with size and sha256."""
        if not distributed.is_main():
            return
        atomic_write_json(self.path("result.json"), result)
        old = self.manifest() or {}
        manifest = {**self._header(), "complete": True, "started": old.get("started"),
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "provenance": provenance(), **extra,
                    "files": self._file_entries()}
        atomic_write_json(self.path(MANIFEST), manifest)
        _deep_verified.add(str(self.dir))
        for name in SCRATCH:
            self.remove_file(name)

    def add_files(self, names: list[str], **updates: Any) -> None:
        """Record files added to a complete artifact (e.g. a new rewind checkpoint); hold the lock."""
        if not distributed.is_main():
            return
        manifest = self.manifest() or {}
        files = dict(manifest.get("files", {}))
        files.update(self._file_entries(names))
        atomic_write_json(self.path(MANIFEST), {**manifest, **updates, "files": files})

    # -------------------------------------------------------- verification

    def verify(self, deep: bool | None = None) -> None:
        """Check every file of the manifest: present, same size, and (deep) same sha256.

        ``deep=None`` hashes on the first use in this process, or always when
        :data:`VERIFY_ALWAYS` is set.
        """
        manifest = self.manifest()
        if not manifest or not manifest.get("complete"):
            raise UserError(f"artifact {self.dir} is not complete")
        if deep is None:
            deep = VERIFY_ALWAYS or str(self.dir) not in _deep_verified
        for name, entry in manifest.get("files", {}).items():
            p = self.path(name)
            if not p.is_file():
                raise self.damaged(f"{name} is missing")
            if p.stat().st_size != entry["size"]:
                raise self.damaged(f"{name} has {p.stat().st_size} bytes, the manifest says {entry['size']}")
            if deep and file_sha256(p) != entry["sha256"]:
                raise self.damaged(f"{name} does not match its sha256")
        if deep:
            _deep_verified.add(str(self.dir))

    # -------------------------------------------------------------- reading

    def result(self) -> dict[str, Any]:
        """``result.json``, checked against the manifest's sha256 on its first read in this process."""
        path = self.path("result.json")
        key = str(path)
        if key not in _deep_verified and path.exists():
            entry = ((self.manifest() or {}).get("files") or {}).get("result.json")
            if entry and file_sha256(path) != entry["sha256"]:
                raise self.damaged("result.json does not match its sha256")
            _deep_verified.add(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise self.damaged("result.json is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self.damaged("result.json is not valid JSON") from None

    def tensors(self, filename: str, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], Any]:
        """Load one of its tensor files; a missing or damaged file is one line naming this folder."""
        try:
            return load_tensors(self.path(filename), device=device)
        except FileNotFoundError:
            raise self.damaged(f"{filename} is missing") from None
        except DamagedFile as err:
            raise self.damaged(f"{filename}: {err.why}") from None

    def remove_file(self, filename: str) -> None:
        if not distributed.is_main():
            return
        p = self.path(filename)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    # --------------------------------------------------------------- making

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Its exclusive lock. Under torchrun rank 0 takes it, and every rank enters and leaves together."""
        if not distributed.active():
            with exclusive(self.lock_path, self.name):
                yield
            return
        with exclusive(self.lock_path, self.name) if distributed.is_main() else nullcontext():
            distributed.barrier()  # the other ranks wait here while rank 0 waits for the lock
            yield
            distributed.barrier()  # and rank 0 keeps it until every rank is done with the artifact

    def make_once(self, make: Callable[[Artifact], None], label: str) -> Artifact:
        """Reuse this artifact when complete; otherwise make it, holding its lock.

        ``make(self)`` must end with :meth:`finish`. A process that waited for
        another's lock reuses what that one made instead of making it again.
        """
        if distributed.broadcast(self.complete):
            self.verify()
            print(f"{label} reusing {self.dir}", flush=True)
            return self
        with self.lock():
            # Under torchrun, rank 0's view decides for all ranks: they either all reuse or all train.
            if distributed.broadcast(self.complete):  # made by the process we waited for
                self.verify()
                print(f"{label} reusing {self.dir} (made by another process meanwhile)", flush=True)
                return self
            self.begin()
            print(f"{label} making {self.dir}", flush=True)
            make(self)
            distributed.barrier()  # rank 0 has written the files before any rank reads them
            if not self.complete:
                raise RuntimeError(f"{label}: the step did not finish its artifact {self.dir}")
        return self

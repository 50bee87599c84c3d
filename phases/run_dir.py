"""Where a (config, seed) keeps its run directory: ``<save_path>/<label>-<config hash>/seed_<N>``.

The hash is ``phases.identity.config_hash``. Run directories written before it
was derived from artifact keys carry another hash (``phases/legacy_run_dirs.py``);
the first command of the config that finds one renames it to the new name.
"""

from __future__ import annotations

import os
from pathlib import Path

from phases.identity import config_hash
from phases.legacy_run_dirs import legacy_run_dir_name
from utils.config import Config
from utils.locks import exclusive

RESULTS_LOCK = ".results.lock"  # a run directory's lock: held while its files are rewritten (phases/results.py)
RENAME_LOCK = ".run_dir_rename.lock"  # the save_path's: one process renames an old run directory


def run_dir_name(label: str, cfg: Config) -> str:
    """``<label>-<config hash>``: two configs that compute different things never share a run directory."""
    return f"{label}-{config_hash(cfg)}"


def legacy_run_dir(save_path: Path, label: str, cfg: Config, seed: int) -> Path:
    """The run directory as it was named before artifact keys named it (it may not exist)."""
    return save_path / legacy_run_dir_name(label, cfg) / f"seed_{seed}"


def existing_run_dir(save_path: Path, label: str, cfg: Config, seed: int) -> Path:
    """The run directory to read: the new name, or the old one while nothing has renamed it yet."""
    new = save_path / run_dir_name(label, cfg) / f"seed_{seed}"
    if new.exists():
        return new
    old = legacy_run_dir(save_path, label, cfg, seed)
    return old if old.is_dir() else new


def adopt_run_dir(save_path: Path, label: str, cfg: Config, seed: int) -> Path:
    """The run directory of (cfg, seed), renamed from its old name when only that one exists.

    Renamed under the save_path's rename lock (one process renames, the others
    then find the new name) and the old directory's own lock (no writer is
    rewriting its files meanwhile); ``os.rename`` is atomic. Its results.json
    gets the new config hash when it is next written.
    """
    new = save_path / run_dir_name(label, cfg) / f"seed_{seed}"
    if new.exists():
        return new
    old = legacy_run_dir(save_path, label, cfg, seed)
    if old == new or not old.is_dir():
        return new
    with exclusive(save_path / RENAME_LOCK, f"renaming run directories under {save_path}"), \
            exclusive(old / RESULTS_LOCK, f"the run directory {old}"):
        if old.is_dir() and not new.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            os.rename(old, new)
            print(f"[run dir] renamed {old} to {new} (run directories are named by their artifacts' keys now)",
                  flush=True)
            try:
                old.parent.rmdir()  # the config's other seeds are renamed when they run; an empty folder goes
            except OSError:
                pass
    return new

"""Everything a phase step needs: config, seed, device, data, paths, logging."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from data import DataBundle, DatasetNotFound, build_data
from models import build_model
from phases.mask_source import mask_owner
from phases.run_dir import adopt_run_dir
from tracking import Tracker
from training.device import prepare_model
from training.metrics import MetricsLog
from utils.artifacts import Artifact
from utils.checkpoint import save_tensors
from utils.config import Config
from utils.errors import UserError
from utils.hashing import stable_hash
from utils.provenance import set_device
from utils.seeding import seed_everything


def _identity(cfg: Config) -> str:
    return stable_hash({**cfg.to_dict(), "seed": None})


def _data_identity(cfg: Config) -> tuple:
    return (cfg.dataset, repr(cfg.data_root), cfg.batch_size, cfg.download, cfg.num_workers, cfg.train_subset,
            cfg.test_subset, cfg.normalization)


@dataclass
class RunContext:
    cfg: Config
    seed: int
    device: torch.device
    label: str  # names the run directory (with the config hash): the config's path, or "demo"
    command: str  # how to rerun phase 1, quoted in messages
    progress: bool | None = None
    config_path: str | None = None  # as given on the command line; None for the demo
    verbose: bool = False  # e.g. every layer's density after each IMP round
    _data: DataBundle | None = field(default=None, repr=False)
    _owner: RunContext | None = field(default=None, repr=False)
    _derived: dict[tuple[str, int], RunContext] = field(default_factory=dict, repr=False)
    _run_dir: Path | None = field(default=None, repr=False)  # found (and adopted) once: its hash walks the graph
    # The config's experiment tracking (inactive without `tracking`); made here, so a backend that could not log
    # (not installed, wandb without credentials) stops the run before any training.
    tracker: Tracker = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_device(self.device)  # what manifests and results.json record as the device
        self.tracker = Tracker.for_run(self.cfg, self.seed, self.run_dir)

    def owner(self) -> RunContext:
        """The context that makes dense A and IMP: this one, or under ``pruning.mask_from`` the source config's
        (its data and settings, this run's device), made once so its data loads once."""
        if self._owner is None:
            cfg, seed = mask_owner(self.cfg, self.seed)
            self._owner = self if cfg is self.cfg else RunContext(
                cfg=cfg, seed=seed, device=self.device, label=f"{self.label}.mask_source", command=self.command,
                progress=self.progress, config_path=self.cfg.pruning.mask_from.config, verbose=self.verbose)
        return self._owner

    def at(self, origin: tuple[Config, int] | None) -> RunContext:
        """The context that makes an artifact whose graph was built from ``origin`` = (config, run seed).

        This one; the mask owner's (``pruning.mask_from``); or, for a study's
        artifacts of another run seed or config (an ensemble member's dense B, the
        mask-transfer study's own config), one made once, sharing this data when
        the data settings are the same.
        """
        if origin is None or (origin[0] is self.cfg and origin[1] == self.seed):
            return self
        key = (_identity(origin[0]), origin[1])
        if key == (_identity(self.cfg), self.seed):
            return self
        owner = self.owner()
        if owner is not self and key == (_identity(owner.cfg), owner.seed):
            return owner
        if key not in self._derived:
            cfg, seed = origin
            sub = replace(self, cfg=cfg, seed=seed, _owner=None, _derived={}, _run_dir=None)
            if _data_identity(cfg) == _data_identity(self.cfg):
                sub._data = self.data  # one load of the same data
            self._derived[key] = sub
        return self._derived[key]

    @property
    def save_path(self) -> Path:
        return Path(self.cfg.save_path)

    @property
    def run_dir(self) -> Path:
        """``<save_path>/<label>-<config hash>/seed_<N>`` (``phases/run_dir.py``), renamed from its old name if
        only that exists."""
        if self._run_dir is None:
            self._run_dir = adopt_run_dir(self.save_path, self.label, self.cfg, self.seed)
        return self._run_dir

    @property
    def data(self) -> DataBundle:
        if self._data is None:
            try:
                self._data = build_data(
                    self.cfg.dataset, self.cfg.data_root, batch_size=self.cfg.batch_size, device=self.device,
                    download=self.cfg.download, num_workers=self.cfg.num_workers,
                    train_subset=self.cfg.train_subset, test_subset=self.cfg.test_subset,
                    normalization=self.cfg.normalization)
            except DatasetNotFound as err:
                raise UserError(str(err)) from None
            except ValueError as err:  # e.g. a batch larger than the (sub)set, a malformed file
                raise UserError(f"dataset {self.cfg.dataset!r}: {err}") from None
        return self._data

    def new_model(self, init_seed: int) -> nn.Module:
        """A freshly initialised model; the same ``init_seed`` gives the same weights."""
        seed_everything(init_seed)
        return prepare_model(build_model(self.cfg), self.device)

    def load_model(self, art: Artifact, filename: str) -> nn.Module:
        """A model holding the state stored in ``filename`` of ``art`` (checked against its sha256)."""
        model = self.new_model(0)
        tensors, _ = art.tensors(filename, device=self.device)
        model.load_state_dict(tensors)
        return model

    def save_model(self, path: Path, model: nn.Module, meta: dict | None = None) -> None:
        save_tensors(path, model.state_dict(), meta)

    def metrics_for(self, artifact_dir: Path) -> MetricsLog:
        return MetricsLog(artifact_dir / "metrics.jsonl", mirror=self.tracker.mirror(artifact_dir))

    def step_fn(self, model: nn.Module):
        """The compiled forward when ``compile: true`` (CUDA pays it back; on CPU it rarely does)."""
        return torch.compile(model) if self.cfg.compile else None

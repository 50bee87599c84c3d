"""Where and how sweep jobs run: Slurm resources, or local concurrency, from a YAML ``launcher:`` section and flags."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.config import ConfigError
from utils.safe_yaml import YamlRefused, read_yaml_file


@dataclass
class Launcher:
    executor: str = "local"  # local | slurm
    # Slurm: one job per artifact (arrays for jobs that share their dependencies)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    time_min: int = 24 * 60  # per job; a job that hits it is requeued and resumes from its last epoch
    signal_delay_s: int = 120  # how long before the limit Slurm warns the job (submitit checkpoints then)
    array_throttle: int = 64  # at most this many tasks of one array at once
    max_requeues: int = 30
    sbatch: dict[str, str] = field(default_factory=dict)  # extra #SBATCH directives, e.g. {constraint: a100}
    # local: N jobs at once, each optionally pinned to one GPU
    jobs: int = 1
    gpus: list[int] = field(default_factory=list)

    def check(self) -> None:
        if self.executor not in ("local", "slurm"):
            near = difflib.get_close_matches(self.executor, ["local", "slurm"], n=1)
            raise ConfigError(f"unknown executor {self.executor!r}; choose local or slurm"
                              + (f" (did you mean {near[0]!r}?)" if near else ""))
        for key in ("jobs", "time_min", "array_throttle"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"launcher.{key}: must be positive, got {getattr(self, key)}")
        for key in ("gpus_per_job", "signal_delay_s", "max_requeues"):
            if getattr(self, key) < 0:
                raise ConfigError(f"launcher.{key}: must be >= 0, got {getattr(self, key)}")
        if self.cpus_per_job is not None and self.cpus_per_job <= 0:
            raise ConfigError(f"launcher.cpus_per_job: must be positive, got {self.cpus_per_job}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ConfigError(f"launcher.mem_gb: must be positive, got {self.mem_gb}")


_TYPES = {"executor": str, "partition": str, "account": str, "qos": str, "gpus_per_job": int, "cpus_per_job": int,
          "mem_gb": float, "time_min": int, "signal_delay_s": int, "array_throttle": int, "max_requeues": int,
          "sbatch": dict, "jobs": int, "gpus": list}


def launcher_from_dict(raw: dict[str, Any], where: str = "launcher") -> Launcher:
    names = [f.name for f in dataclasses.fields(Launcher)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            raise ConfigError(f"unknown {where} key '{key}'" + (f"; did you mean '{near[0]}'?" if near else ""))
        want = _TYPES[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if value is None and key in ("partition", "account", "qos", "cpus_per_job", "mem_gb"):
            ok = True
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {want.__name__}, got {value!r}")
        values[key] = value
    if "sbatch" in values:
        values["sbatch"] = {str(k): str(v) for k, v in values["sbatch"].items()}
    launcher = Launcher(**values)
    launcher.check()
    return launcher


def load_launcher(path: str | Path) -> dict[str, Any]:
    """The ``launcher:`` section of a YAML file (or the whole file when it has no such section)."""
    p = Path(path)
    try:
        raw = read_yaml_file(p, "launcher file") or {}
    except YamlRefused as err:
        raise ConfigError(str(err)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping with a 'launcher:' section")
    section = raw.get("launcher", raw)
    if not isinstance(section, dict):
        raise ConfigError(f"{p}: 'launcher' must be a mapping")
    return section

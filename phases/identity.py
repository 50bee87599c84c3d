"""The run directory's identity: what the main experiment of a config computes, read off its artifacts' keys.

Two configs share a run directory exactly when the main experiment's
artifacts (``graph.run_artifacts``: dense A and B, IMP, pi, pi(M_A),
interpolation and the sparse runs) have the same keys, each key holding its
settings and its parents' keys. No list of config names says what counts: a
setting counts when some artifact's settings hold it. Three things are held
fixed so that they never count:

* the run seed (``REFERENCE_SEED``): a run directory holds one folder per seed;
* which rewind points, and which sparse runs, a config asks for: rows of the
  same run directory. The identity reads the sparse runs of every run type
  (``graph.every_run``) at one rewind point (``REFERENCE_REWIND``), so the
  settings of those rows count, whichever rows the config names;
* studies: they add artifacts of their own, never change a main one.
"""

from __future__ import annotations

from phases import graph
from utils.artifacts import Artifact
from utils.config import Config
from utils.hashing import stable_hash

REFERENCE_SEED = 0
REFERENCE_REWIND = 0


def identity_artifacts(cfg: Config) -> list[Artifact]:
    """The artifacts whose keys name ``cfg``'s run directory."""
    return list(graph.run_artifacts(graph.every_run(cfg), REFERENCE_SEED, [REFERENCE_REWIND]).values())


def config_hash(cfg: Config) -> str:
    """Identifies what a config computes: run directories are ``<label>-<config hash>``, and ``analysis.table``
    groups a config's seeds by it."""
    return stable_hash(sorted(a.name for a in identity_artifacts(cfg)), 10)

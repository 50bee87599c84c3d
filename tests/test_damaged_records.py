"""Damaged result files and sweep records: the analysis commands and ``sweep status`` stop with one line.

A results.json or a sweep record that is binary, truncated, empty, or of another shape than the runner
writes (edited by hand, copied half-way) must not give a traceback, nor a table silently short of a seed,
nor a section with no numbers: one ``error:`` line naming the file, exit status 2, nothing written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.results_file import DamagedResults
from analysis.table import find_runs
from sweep.status import read_records
from utils.errors import UserError

REPO = Path(__file__).resolve().parent.parent
GOOD = {"config_hash": "0123456789", "seed": 0, "config": "tiny", "rewind_convention": "epochs",
        "dense": {"A": {"accuracy": 80.0, "loss": 0.5}, "B": {"accuracy": 81.0, "loss": 0.5}},
        "imp": {"sparsity": 0.5, "accuracy": 79.0, "loss": 0.6, "rounds": 3},
        "sparse": {"0": {"lth": {"accuracy": 70.0, "loss": 0.9}, "naive": {"accuracy": 60.0, "loss": 1.1},
                         "permuted": {"accuracy": 65.0, "loss": 1.0}}}}
DAMAGED = [
    ('{"sparse": [1, 2], "dense": null}', "'dense' is NoneType, not a mapping"),
    ("{}", "holds no results (none of config, config_hash, dense, imp, matching, seed, sparse)"),
    ('{"note": "edited"}', "holds no results"),
    ("[]", "expected a JSON object, got list"),
    ("", "not valid JSON"),
    (json.dumps(GOOD)[:60], "not valid JSON"),  # truncated
    (b"\x00\x9f\x92\x96 binary", "not a text file"),
    (json.dumps({**GOOD, "sparse": [1, 2]}), "'sparse' is list, not a mapping of rewind points"),
    (json.dumps({**GOOD, "sparse": {"0": {"lth": {"accuracy": "high"}}}}), "sparse.0.lth has no finite accuracy"),
    (json.dumps({**GOOD, "sparse": {"zero": {}}}), "sparse: 'zero' is not a rewind point"),
    (json.dumps({**GOOD, "dense": {"A": 80.0}}), "dense.A has no finite accuracy"),
    (json.dumps({**GOOD, "imp": [0.5]}), "'imp' has no finite accuracy and sparsity"),
    (json.dumps({**GOOD, "matching": {"curve_before": "flat"}}), "matching.curve_before is not a list of points"),
]


def write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def command(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})


def one_error_line(proc: subprocess.CompletedProcess, *expected: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def runs(tmp_path) -> Path:
    """A save_path with one good seed of a config and a second seed whose results.json each test damages."""
    write(tmp_path / "runs" / "tiny-0123456789" / "seed_0" / "results.json", json.dumps(GOOD))
    return tmp_path / "runs"


def test_a_good_results_file_makes_a_table(runs):
    proc = command(runs.parent, "-m", "analysis.table", str(runs))
    assert proc.returncode == 0, proc.stderr
    assert "70.00" in proc.stdout and "65.00" in proc.stdout


@pytest.mark.parametrize(("content", "why"), DAMAGED, ids=[why for _, why in DAMAGED])
def test_every_kind_of_damage_is_named(runs, content, why):
    damaged = runs / "tiny-0123456789" / "seed_1" / "results.json"
    write(damaged, content)
    with pytest.raises(DamagedResults) as err:
        find_runs(runs)
    message = str(err.value)
    assert message.startswith(f"{damaged}: {why}") and "\n" not in message, message


@pytest.mark.parametrize(("content", "why"), [DAMAGED[0], DAMAGED[5]], ids=["dense-null", "binary"])
def test_damaged_results_stop_the_table_with_one_line(runs, content, why):
    damaged = runs / "tiny-0123456789" / "seed_1" / "results.json"
    write(damaged, content)
    proc = command(runs.parent, "-m", "analysis.table", str(runs), "--csv", "out.csv")
    one_error_line(proc, str(damaged), why, "rerun that seed's experiment.py command")
    assert proc.stdout == "" and not (runs.parent / "out.csv").exists()


@pytest.mark.parametrize("module", ["analysis.plot", "analysis.compare"])
@pytest.mark.parametrize(("content", "why"), DAMAGED[:2], ids=["dense-null", "empty-object"])
def test_damaged_results_stop_the_figures_and_the_comparison(runs, module, content, why):
    damaged = runs / "tiny-0123456789" / "seed_1" / "results.json"
    write(damaged, content)
    before = sorted(runs.parent.rglob("*"))
    proc = command(runs.parent, "-m", module, str(runs))
    one_error_line(proc, str(damaged), why)
    assert sorted(runs.parent.rglob("*")) == before


RECORD = {"created": "2026-01-01 00:00:00", "argv": [], "executor": "local", "targets": [], "jobs": {}}
BAD_RECORDS = [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file"),
    (json.dumps(RECORD)[:30], "not valid JSON"),  # truncated
    ("", "(empty)"),
    ("[1, 2]", "not a mapping with 'jobs' and 'targets'"),
    (json.dumps({**RECORD, "targets": [{"label": "x"}]}), "a target lacks its label, config or seed"),
    (json.dumps({**RECORD, "jobs": {"dense_A": "done"}}), "a job entry is not a mapping"),
]


@pytest.mark.parametrize(("content", "why"), BAD_RECORDS, ids=[why for _, why in BAD_RECORDS])
def test_damaged_sweep_record_is_named(tmp_path, content, why):
    records = tmp_path / "runs" / "sweep" / "records"
    write(records / "20260101-000000-1.json", json.dumps(RECORD))  # a good (empty) record beside it
    write(records / "20260102-000000-2.json", content)
    with pytest.raises(UserError) as err:
        read_records(tmp_path / "runs")
    assert str(err.value).startswith(f"sweep record {records / '20260102-000000-2.json'} is damaged") \
        and why in str(err.value), str(err.value)


@pytest.mark.parametrize(("content", "why"), BAD_RECORDS[:3], ids=["binary", "truncated", "empty"])
def test_damaged_sweep_record_stops_status_with_one_line(tmp_path, content, why):
    records = tmp_path / "runs" / "sweep" / "records"
    write(records / "20260102-000000-2.json", content)
    proc = command(tmp_path, "-m", "sweep", "status", str(tmp_path / "runs"))
    one_error_line(proc, f"sweep record {records / '20260102-000000-2.json'} is damaged", why,
                   "delete it and rerun the sweep command")
    assert proc.stdout == ""

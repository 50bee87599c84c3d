"""``python -m sweep status`` on the paper's grid: one line per (config, seed), fitting a screen per 50 pairs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sweep import cli
from sweep.executors import Record
from sweep.plan import build_plan
from sweep.status import log_path
from sweep.targets import make_targets

REPO = Path(__file__).resolve().parent.parent


def test_paper_grid_status_is_one_line_per_config_and_seed(tmp_path, capsys):
    save = tmp_path / "runs"
    args = cli.build_parser().parse_args([str(REPO / "configs" / "config_*_*.yaml"), "-seeds", "0-2",
                                          "-save_path", str(save)])
    targets, _ = make_targets(cli.expand_configs(args.configs), [0, 1, 2], args)
    plan = build_plan(targets)
    Record(save, plan, "slurm")  # as a sweep leaves it right after submitting, its jobs not yet started
    assert cli.main(["status", str(save)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(targets) == 48 and len(lines) == 48 + 2  # a header, one line per pair, the totals
    assert lines[0] == f"48 (config, seed) pairs under {save}"
    per_pair = [re.fullmatch(r"configs__config_(\d+)_(\d+)-[0-9a-f]{10}/seed_(\d)\s+0/(\d+) done  (\d+) missing",
                             line) for line in lines[1:-1]]
    # 6 phase-1 artifacts + 3 sparse runs x 9 rewind points each, none made yet.
    assert all(per_pair) and {m.group(4) for m in per_pair} == {"33"} == {m.group(5) for m in per_pair}
    # The 48 pairs share artifacts (dense A/B, pi per width and seed): the totals count each once.
    assert lines[-1] == f"totals over {len(plan.jobs)} distinct artifacts: {len(plan.jobs)} missing"
    assert json.loads(next((save / "sweep" / "records").glob("*.json")).read_text())["jobs"]


def test_a_log_path_is_read_under_the_save_path_given(tmp_path):
    save = tmp_path / "copy"
    (save / "sweep" / "logs" / "7").mkdir(parents=True)
    (save / "sweep" / "logs" / "7" / "7_0_log.out").write_text("x")
    assert log_path(save, "sweep/logs/7/7_0_log.out") == save / "sweep/logs/7/7_0_log.out"
    # An older record's absolute path into the original save_path: the same file under this one.
    assert log_path(save, "/elsewhere/runs/sweep/logs/7/7_0_log.out") == save / "sweep/logs/7/7_0_log.out"
    assert log_path(save, None) is None

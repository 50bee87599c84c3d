"""The benchmarks run (tiny sizes) and the RESULTS writer produces its tables; no timing is asserted."""

from __future__ import annotations

import json

from benchmarks import (
    bench_activation_matching,
    bench_demo,
    bench_paper_table,
    bench_threads,
    bench_training,
    bench_weight_matching,
    bench_zoo_recovery,
    gpu_bench,
    run_all,
)
from benchmarks.common import machine


def _load(path) -> dict:
    section = json.loads(path.read_text())
    assert section["tables"] and all(t["rows"] for t in section["tables"])
    return section


def test_training_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "training.json"
    bench_training.main(["--tiny", "--no-compile", "--json", str(out)])
    section = _load(out)
    variants = {row[0] for row in section["tables"][0]["rows"]}
    assert {"ours dense", "ours masked", "original dense", "original masked"} <= variants
    assert {c["figure"] for c in section["checks"]} >= {"training speed, ours / original (dense)",
                                                        "masked / dense epoch time (ours)"}


def test_threads_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "threads.json"
    bench_threads.main(["--tiny", "--json", str(out)])
    _load(out)


def test_activation_matching_benchmark_gives_identical_permutations(tmp_path):
    out = tmp_path / "am.json"
    bench_activation_matching.main(["--tiny", "--json", str(out)])
    section = _load(out)
    assert all(section["data"]["identical"].values())
    assert section["data"]["prefix_flops_ratio"] > 1.0


def test_weight_matching_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "wm.json"
    bench_weight_matching.main(["--tiny", "--starts", "--json", str(out)])
    section = _load(out)
    assert section["tables"][0]["rows"][0][0] == "ResNet20x1"
    before, now = section["tables"][1]["rows"][0][4:6]  # objectives: the kept descent is never worse
    assert now >= before


def test_zoo_recovery_benchmark_reports_exact_recovery_tiny(tmp_path):
    out = tmp_path / "zoo.json"
    bench_zoo_recovery.main(["--tiny", "--json", str(out)])
    (row,) = _load(out)["data"]["rows"]
    assert row[0] == "mobilenet_v3_small" and abs(row[7] - 1) < 1e-9 and row[8] and row[11]


def test_demo_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "demo.json"
    bench_demo.main(["--tiny", "--json", str(out)])
    assert _load(out)["data"]["seconds"] > 0


def test_paper_table_counts_shared_dense_models(tmp_path):
    out = tmp_path / "table.json"
    bench_paper_table.main(["--configs", str(tmp_path), "--json", str(out)])  # no configs: paper settings
    section = _load(out)
    row = section["tables"][0]["rows"][0]
    assert row[0] == "ResNet20x1" and row[2] == 2  # one dense A and one B for the four sparsities
    # Original: 8 + 11 + 13 + 16 IMP rounds of 50 epochs and dense 2 x 200 per config. Ours: dense once,
    # and the 97% chain's 16 rounds plus the capped last rounds of 80% and 90% (95% is a prefix of 97%).
    assert row[5] == 18 * 50 and row[6] == 48 * 50 and row[7] == 400 + 900 and row[8] == 1600 + 2400
    bench_paper_table.main([])  # and the repository's configs load


def test_gpu_bench_runs_on_cpu_tiny(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu_bench.main(["--device", "cpu", "--tiny", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert "ResNet20x1 eager" in results and results["end_to_end_s"] > 0


def test_results_writer_produces_tables(tmp_path):
    section = {"name": "x", "title": "X bench", "notes": ["a note"], "data": {},
               "tables": [{"title": "T", "columns": ["a", "b"], "rows": [["r", 1.5]]}],
               "checks": [{"figure": "speed", "measured": 0.5, "unit": "x", "target": ">= 1", "met": False,
                           "note": "why"}]}
    text = run_all.results_markdown(machine(1), [section], "python -m benchmarks.run_all", 60.0, [1.0, 1.0, 1.0])
    assert "## Machine" in text and machine(1)["cpu"] in text
    assert "| speed | 0.50 x | >= 1 | **missed** | why |" in text
    assert "| r | 1.50 |" in text and "## X bench" in text


def test_run_all_writes_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert run_all.main(["--tiny", "--only", "bench_paper_table", "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Every figure against its target" in text and "ResNet20x1" in text
    # Sections measured by hand (below the marker) survive a rewrite; the generated part is replaced.
    out.write_text(text.replace("ResNet20x1", "STALE") + f"\n{run_all.HAND_MARKER} -->\n\n## 9. By hand\n")
    assert run_all.main(["--tiny", "--only", "bench_paper_table", "--out", str(out)]) == 0
    again = out.read_text()
    assert "STALE" not in again and again.count("## 9. By hand") == 1 and again.count(run_all.HAND_MARKER) == 1

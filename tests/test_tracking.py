"""Experiment tracking: wandb (offline) and TensorBoard mirror metrics.jsonl, resume after kills, never block a run.

One module-scoped run does all the training: a tiny config with both backends
on, killed twice (in dense A right after an epoch was logged, and in IMP's
second round) and rerun to the end, so the curves read back here are those of
a resumed run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from phases.identity import config_hash
from tests.test_pipeline import run, run_dir, tiny_config
from tests.wandb_files import offline_runs
from tracking import Tracker, check_tracking, log_table
from tracking.preflight import TrackingUnavailable, has_wandb_credentials, wandb_mode
from tracking.tracker import RunInfo
from training import loop as training_loop
from training.metrics import MetricsLog, read_metrics
from utils.config import ConfigError, config_from_dict

REPO = Path(__file__).resolve().parents[1]
PLOTTED = ("test_accuracy", "train_loss", "lr")


def scrubbed_env(home: Path) -> dict[str, str]:
    """This process's environment without any wandb setting or credential, HOME in the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    return {**env, "HOME": str(home)}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, fake_cifar10):
    tmp = tmp_path_factory.mktemp("tracked")
    save = tmp / "runs"
    cfg = tiny_config(fake_cifar10, save, tracking=["wandb", "tensorboard"], rewind_points=[1],
                      sparse__random_control=False, pruning__train_epochs_per_prune=2)
    real_save = training_loop._save_state
    kills = {"dense A epoch 2": lambda epoch, spec: epoch == 2 and spec.tag == "",
             "IMP round 2 epoch 1": lambda epoch, spec: epoch == 1 and spec.tag.startswith("imp-round-2-")}
    pending = list(kills)

    def save_or_die(path, model, opt, sched, epoch, spec):
        # Killed after the epoch's metrics were logged but before its state was saved: the rerun redoes the epoch.
        if pending and kills[pending[0]](epoch, spec):
            pending.pop(0)
            raise KeyboardInterrupt
        real_save(path, model, opt, sched, epoch, spec)

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("WANDB_")]:
            mp.delenv(key)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("HOME", str(tmp / "home"))  # wandb's caches and settings stay in the test's folder
        for var, folder in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                            ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
            mp.setenv(var, str(tmp / "wandb_home" / folder))
        mp.setattr(training_loop, "_save_state", save_or_die)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            codes = [run(tmp, cfg) for _ in range(3)]
    assert codes == [130, 130, 0] and not pending
    tracking_warnings = [str(w.message) for w in caught if "tracking" in str(w.message)]
    assert not tracking_warnings, tracking_warnings
    rdir = run_dir(save, "cfg")
    return {"tmp": tmp, "run_dir": rdir, "metrics": read_metrics(rdir / "metrics.jsonl"),
            "results": json.loads((rdir / "results.json").read_text())}


def curves(records: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """training -> metric -> [(epoch, value)] as metrics.jsonl holds them."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        for key in PLOTTED:
            if rec.get(key) is not None:
                out[rec["run"]][key].append((rec["epoch"], rec[key]))
    return out


def test_tensorboard_curves_equal_metrics_jsonl_with_every_step_once(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    expected = curves(tracked["metrics"])
    assert {"dense_A", "dense_B", "imp_round_1", "imp_round_2", "sparse_lth_k1", "sparse_permuted_k1"} <= set(expected)
    board = tracked["run_dir"] / "tensorboard"
    for training, metrics in expected.items():
        events = EventAccumulator(str(board / training))
        events.Reload()
        for key, points in metrics.items():
            got = [(e.step, e.value) for e in events.Scalars(key)]
            assert [s for s, _ in got] == [s for s, _ in points], (training, key)  # no step twice, none missing
            assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), (training, key)
    # dense A was killed after logging epoch 2: its directory holds the killed process's events and the rerun's.
    assert len(list((board / "dense_A").glob("events.out.tfevents.*"))) >= 2


def test_tensorboard_interpolation_curves_and_results_text(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    matching = tracked["results"]["matching"]
    for side in ("before", "after"):
        events = EventAccumulator(str(tracked["run_dir"] / "tensorboard" / "interpolation" / side))
        events.Reload()
        got = [(e.step, e.value) for e in events.Scalars("interpolation/test_accuracy")]
        want = [(round(100 * p["alpha"]), p["test_accuracy"]) for p in matching[f"curve_{side}"]]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    events = EventAccumulator(str(tracked["run_dir"] / "tensorboard" / "results"))
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"config/text_summary", "tables/phase1/text_summary", "tables/phase2/text_summary"} <= tags
    phase2 = events.Tensors("tables/phase2/text_summary")[-1].tensor_proto.string_val[0].decode()
    accuracy = tracked["results"]["sparse"]["1"]["permuted"]["accuracy"]
    assert f"| 1 | permuted | {accuracy:.4g} |" in phase2


def test_wandb_offline_runs_hold_every_training_grouped_and_resumed(tracked):
    runs = offline_runs(tracked["run_dir"] / "wandb")
    assert runs, "no offline run folder"
    group = f"{tracked['run_dir'].parent.name}-seed_0"
    assert {r.group for r in runs} == {group} and {r.project for r in runs} == {"sparse-rebasin"}
    by_name: dict[str, list] = defaultdict(list)
    for r in runs:
        by_name[r.name].append(r)
    expected = curves(tracked["metrics"])
    assert set(by_name) == set(expected) | {"results"}
    for training, segments in by_name.items():
        assert len({s.id for s in segments}) == 1, training  # a resumed training continues its own run
        assert {s.job_type for s in segments} == {training.split("_")[0]}
        if training == "results":
            continue
        rows = [row for s in segments for row in s.history]
        steps = [row["_step"] for row in rows]
        assert steps == sorted(set(steps)), (training, steps)  # across the killed and the resumed segment
        for key, points in expected[training].items():
            assert [(row["_step"], row[key]) for row in rows if key in row] == points, (training, key)
    # Killed twice: dense A's and IMP round 2's runs were resumed under their ids in a new folder.
    assert len(by_name["dense_A"]) == 2 and len(by_name["imp_round_2"]) == 2
    assert len(by_name["imp_round_1"]) == 1  # restored from the IMP chain, not logged a second time
    # The ids lived in the artifacts while they were made; a finished artifact neither lists nor keeps them.
    for manifest in (tracked["run_dir"].parents[1] / "artifacts").glob("*/manifest.json"):
        if json.loads(manifest.read_text()).get("complete"):
            assert "tracking_state.json" not in json.loads(manifest.read_text())["files"]
            assert not (manifest.parent / "tracking_state.json").exists(), manifest.parent


def test_wandb_results_run_holds_the_final_numbers_and_tables(tracked):
    results = tracked["results"]
    final = [r for r in offline_runs(tracked["run_dir"] / "wandb") if r.name == "results"][-1]
    assert final.summary["dense.A.accuracy"] == results["dense"]["A"]["accuracy"]
    assert final.summary["sparse.1.naive.accuracy"] == results["sparse"]["1"]["naive"]["accuracy"]
    assert final.summary["matching.midpoint_accuracy_after"] == results["matching"]["midpoint_accuracy_after"]
    (table,) = final.folder.glob("files/media/table/interpolation_[0-9]*.table.json")
    data = json.loads(table.read_text())
    rows = [dict(zip(data["columns"], row, strict=True)) for row in data["data"]]
    after = [r["test_accuracy"] for r in rows if r["matching"] == "after"]
    assert after == [p["test_accuracy"] for p in results["matching"]["curve_after"]]
    assert yaml.safe_load((tracked["run_dir"] / "config.yaml").read_text())["tracking"] == ["wandb", "tensorboard"]


def test_tracking_is_in_no_key_and_validated():
    base = tiny_config(Path("/nonexistent"), Path("/tmp/x"))
    plain = config_from_dict(base, check_data=False)
    tracked = config_from_dict({**base, "tracking": ["tensorboard", "wandb"]}, check_data=False)
    assert config_hash(plain) == config_hash(tracked)  # the same run directory, the same artifacts
    with pytest.raises(ConfigError, match="tracking: unknown backend 'mlflow'"):
        config_from_dict({**base, "tracking": ["mlflow"]}, check_data=False)
    with pytest.raises(ConfigError, match="tracking"):
        config_from_dict({**base, "tracking": "wandb"}, check_data=False)


def test_without_tracking_nothing_is_mirrored(tmp_path):
    cfg = config_from_dict(tiny_config(Path("/nonexistent"), tmp_path), check_data=False)
    tracker = Tracker.for_run(cfg, 0, tmp_path / "run")
    assert tracker.mirror(tmp_path) is None
    tracker.set_results({"dense": {}})
    tracker.close()
    assert not (tmp_path / "run").exists()


def test_wandb_without_credentials_or_offline_mode_stops_before_training(tmp_path, fake_cifar10):
    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tiny_config(fake_cifar10, save)))
    (tmp_path / "home").mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "experiment.py"), "-config", "cfg.yaml", "--set",
                           "tracking=[wandb]"], cwd=tmp_path, env=scrubbed_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "WANDB_API_KEY" in lines[0] and "WANDB_MODE=offline" in lines[0], proc.stderr
    assert "data:" not in proc.stdout and not save.exists()  # before loading data, before any write


def test_credentials_and_modes_the_preflight_accepts(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    assert wandb_mode(env) == "online" and not has_wandb_credentials(env)
    with pytest.raises(TrackingUnavailable, match="WANDB_MODE=offline"):
        check_tracking(["wandb"], env)
    check_tracking(["tensorboard"], env)  # needs no credentials
    for ok in ({"WANDB_MODE": "offline"}, {"WANDB_MODE": "disabled"}, {"WANDB_API_KEY": "k" * 40}):
        check_tracking(["wandb"], {**env, **ok})
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    (home / ".netrc").chmod(0o600)
    assert has_wandb_credentials(env)
    assert not has_wandb_credentials({**env, "WANDB_BASE_URL": "https://wandb.example.org"})  # another host
    settings = tmp_path / "wandb_config"
    settings.mkdir()
    (settings / "settings").write_text("[default]\nmode = offline\n")  # what `wandb offline` writes
    assert wandb_mode({"HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(settings)}) == "offline"


def test_a_backend_asked_for_but_missing_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(TrackingUnavailable, match=r"tensorboard is not installed; install it with `pip install "
                                                  r"tensorboard==[0-9.]+`"):
        check_tracking(["tensorboard"], {"WANDB_MODE": "offline"})


class Broken:
    name = "broken"

    def __init__(self):
        self.calls = 0

    def log_epoch(self, *args):
        self.calls += 1
        raise ConnectionError("server unreachable")

    def log_results(self, *args):
        raise AssertionError("a dropped backend is not called again")

    def close(self):
        raise AssertionError("a dropped backend is not called again")


def test_a_failing_backend_is_one_warning_and_the_metrics_are_written(tmp_path, monkeypatch):
    broken = Broken()
    monkeypatch.setattr("tracking.tracker.make_backend", lambda name, info: broken)
    tracker = Tracker(["wandb"], RunInfo(run_dir=tmp_path / "run", group="g", seed=0))
    log = MetricsLog(tmp_path / "metrics.jsonl", mirror=tracker.mirror(tmp_path))
    with pytest.warns(UserWarning, match="tracking: wandb failed .*server unreachable") as caught:
        for epoch in (1, 2):
            log.log({"run": "dense_A", "epoch": epoch, "test_accuracy": 50.0 + epoch})
        tracker.set_results({"dense": {}})
        tracker.close()
    assert len(caught) == 1 and broken.calls == 1
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_log_table_reaches_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Ctx:
        tracker = Tracker(["tensorboard"], RunInfo(run_dir=tmp_path, group="g", seed=0, config={"seed": 0}))

    log_table(Ctx, "ensemble", [{"members": 2, "accuracy": 91.5}, {"members": 3, "accuracy": 92.25}])
    Ctx.tracker.close()
    events = EventAccumulator(str(tmp_path / "tensorboard" / "results"))
    events.Reload()
    text = events.Tensors("tables/ensemble/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.splitlines() == ["| members | accuracy |", "|---|---|", "| 2 | 91.5 |", "| 3 | 92.25 |"]


def test_a_sweep_with_wandb_and_no_credentials_submits_nothing(tmp_path, fake_cifar10, monkeypatch, capsys):
    from sweep import cli

    save = tmp_path / "runs"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tiny_config(fake_cifar10, save, tracking=["wandb"])))
    for key in [k for k in os.environ if k.startswith("WANDB_")] + ["NETRC"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["cfg.yaml", "-seeds", "0", "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WANDB_MODE=offline" in err
    assert not save.exists()


def test_a_sweeps_jobs_each_log_their_trainings_into_one_group(tmp_path, fake_cifar10):
    """A local sweep (one process per job): every training is its own wandb run of the (config, seed) group,
    with its stage as job_type, every job adds to the one `results` run, and TensorBoard has a folder each."""
    save = tmp_path / "runs"
    cfg = tiny_config(fake_cifar10, save, epochs=1, sparse_epochs=1, rewind_points=[0], train_subset=128,
                      test_subset=64, tracking=["tensorboard", "wandb"], sparse={"random_control": False})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**scrubbed_env(tmp_path / "home"), "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "sweep", "cfg.yaml", "-seeds", "0", "--executor", "local",
                           "-threads", "1", "--wait"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rdir = run_dir(save, "cfg")
    runs = offline_runs(rdir / "wandb")
    trainings = {r.name: r for r in runs if r.name != "results"}
    imp_rounds = sorted(n for n in trainings if n.startswith("imp_round_"))
    assert set(trainings) == {"dense_A", "dense_B", *imp_rounds, "sparse_lth_k0", "sparse_naive_k0",
                              "sparse_permuted_k0"} and imp_rounds
    assert {r.group for r in runs} == {f"{rdir.parent.name}-seed_0"}
    assert all(r.job_type == name.split("_", 1)[0] for name, r in trainings.items())
    results_runs = [r for r in runs if r.name == "results"]
    assert len({r.id for r in results_runs}) == 1 and len(results_runs) > 1  # each job resumed the same run
    assert {p.name for p in (rdir / "tensorboard").iterdir()} >= set(trainings)


def test_tracking_says_where_the_curves_go_when_it_starts(tmp_path, monkeypatch, capsys):
    """One line per backend when it starts: backend, project, where offline runs go and the command to sync them."""
    from tracking.tracker import RunInfo
    from tracking.wandb_backend import WandbBackend

    cfg = config_from_dict(tiny_config(Path("/nonexistent"), tmp_path, tracking=["tensorboard"]), check_data=False)
    tracker = Tracker.for_run(cfg, 0, tmp_path / "run")
    for epoch in (1, 2):
        tracker.log_epoch({"run": "dense_A", "epoch": epoch, "train_loss": 0.5, "test_accuracy": 50.0}, tmp_path)
    tracker.close()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[tracking]")]
    board = tmp_path / "run" / "tensorboard"
    assert lines == [f"[tracking] tensorboard: event files under {board}; view them with: tensorboard --logdir "
                     f"{board}"]

    info = RunInfo(run_dir=tmp_path / "run", group="cfg-abc-seed_0", seed=0, project="proj", entity="team")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    line = WandbBackend(info).start_line()
    runs = tmp_path / "run" / "wandb" / "offline-run-*"
    assert line.startswith("wandb offline (project proj, entity team, group cfg-abc-seed_0)")
    assert f"runs are written to {runs}" in line and line.endswith(f"wandb sync {runs}")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    assert f"wandb sync {tmp_path / 'elsewhere' / 'wandb' / 'offline-run-*'}" in WandbBackend(info).start_line()
    monkeypatch.delenv("WANDB_MODE")
    assert WandbBackend(info).start_line().startswith("wandb online (project proj, entity team")

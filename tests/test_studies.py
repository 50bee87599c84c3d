"""The study framework: a study's needs are made after every main-experiment artifact they rest on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from phases import graph
from phases.context import RunContext
from phases.stages import STAGES, Stage, register_stage
from phases.studies import STUDIES, Need, register, run_study, write_report
from tests.test_pipeline import tiny_config
from utils.artifacts import Artifact
from utils.config import config_from_dict


class ProbeStudy:
    """A study with one artifact of its own kind that rests on pi(M_A) alone: pi, IMP and both dense models are
    left implicit."""

    name = "probe"

    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}

    def artifact(self, cfg, seed: int) -> Artifact:
        return Artifact(cfg.save_path, "probe", {"what": "probe"}, {"pmask": graph.permuted_mask(cfg, seed)},
                        origin=(cfg, seed))

    def needs(self, cfg, seed: int) -> list[Need]:
        return [Need(self.artifact(cfg, seed), "probe")]

    def make(self, ctx: RunContext, art: Artifact) -> None:
        self.seen = {n: a.complete for n, a in graph.phase1_artifacts(ctx.cfg, ctx.seed).items()}
        art.finish({"ok": True})

    def report(self, ctx: RunContext) -> Path:
        return write_report(ctx, self.name, [{"group": "probe", "ok": 1}], ["group"], "probe\n")


@pytest.fixture
def probe():
    study = register(ProbeStudy())
    register_stage(Stage("probe", study.make))
    yield study
    STUDIES.pop(study.name, None)
    STAGES.pop("probe", None)


def test_a_study_on_a_fresh_save_path_makes_the_ancestry_of_its_dependencies_first(tmp_path, fake_cifar10, probe):
    cfg = config_from_dict(tiny_config(fake_cifar10, tmp_path / "runs", epochs=1, sparse_epochs=1,
                                       rewind_points=[0]))
    ctx = RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="probe", command="probe")
    report = run_study(ctx, "probe")
    assert report.is_file()
    # pi(M_A) needs pi and the IMP mask, which need both dense models: all were made before the probe ran.
    assert all(probe.seen[n] for n in ("dense_A", "dense_B", "imp", "perm", "pmask")), probe.seen


def test_a_study_table_reaches_tensorboard_when_the_config_tracks(tmp_path, fake_cifar10, probe):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tracking import close_all

    cfg = config_from_dict(tiny_config(fake_cifar10, tmp_path / "runs", epochs=1, sparse_epochs=1,
                                       rewind_points=[0], tracking=["tensorboard"]))
    ctx = RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="probe", command="probe")
    run_study(ctx, "probe")
    close_all()
    events = EventAccumulator(str(ctx.run_dir / "tensorboard" / "results"))
    events.Reload()
    text = events.Tensors("tables/study_probe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.splitlines() == ["| group | ok |", "|---|---|", "| probe | 1 |"]


def test_the_cross_seed_study_table_averages_numbers_and_keeps_counts_whole():
    from analysis.studies import aggregate, markdown

    reports = [{"key": ["group"], "rows": [{"group": "lth", "members": 3, "accuracy": 90.0}]},
               {"key": ["group"], "rows": [{"group": "lth", "members": 3, "accuracy": 92.0}]}]
    rows = aggregate(reports)
    assert rows == [{"group": "lth", "seeds": 2, "members_mean": 3.0, "members_std": 0.0,
                     "accuracy_mean": 91.0, "accuracy_std": pytest.approx(2 ** 0.5)}]
    assert markdown("cfg", "ensemble", rows).splitlines()[-1] == "| lth | 2 | 3 | 91.000 ± 1.414 |"


@pytest.mark.parametrize("name", ["early_matching", "ensemble", "imp_barriers"])
def test_a_report_before_its_artifacts_exist_is_one_line_naming_the_command(tmp_path, fake_cifar10, name):
    from phases.studies import get_study
    from utils.errors import UserError

    raw = tiny_config(fake_cifar10, tmp_path / "runs", rewind_points=[1])
    raw["studies"] = {"early_matching": {"epochs": [1]}}
    ctx = RunContext(cfg=config_from_dict(raw), seed=0, device=torch.device("cpu"), label="t",
                     command="python experiment.py -config t.yaml -seed 0 -pretrain True")
    with pytest.raises(UserError) as err:
        get_study(name).report(ctx)
    message = str(err.value)
    assert message.startswith(f"study {name}: ") and "not made yet" in message and "\n" not in message
    assert message.endswith(f"run: python experiment.py -config t.yaml -seed 0 --study {name}")
    assert not (ctx.run_dir / "studies").exists()  # nothing half-written

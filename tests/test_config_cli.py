"""Malformed configs and argument lists: each exits non-zero with one clear line and writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

import experiment
from utils.config import ConfigError, config_from_dict, load_config
from utils.errors import UserError

NAN, INF = float("nan"), float("inf")

VALID = {
    "model_type": "MLP", "mlp_hidden": [16], "dataset": "fashion-mnist", "dataset_root": "nowhere-ok",
    "epochs": 4, "sparse_epochs": 4, "batch_size": 64, "device": "cpu", "rewind_points": [0, 1],
    "save_path": "runs", "train_subset": 256, "test_subset": 128,
    "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
    "pruning": {"sparsity": 0.5, "train_epochs_per_prune": 1},
    "matching": {"method": "weight"},
}


def with_(path: str, value) -> dict:
    """VALID with the dotted key ``path`` set to ``value`` (a copy)."""
    cfg = yaml.safe_load(yaml.safe_dump(VALID))
    node = cfg
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return cfg


BAD_CONFIGS = [
    (with_("epoch", 3), "unknown config key 'epoch'; did you mean 'epochs'"),
    (with_("optimizer.lrr", 0.1), "unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'"),
    (with_("pruning.sparsty", 0.9), "did you mean 'pruning.sparsity'"),
    (with_("epochs", "ten"), "epochs: expected an integer"),
    (with_("pruning.sparsity", 1.5), "pruning.sparsity: must be strictly between 0 and 1"),
    (with_("pruning.sparsity", 0), "pruning.sparsity: must be strictly between 0 and 1"),
    (with_("pruning.sparsity", 90), "pruning.sparsity: must be strictly between 0 and 1"),
    (with_("rewind_points", [0, 9]), "rewind point 9 is past the end of training"),
    ({**with_("dataset", "cifar10"), "dataset_root": "no/such/dir"}, "dataset_root: 'no/such/dir' does not exist"),
    (with_("model_type", "ResNet18"), "model_type: unknown model 'ResNet18'"),
    (with_("dataset", "cifar-10"), "did you mean 'cifar10'"),
    (with_("batch_size", 0), "batch_size: must be positive"),
    (with_("optimizer.lr", -0.1), "optimizer.lr: must be positive"),
    (with_("matching.method", "hungarian"), "matching.method: must be one of activation, weight"),
    (with_("optimizer", "sgd"), "optimizer: expected a mapping"),
    (with_("width_multiplier", 1.5), "width_multiplier: expected an integer"),
    (with_("optimizer.momentum", 1.5), "optimizer.momentum: must be in [0, 1)"),
    (with_("rewind_points", [1, 1]), "rewind_points: duplicates"),
    (with_("matching.alphas", [0.0, 1.0]), "matching.alphas: must include 0, 0.5 and 1"),
    (with_("device", "tpu"), "device: must be cpu, cuda"),
    (with_("pruning.rewind_epoch", 10), "pruning.rewind_epoch: must be in [0, epochs=4)"),
    (with_("sparse.runs", ["lth", "lucky"]), "sparse.runs: unknown run 'lucky'"),
    (with_("mlp_hidden", [16, 0]), "mlp_hidden: must be a non-empty list of positive widths"),
    (with_("optimizer.type", "Adam"), "optimizer.type: only SGD is supported"),
    (with_("train_subset", -5), "train_subset: must be positive"),
    (with_("dataset_root", {"cifar10": "x"}), "dataset_root: no entry for dataset 'fashion-mnist'"),
    # Every float must be finite: YAML's .nan/.inf and strings float() would read ("nan", "1e999") alike.
    (with_("optimizer.lr", NAN), "optimizer.lr: must be a finite number, got nan"),
    (with_("optimizer.weight_decay", INF), "optimizer.weight_decay: must be a finite number, got inf"),
    (with_("optimizer.sparse_lr", "nan"), "optimizer.sparse_lr: must be a finite number, got 'nan'"),
    (with_("pruning.prune_lr", -INF), "pruning.prune_lr: must be a finite number, got -inf"),
    (with_("pruning.sparsity", "1e999"), "pruning.sparsity: must be a finite number, got '1e999'"),
    (with_("matching.alphas", [0, NAN, 0.5, 1]), "matching.alphas[1]: must be a finite number, got nan"),
    (with_("pruning.tolerance", NAN), "pruning.tolerance: must be a finite number, got nan"),  # float | None
    (with_("pruning.tolerance_vgg11", "-inf"), "pruning.tolerance_vgg11: must be a finite number, got '-inf'"),
    # The tolerance that applies must be in [0, sparsity): else IMP runs no round, or never stops.
    (with_("pruning.tolerance", 0.9), "pruning.tolerance: must be in [0, pruning.sparsity=0.5)"),
    (with_("pruning.tolerance", 0.5), "pruning.tolerance: must be in [0, pruning.sparsity=0.5)"),
    (with_("pruning.tolerance", -0.01), "pruning.tolerance: must be in [0, pruning.sparsity=0.5)"),
    (with_("pruning.tolerance_resnet20", 0.6), "pruning.tolerance_resnet20: must be in [0, pruning.sparsity=0.5)"),
    ({**with_("pruning.tolerance_vgg11", 0.7), "model_type": "VGG11"},
     "pruning.tolerance_vgg11: must be in [0, pruning.sparsity=0.5) (the IMP tolerance for VGG11), got 0.7"),
    (with_("pruning.tolerance_vgg11", -1e-7), "pruning.tolerance_vgg11: must be >= 0"),  # unused by MLP, still wrong
    (with_("precision", "fp16"), "precision: must be one of fp32, bf16, got 'fp16'"),
    (with_("precision", 16), "precision: expected a string"),
]

BAD_FILES = [
    ("model_type: MLP\nepochs: [3\n", "not valid YAML at line"),
    ("", "the config is empty"),
    ("- a\n- b\n", "config: expected a mapping of keys"),
]

BAD_ARGS = [
    (["-pretrain", "maybe"], "expected True or False, got 'maybe'"),
    (["-seed", "-1"], "expected a non-negative integer"),
    (["-seed", "abc"], "expected a non-negative integer, got 'abc'"),
    (["-threads", "0"], "argument -threads/--threads: expected a positive integer, got '0'"),
    (["-threads", "-2"], "expected a positive integer, got '-2'"),
    (["-pretrain", "True", "--rewind", "1"], "--rewind belongs to phase 2"),
    (["-pretrain", "False", "--rewind", "3"], "--rewind 3 is not one of the config's rewind_points [0, 1]"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["-pretrain", "false"], "phase-1 artifacts missing for this config"),
    (["-config", "does/not/exist.yaml"], "config file 'does/not/exist.yaml' not found"),
]


def run_cli(tmp_path: Path, argv: list[str], capsys) -> tuple[int, str]:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        code = experiment.main(argv)
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err


def assert_one_clear_line(code: int, err: str, expected: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("raw", "expected"), BAD_CONFIGS, ids=[e for _, e in BAD_CONFIGS])
def test_bad_config_is_one_line_and_writes_nothing(tmp_path, capsys, raw, expected):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    before = files_under(tmp_path)
    code, err = run_cli(tmp_path, ["-config", "cfg.yaml", "-seed", "0", "-pretrain", "True"], capsys)
    assert_one_clear_line(code, err, expected)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=[e for _, e in BAD_FILES])
def test_bad_file_is_one_line(tmp_path, capsys, text, expected):
    (tmp_path / "cfg.yaml").write_text(text)
    code, err = run_cli(tmp_path, ["-config", "cfg.yaml"], capsys)
    assert_one_clear_line(code, err, expected)
    assert files_under(tmp_path) == {"cfg.yaml"}


@pytest.mark.parametrize(("argv", "expected"), BAD_ARGS, ids=[e for _, e in BAD_ARGS])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, capsys, argv, expected):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(VALID))
    if "-config" not in argv:
        argv = ["-config", "cfg.yaml", *argv]
    code, err = run_cli(tmp_path, argv, capsys)
    assert_one_clear_line(code, err, expected)
    assert files_under(tmp_path) == {"cfg.yaml"}


def test_valid_config_round_trips_and_defaults(tmp_path):
    cfg = config_from_dict(VALID)
    assert cfg.b_epochs == 4 and cfg.total_sparse_epochs == 4
    assert cfg.pruning.momentum == 0.0 and cfg.pruning.weight_decay == 0.0  # the paper's plain-SGD IMP
    assert cfg.matching.method == "weight"
    again = config_from_dict(cfg.to_dict())
    assert again == cfg


def test_original_config_keys_keep_their_meaning(tmp_path):
    """A config in the original code's exact shape (dataset_root a per-dataset mapping) loads."""
    root = tmp_path / "c10"
    root.mkdir()
    text = f"""
model_type: ResNet
epochs: 200
batch_size: 128
model_b_epochs: 200
sparse_epochs: 200
num_workers: 8
init_weights: False
project: p
entity: e
dataset: cifar10
dataset_root:
  cifar10: {root}
  cifar100: /scratch/cifar100
optimizer: {{type: SGD, sparse_lr: 0.02, lr: 0.08, momentum: 0.9, weight_decay: 0.0005}}
pruning: {{sparsity: 0.90, prune_perc: 0.2, prune_epochs: 5000, prune_lr: 0.01, train_epochs_per_prune: 50,
  tolerance_vgg11: 0.0000005, tolerance_resnet20: 0.005}}
device: cuda
width_multiplier: 1
save_path: /scratch/resnet/
"""
    (tmp_path / "orig.yaml").write_text(text)
    cfg = load_config(tmp_path / "orig.yaml")
    assert cfg.data_root == root
    assert cfg.pruning.tolerance_for("ResNet") == 0.005
    assert cfg.pruning.tolerance_for("VGG11") == 5e-7
    assert cfg.optimizer.weight_decay == 5e-4


def test_scientific_notation_strings_are_numbers():
    # YAML 1.1 reads 5e-4 (no dot) as a string; users write it all the time.
    raw = with_("optimizer.weight_decay", "5e-4")
    assert config_from_dict(raw).optimizer.weight_decay == 5e-4


def test_nan_written_in_the_file_is_rejected(tmp_path):
    """The YAML spellings themselves (not a dump of Python's nan), for a float and a list of floats."""
    for line, expected in (("  lr: .nan", "optimizer.lr: must be a finite number"),
                           ("  lr: .NaN", "optimizer.lr: must be a finite number"),
                           ("  lr: nan", "optimizer.lr: must be a finite number, got 'nan'"),
                           ("  lr: -.inf", "optimizer.lr: must be a finite number"),
                           ("  lr: 1e400", "optimizer.lr: must be a finite number")):
        (tmp_path / "c.yaml").write_text(f"model_type: MLP\ndevice: cpu\noptimizer:\n{line}\n")
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            load_config(tmp_path / "c.yaml", check_data=False)
    (tmp_path / "c.yaml").write_text("model_type: MLP\nmatching: {alphas: [0, .5, .nan, 1]}\n")
    with pytest.raises(ConfigError, match=r"matching\.alphas\[2\]: must be a finite number"):
        load_config(tmp_path / "c.yaml", check_data=False)
    assert config_from_dict(with_("pruning.tolerance", None)).pruning.tolerance is None  # null stays allowed


def test_tolerance_is_chosen_by_the_registry():
    # ResNet (alias ResNet20), ResNet50 and MLP stop at tolerance_resnet20, VGG11 at tolerance_vgg11;
    # pruning.tolerance overrides both.
    cfg = config_from_dict(with_("pruning.tolerance_resnet20", 0.01))
    for model_type in ("ResNet", "ResNet20", "ResNet50", "MLP"):
        assert cfg.pruning.tolerance_for(model_type) == 0.01
        assert cfg.pruning.tolerance_key(model_type) == "tolerance_resnet20"
    assert cfg.pruning.tolerance_for("VGG11") == 5e-7 and cfg.pruning.tolerance_key("VGG11") == "tolerance_vgg11"
    over = config_from_dict(with_("pruning.tolerance", 0.0))
    assert over.pruning.tolerance_for("VGG11") == over.pruning.tolerance_for("MLP") == 0.0
    assert over.pruning.tolerance_key("MLP") == "tolerance"
    # Only the tolerance that applies is held against the sparsity: a big VGG11 tolerance is fine for an MLP.
    assert config_from_dict(with_("pruning.tolerance_vgg11", 0.7)).pruning.tolerance_vgg11 == 0.7
    with pytest.raises(ValueError, match="unknown model_type"):
        cfg.pruning.tolerance_for("ResNet18")


def test_precision_defaults_to_fp32_and_accepts_bf16():
    assert config_from_dict(VALID).precision == "fp32"
    cfg = config_from_dict(with_("precision", "bf16"))
    assert cfg.precision == "bf16" and config_from_dict(cfg.to_dict()) == cfg


def test_paths_in_the_config_file_expand_home_and_variables(tmp_path, monkeypatch):
    home, data = tmp_path / "home", tmp_path / "data"
    (data / "fmnist").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SRB_TEST_DATA", str(data))
    monkeypatch.setenv("SRB_TEST_RUNS", str(tmp_path / "scratch"))
    base = {**VALID, "dataset_root": "$SRB_TEST_DATA/fmnist"}
    for save_path, expected in (("~/runs", home / "runs"), ("$SRB_TEST_RUNS/runs", tmp_path / "scratch/runs"),
                                ("${SRB_TEST_RUNS}/x", tmp_path / "scratch/x"), ("runs", Path("runs"))):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({**base, "save_path": save_path}))
        cfg = load_config(tmp_path / "c.yaml")  # check_data: the existence check sees the expanded root
        assert Path(cfg.save_path) == expected, save_path
        assert cfg.data_root == data / "fmnist"
        assert config_from_dict(cfg.to_dict()) == cfg  # expanding again changes nothing
    (home / "d").mkdir(parents=True)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**VALID, "dataset_root": "~/d", "save_path": "~"}))
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.data_root == home / "d" and cfg.save_path == str(home)
    # An unset variable is refused by name: expanded as written, it would make a literal `./$VAR` folder.
    # dataset_root only when the data is checked (a sweep resolves configs where a job's variables are unset).
    monkeypatch.delenv("SRB_TEST_UNSET", raising=False)
    cifar = {**VALID, "dataset": "cifar10", "dataset_root": "$SRB_TEST_UNSET/d"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cifar))
    assert load_config(tmp_path / "c.yaml", check_data=False).dataset_root == "$SRB_TEST_UNSET/d"
    with pytest.raises(ConfigError, match=r"^dataset_root: the environment variable \$SRB_TEST_UNSET is not set"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**cifar, "save_path": "${SRB_TEST_UNSET}/runs"}))
    with pytest.raises(ConfigError, match=r"^save_path: the environment variable \$SRB_TEST_UNSET is not set"):
        load_config(tmp_path / "c.yaml", check_data=False)


def test_threads_on_the_command_line():
    from utils.cli import parse_args

    assert parse_args(["-threads", "3"]).threads == 3
    assert parse_args([]).threads is None


def test_config_error_is_value_error():
    with pytest.raises(ValueError):
        config_from_dict(with_("epochs", -1))
    with pytest.raises(ConfigError, match="epochs: must be positive"):
        config_from_dict(with_("epochs", -1))


def test_help_documents_the_cli(capsys):
    with pytest.raises(SystemExit) as exc:
        experiment.main(["-h"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("-config", "-seed", "-pretrain", "--rewind", "--no-progress", "demo"):
        assert flag in out


def test_pretrain_accepts_any_case(tmp_path, capsys):
    from utils.cli import parse_args

    for text, value in (("True", True), ("true", True), ("TRUE", True), ("False", False), ("fAlSe", False)):
        assert parse_args(["-pretrain", text]).pretrain is value
    assert parse_args(["--config", "x.yaml", "--seed", "3"]).seed == 3
    assert parse_args([]).pretrain is None


@pytest.mark.parametrize("folder", ["configs", "configs_cifar100"])
def test_every_shipped_config_loads_and_validates(folder):
    files = sorted(Path(folder).glob("*.yaml"))
    assert len(files) >= 16
    for f in files:
        cfg = load_config(f, check_data=False)
        assert 0 < cfg.pruning.sparsity < 1
        assert not Path(cfg.save_path).is_absolute() and not Path(str(cfg.dataset_root)).is_absolute()


def test_missing_dataset_files_are_one_line_and_leave_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()  # the root exists, the CIFAR files do not
    raw = {**with_("dataset", "cifar10"), "dataset_root": "empty"}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    code, err = run_cli(tmp_path, ["-config", "cfg.yaml", "-pretrain", "True"], capsys)
    assert_one_clear_line(code, err, "dataset 'cifar10' not found; looked in: empty/cifar-10-batches-py")
    assert "download: true" in err
    assert files_under(tmp_path) == {"cfg.yaml", "empty"}


# ------------------------------------------------------------------ --set KEY=VALUE overrides


def load(tmp_path: Path, *argv: str, config: dict | None = VALID):
    """The validated config ``experiment.py`` would run with for ``argv`` (the demo when ``config`` is None)."""
    from phases.runner import load_with_overrides
    from utils.cli import parse_args

    if config is not None:
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
        argv = ("-config", str(tmp_path / "cfg.yaml"), *argv)
    return load_with_overrides(parse_args(list(argv)))


def test_set_reaches_the_config(tmp_path):
    cfg = load(tmp_path, "--set", "optimizer.lr=0.1")
    assert cfg.optimizer.lr == 0.1
    assert cfg.optimizer.sparse_lr == 0.05 and cfg.epochs == 4  # the file's other keys stay
    assert load(tmp_path, "--set", "rewind_points=[0,3]").rewind_points == [0, 3]
    assert load(tmp_path, "--set", "matching.alphas=[0, 0.5, 1]").matching.alphas == [0.0, 0.5, 1.0]
    assert load(tmp_path, "--set", "pruning.tolerance=null").pruning.tolerance is None
    assert load(tmp_path, "--set", "sparse.random_control=true").sparse.random_control is True
    assert load(tmp_path, "--set", "optimizer.weight_decay=5e-4").optimizer.weight_decay == 5e-4  # YAML 1.1 str
    assert load(tmp_path).optimizer.lr == 0.05  # without --set, the file's value


def test_set_repeats_and_the_merged_config_is_validated_once(tmp_path):
    cfg = load(tmp_path, "--set", "optimizer.lr=0.1", "--set", "optimizer.lr=0.2", "--set", "pruning.sparsity=0.8")
    assert cfg.optimizer.lr == 0.2 and cfg.pruning.sparsity == 0.8  # the later of two wins
    # Rewind point 9 is past the file's 4 epochs, but not past the 10 set after it: checked after merging.
    cfg = load(tmp_path, "--set", "rewind_points=[0,9]", "--set", "epochs=10", "--set", "sparse_epochs=10")
    assert cfg.rewind_points == [0, 9] and cfg.epochs == 10
    # A section the file lacks is created; one the file leaves empty (`sparse:`) means its defaults.
    assert load(tmp_path, "--set", "sparse.runs=[lth]", config={**VALID, "sparse": None}).sparse.runs == ["lth"]


def test_set_comes_before_the_device_threads_and_save_path_options(tmp_path):
    cfg = load(tmp_path, "--set", "device=cuda", "--set", "threads=3", "--set", "save_path=a",
               "-device", "cpu", "-threads", "2", "-save_path", "b")
    assert (cfg.device, cfg.threads, cfg.save_path) == ("cpu", 2, "b")
    assert load(tmp_path, "--set", "threads=3").threads == 3


def test_set_on_the_demo_leaves_the_embedded_config_alone(tmp_path):
    from phases.demo import DEMO_CONFIG

    before = yaml.safe_dump(DEMO_CONFIG)
    cfg = load(tmp_path, "--set", "optimizer.lr=0.1", "--set", "rewind_points=[0,1]", "--set", "dataset=cifar100",
               "--set", f"dataset_root={{cifar100: '{tmp_path}'}}", config=None)
    assert cfg.optimizer.lr == 0.1 and cfg.rewind_points == [0, 1] and cfg.dataset == "cifar100"
    assert cfg.optimizer.sparse_lr == DEMO_CONFIG["optimizer"]["sparse_lr"] and cfg.model_type == "MLP"
    assert yaml.safe_dump(DEMO_CONFIG) == before


def test_set_is_recorded_in_the_resolved_config(tmp_path):
    from utils.config import dump_config

    recorded = yaml.safe_load(dump_config(load(tmp_path, "--set", "optimizer.lr=0.1")))
    assert recorded["optimizer"]["lr"] == 0.1


BAD_SETS = [
    (["--set", "optimizer.lrr=0.1"],
     "--set optimizer.lrr=0.1: unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'?"),
    (["--set", "epoch=3"], "--set epoch=3: unknown config key 'epoch'; did you mean 'epochs'?"),
    (["--set", "pruning.sparsty.x=3"], "unknown config key 'pruning.sparsty'; did you mean 'pruning.sparsity'?"),
    (["--set", "frobnicate=1"], "--set frobnicate=1: unknown config key 'frobnicate'"),
    (["--set", "epochs=abc"], "--set epochs=abc: epochs: expected an integer, got 'abc' (str)"),
    (["--set", "rewind_points=[0,x]"], "--set rewind_points=[0,x]: rewind_points[1]: expected an integer"),
    (["--set", "optimizer.lr=.nan"], "optimizer.lr: must be a finite number"),
    (["--set", "optimizer=sgd"], "--set optimizer=sgd: optimizer: expected a mapping of keys, got 'sgd'"),
    (["--set", "epochs.x=1"],
     "--set epochs.x=1: 'epochs.x' is not a config key: 'epochs' holds an integer, not a mapping of keys"),
    (["--set", "optimizer.lr.x=1"], "'optimizer.lr.x' is not a config key: 'optimizer.lr' holds a number"),
    (["--set", "dataset_root.cifar10=x"], "--set dataset_root.cifar10=x: cannot set 'dataset_root.cifar10': "
     "'dataset_root' is 'nowhere-ok' in the config, not a mapping; set 'dataset_root' itself instead"),
    (["--set", "lr"], "--set 'lr': expected KEY=VALUE, e.g. --set optimizer.lr=0.1"),
    (["--set", "=0.1"], "--set '=0.1': the key before '=' is empty"),
    (["--set", "optimizer..lr=0.1"], "the key 'optimizer..lr' has an empty part between dots"),
    (["--set", "rewind_points=[0,"], "--set rewind_points=[0,: the value is not valid YAML"),
    (["--set", "rewind_points=[0,9]"], "rewind_points: rewind point 9 is past the end of training"),  # a range
    (["--set", "optimizer.lr=0.1", "--set", "momentum=0.9"],
     "--set momentum=0.9: unknown config key 'momentum'"),  # the --set at fault, not the first
]


@pytest.mark.parametrize(("argv", "expected"), BAD_SETS, ids=[e for _, e in BAD_SETS])
def test_bad_set_is_one_line_and_writes_nothing(tmp_path, capsys, argv, expected):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(VALID))
    code, err = run_cli(tmp_path, ["-config", "cfg.yaml", "-pretrain", "True", *argv], capsys)
    assert code == 2
    assert_one_clear_line(code, err, expected)
    assert files_under(tmp_path) == {"cfg.yaml"}


def test_bad_set_on_the_demo_is_one_line_and_writes_nothing(tmp_path, capsys):
    code, err = run_cli(tmp_path, ["--set", "optimizer.lrr=0.1"], capsys)
    assert code == 2
    assert_one_clear_line(code, err, "unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'?")
    assert files_under(tmp_path) == set()


def test_set_can_fix_what_the_file_gets_wrong(tmp_path):
    # The file alone is invalid (rewind point past its epochs); validation waits for the overrides.
    cfg = load(tmp_path, "--set", "rewind_points=[0]", config=with_("rewind_points", [0, 9]))
    assert cfg.rewind_points == [0]


def test_parse_override_reads_the_value_as_yaml():
    from utils.overrides import parse_override

    assert parse_override("optimizer.lr=0.1") == ("optimizer.lr", 0.1)
    assert parse_override("download=true") == ("download", True)
    assert parse_override("rewind_points=[0, 5]") == ("rewind_points", [0, 5])
    assert parse_override("pruning.tolerance=null") == ("pruning.tolerance", None)
    assert parse_override("dataset=cifar100") == ("dataset", "cifar100")
    assert parse_override("save_path=a=b") == ("save_path", "a=b")  # only the first '=' splits
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("optimizer.lr")


def test_apply_overrides_copies_and_names_its_source():
    from utils.overrides import apply_overrides

    raw = {"optimizer": {"lr": 0.05}, "dataset_root": {"cifar10": "a"}}
    out = apply_overrides(raw, ["optimizer.lr=0.1", "matching.method=weight", "dataset_root.cifar100=b"])
    assert out == {"optimizer": {"lr": 0.1}, "matching": {"method": "weight"},
                   "dataset_root": {"cifar10": "a", "cifar100": "b"}}
    assert raw == {"optimizer": {"lr": 0.05}, "dataset_root": {"cifar10": "a"}}
    # Another command (python -m sweep) names its own option in the errors.
    with pytest.raises(ConfigError, match=r"^--grid optimizer\.lrr=1: unknown config key 'optimizer\.lrr'"):
        apply_overrides(raw, ["optimizer.lrr=1"], source="--grid")


# ------------------------------------------------------------------ a device this machine lacks

NO_CUDA = ("device 'cuda' was requested but this machine has no CUDA GPU; run on the CPU with -device cpu "
           "(or set device: cpu in the config)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_an_error_not_a_fallback(tmp_path, capsys):
    from training.device import resolve_device

    with pytest.raises(UserError) as exc:
        resolve_device("cuda")
    assert str(exc.value) == NO_CUDA
    with pytest.raises(UserError, match=r"^device 'cuda:1' was requested but this machine has no CUDA GPU; "):
        resolve_device("cuda:1")
    for argv in (["-device", "cuda"], ["--set", "device=cuda"]):
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(VALID))
        code, err = run_cli(tmp_path, ["-config", "cfg.yaml", "-pretrain", "True", *argv], capsys)
        assert code == 2
        assert_one_clear_line(code, err, NO_CUDA)
        assert files_under(tmp_path) == {"cfg.yaml"}
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_mps_when_unavailable_is_an_error():
    from training.device import resolve_device

    with pytest.raises(UserError, match=r"^device 'mps' was requested but this machine has no MPS .*-device cpu"):
        resolve_device("mps")


def test_cuda_index_beyond_the_gpus_is_an_error(monkeypatch):
    from training.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(UserError, match=r"^device 'cuda:2' was requested but this machine has 2 CUDA GPUs "
                                        r"\(cuda:0 to cuda:1\); choose one of those, or run on the CPU"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"has 1 CUDA GPU \(cuda:0\)"):
        resolve_device("cuda:1")


def test_device_must_be_a_known_spelling():
    with pytest.raises(ConfigError, match="device: must be cpu, cuda, cuda:N or mps, got 'cuda:x'"):
        config_from_dict(with_("device", "cuda:x"))
    assert config_from_dict(with_("device", "cuda:3")).device == "cuda:3"  # validation never resolves

"""Tests that pin the science of the pipeline, not its plumbing.

Each one fails under a one-line mutation of what the paper means: a sparse run
started from the wrong model, epoch or mask; the random control at one global
density; the wrong matching method; an artifact key that misses (or over-
states) what its stage depends on.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import phases.sparse_step as sparse_step
from matching import activation_matching, permute
from matching.weight_matching import weight_matching
from phases import graph
from phases.context import RunContext
from tests.test_pipeline import artifacts, dense_dir, load, run, tiny_config
from utils.config import Config, config_from_dict

# ------------------------------------------------------------------ sparse-run sources


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, fake_cifar10) -> dict[str, Any]:
    """Both phases of a tiny ResNet20 (it has BatchNorm state), recording what every sparse run starts from."""
    tmp = tmp_path_factory.mktemp("resnet")
    save = tmp / "runs"
    cfg = tiny_config(fake_cifar10, save, model_type="ResNet", epochs=2, sparse_epochs=3, train_subset=128,
                      test_subset=64, rewind_points=[0, 1], pruning__sparsity=0.5, optimizer__sparse_lr=0.03)
    starts: dict[tuple[int, str], tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
    specs: dict[tuple[int, str], Any] = {}
    real_train = sparse_step.train

    def recording_train(model, data, spec, *, name, masks, **kwargs):
        run_name, k = name.removeprefix("sparse_").rsplit("_k", 1)
        starts[(int(k), run_name)] = ({n: t.detach().clone() for n, t in model.state_dict().items()},
                                      {n: m.clone() for n, m in masks.items()})
        specs[(int(k), run_name)] = spec
        return real_train(model, data, spec, name=name, masks=masks, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(sparse_step, "train", recording_train)
    try:
        assert run(tmp, cfg) == 0
    finally:
        mp.undo()
    return {"save": save, "starts": starts, "cfg": cfg, "specs": specs}


def test_every_sparse_run_starts_from_its_dense_checkpoint_at_k(resnet_run):
    save, starts = resnet_run["save"], resnet_run["starts"]
    assert set(starts) == {(k, r) for k in (0, 1) for r in ("lth", "naive", "permuted", "random")}
    source = {"lth": "A", "naive": "B", "permuted": "B", "random": "B"}
    for (k, run_name), (state, _) in starts.items():
        want = load(dense_dir(save, source[run_name]) / f"epoch_{k}.safetensors")
        other = load(dense_dir(save, "B" if source[run_name] == "A" else "A") / f"epoch_{k}.safetensors")
        assert set(state) == set(want)
        # Weights and BatchNorm buffers (running mean/var, batch count) alike.
        assert any("running_mean" in n for n in state)
        for n in want:
            assert torch.equal(state[n], want[n]), (k, run_name, n)
        assert not all(torch.equal(state[n], other[n]) for n in want), (k, run_name)
    # k selects the epoch: the k=0 and k=1 starts of one run differ.
    assert not all(torch.equal(starts[(0, "lth")][0][n], starts[(1, "lth")][0][n]) for n in starts[(0, "lth")][0])


def test_sparse_runs_train_the_rest_of_the_schedule_from_k_with_the_sparse_lr(resnet_run):
    cfg, specs = resnet_run["cfg"], resnet_run["specs"]
    for (k, run_name), spec in specs.items():
        assert spec.epochs == cfg["sparse_epochs"] - k, (k, run_name)
        assert spec.lr == cfg["optimizer"]["sparse_lr"]
    # The runs of one rewind point see the same data order: they differ only in weights and mask.
    for k in (0, 1):
        assert len({specs[(k, r)].seed for r in ("lth", "naive", "permuted", "random")}) == 1
    assert specs[(0, "lth")].seed != specs[(1, "lth")].seed
    results = json.loads(next(resnet_run["save"].glob("*/seed_0/results.json")).read_text())
    assert set(results["sparse"]) == {"0", "1"}


def test_every_sparse_run_trains_under_its_mask(resnet_run):
    save, starts = resnet_run["save"], resnet_run["starts"]
    mask_a = {n: m.bool() for n, m in load(artifacts(save, "imp")[0] / "mask.safetensors").items()}
    perms = load(artifacts(save, "perm")[0] / "permutation.safetensors")
    spec = RunContext(cfg=config_from_dict(resnet_run["cfg"], check_data=False), seed=0,
                      device=torch.device("cpu"), label="t", command="").new_model(0).permutation_spec()
    expected_permuted = {n: m.bool() for n, m in permute(spec, mask_a, perms).items()}
    assert any(not torch.equal(expected_permuted[n], mask_a[n]) for n in mask_a)  # pi moves the mask
    for k in (0, 1):
        for run_name, want in (("lth", mask_a), ("naive", mask_a), ("permuted", expected_permuted)):
            got = starts[(k, run_name)][1]
            assert set(got) == set(want)
            for n in want:
                assert torch.equal(got[n].bool(), want[n]), (k, run_name, n)
        # The random control: the same number of kept weights in every layer as M_A, other positions.
        rand = starts[(k, "random")][1]
        for n in mask_a:
            assert int(rand[n].sum()) == int(mask_a[n].sum()), n
        assert any(not torch.equal(rand[n].bool(), mask_a[n]) for n in mask_a)


def test_layer_densities_of_the_mask_differ_so_a_global_random_mask_would_be_caught(resnet_run):
    # The per-layer check above only discriminates if M_A's layers have different densities.
    mask_a = load(artifacts(resnet_run["save"], "imp")[0] / "mask.safetensors")
    densities = {round(float(m.float().mean()), 3) for m in mask_a.values()}
    assert len(densities) > 1


# ------------------------------------------------------------------ matching method


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_the_configured_matching_method_is_the_one_that_runs(tmp_path, fake_cifar10, method):
    save = tmp_path / "runs"
    raw = tiny_config(fake_cifar10, save, matching__method=method, rewind_points=[0],
                      sparse__random_control=False)
    assert run(tmp_path, raw, "-pretrain", "True") == 0
    saved = load(artifacts(save, "perm")[0] / "permutation.safetensors")
    cfg = config_from_dict(raw)
    ctx = RunContext(cfg=cfg, seed=0, device=torch.device("cpu"), label="t", command="")
    model_a = ctx.load_model(graph.dense(cfg, 0, "A"), "final.safetensors")
    model_b = ctx.load_model(graph.dense(cfg, 0, "B"), "final.safetensors")
    spec = model_a.permutation_spec()
    by_activation = activation_matching(model_a, model_b, ctx.data.eval_train_batches(cfg.matching.num_batches),
                                        spec=spec)
    by_weight = weight_matching(spec, model_a.state_dict(), model_b.state_dict(), seed=cfg.matching.seed,
                                max_iter=cfg.matching.max_iter)
    # Only meaningful if the two methods disagree on these models.
    assert any(not torch.equal(by_activation[g], by_weight[g]) for g in by_weight)
    expected = by_activation if method == "activation" else by_weight
    assert set(saved) == set(expected)
    for g in expected:
        assert torch.equal(saved[g], expected[g].long()), g


# ------------------------------------------------------------------ artifact keys


# Edges of DESIGN §3.3's table: which artifact is made from which.
CHILDREN: dict[str, tuple[str, ...]] = {
    "dense_A": ("chain", "perm", "interp", "sparse_lth"),
    "dense_B": ("perm", "interp", "sparse_naive", "sparse_permuted", "sparse_random"),
    "chain": ("imp",),
    "imp": ("pmask", "sparse_lth", "sparse_naive", "sparse_random"),
    "perm": ("pmask", "interp"),
    "pmask": ("sparse_permuted",),
    "interp": (),
}
SPARSE = ("sparse_lth", "sparse_naive", "sparse_permuted", "sparse_random")
DENSE = ("dense_A", "dense_B")

MASK_SOURCE = Path(__file__).with_name("mask_source.yaml")

# Config field -> (the stages whose own settings hold it, values to try).
FIELDS: dict[str, tuple[tuple[str, ...], list[Any]]] = {
    "model_type": (DENSE, ["ResNet"]),
    "width_multiplier": (DENSE, [2, 3]),
    "mlp_hidden": (DENSE, [[16, 16], [24]]),
    "dataset": (DENSE, ["cifar100"]),
    "train_subset": (DENSE, [256, None]),
    "test_subset": (DENSE, [128, None]),
    "normalization": (DENSE, ["imagenet"]),
    "epochs": (("dense_A",), [4, 5]),
    "model_b_epochs": (("dense_B",), [4, 5]),
    "batch_size": (DENSE, [32, 128]),
    "precision": (DENSE, ["bf16"]),
    "optimizer.lr": (DENSE, [0.1, 0.01]),
    "optimizer.momentum": (DENSE + SPARSE, [0.5, 0.0]),
    "optimizer.weight_decay": (DENSE + SPARSE, [0.0, 1e-3]),
    "optimizer.nesterov": (DENSE + SPARSE, [True]),
    "optimizer.sparse_lr": (SPARSE, [0.1, 0.2]),
    "optimizer.schedule": (DENSE + SPARSE, ["step"]),
    # A step schedule's parameters (tried under `schedule: step`, see STEP_ONLY): dense and sparse runs use it.
    "optimizer.warmup_epochs": (DENSE + SPARSE, [1, 2]),
    "optimizer.milestones": (DENSE + SPARSE, [[1], [1, 2]]),
    "optimizer.gamma": (DENSE + SPARSE, [0.5]),
    "sparse_epochs": (SPARSE, [4, 6]),
    # The same k is another dense checkpoint under each convention; the dense artifacts hold both.
    "rewind_convention": (SPARSE, ["released"]),
    "pruning.sparsity": (("imp",), [0.7, 0.8]),
    "pruning.tolerance": (("imp",), [0.01, 0.001]),
    "pruning.prune_epochs": (("imp",), [10, 99]),
    "pruning.prune_perc": (("chain",), [0.2, 0.4]),
    "pruning.prune_lr": (("chain",), [0.1]),
    "pruning.train_epochs_per_prune": (("chain",), [2, 3]),
    "pruning.momentum": (("chain",), [0.9]),
    "pruning.weight_decay": (("chain",), [5e-4]),
    "pruning.rewind_epoch": (("chain",), [1, 2]),
    "pruning.schedule": (("chain",), ["constant"]),
    "prune_exclude": (("chain",), [["classifier"], ["fc1", "fc2"]]),  # which weights IMP prunes
    "matching.method": (("perm",), ["weight"]),
    "matching.num_batches": (("perm",), [2, 8]),
    "matching.augment": (("perm",), [True]),
    "matching.stream": (("perm",), ["released"]),
    "matching.std": (("perm",), ["batch_mean"]),
    "matching.alphas": (("interp",), [[0.0, 0.5, 1.0], [0.0, 0.1, 0.5, 0.9, 1.0]]),
    "matching.interpolation_batches": (("interp",), [3, 5]),
    "matching.repair": (("interp",), [True]),
    # Fields that change where or how fast, never what: no artifact may change.
    "device": ((), ["cuda"]),
    "threads": ((), [1, 2]),
    "num_workers": ((), [0, 4]),
    "compile": ((), [True]),
    "eval_every": ((), [2]),
    "dataset_root": ((), ["/elsewhere"]),
    "download": ((), [True]),
    "project": ((), ["p"]),
    "entity": ((), ["e"]),
    "tracking": ((), [["tensorboard"], ["wandb", "tensorboard"]]),  # mirrors metrics, computes nothing
    "seed": ((), [3]),  # the config's seed field; the run seed is the -seed argument
    "rewind_points": ((), [[0, 1, 2]]),  # adds artifacts, changes none that exist
    "sparse.random_control": ((), [False]),
    # Adds the `<run>+rescale` runs (their own keys, tests/test_rescale_init.py), changes none that exist.
    "sparse.rescale_init": ((), [True]),
    "sparse.rescale_bn_batches": ((), [10]),  # only `+rescale` runs use it
    # Mask transfer: dense A and IMP become the source's (another dataset here), with all below them; B stays.
    "pruning.mask_from": (("dense_A",), [{"config": str(MASK_SOURCE)}, {"config": str(MASK_SOURCE), "seed": 4}]),
    "sparse.runs": ((), [["lth", "naive", "permuted"]]),
    # Fields that apply to other models or methods only (checked below for the model they apply to).
    "batchnorm": ((), [True]),
    "model_kwargs": ((), [{}]),  # plug-in models only: tests/test_own_model.py shows it keys their artifacts
    "init_weights": ((), [True]),
    "pruning.tolerance_resnet20": ((), [0.01]),
    "pruning.tolerance_vgg11": ((), [1e-6]),
    "matching.max_iter": ((), [5]),
    "matching.seed": ((), [3]),
    "save_path": ((), ["/other"]),  # moves the artifacts, changes no key
    "optimizer.type": ((), ["sgd"]),  # SGD is the only optimizer; its spelling is not part of a key
    # A study's settings enter only its own artifacts' keys (tests/test_study_*.py), never the main graph's.
    "studies.early_matching": ((), [{"epochs": [0, 1]}]),
    "studies.imp_barriers": ((), [{"repair": [True]}, {"alphas": [0.0, 0.5, 1.0]}]),
    "studies.ensemble": ((), [{"members": 3}, {"members": 2, "rewind": 1}]),
}


def affected(roots: tuple[str, ...]) -> set[str]:
    out, todo = set(), list(roots)
    while todo:
        node = todo.pop()
        if node not in out:
            out.add(node)
            todo.extend(CHILDREN.get(node, ()))
    return out


def base_config() -> dict[str, Any]:
    return {"model_type": "MLP", "mlp_hidden": [32, 32], "dataset": "cifar10", "dataset_root": "/data",
            "train_subset": 512, "test_subset": 256,
            "epochs": 3, "model_b_epochs": 3, "sparse_epochs": 3, "batch_size": 64, "device": "cpu",
            "rewind_points": [0, 1],
            "save_path": "/runs", "optimizer": {"lr": 0.05, "sparse_lr": 0.05},
            "pruning": {"sparsity": 0.6, "prune_perc": 0.3, "train_epochs_per_prune": 1, "tolerance": 0.005},
            "matching": {"method": "activation", "num_batches": 4, "interpolation_batches": 2},
            "sparse": {"random_control": True}}


def stage_hashes(raw: dict[str, Any], run_seed: int = 0) -> dict[str, str]:
    cfg = config_from_dict(raw, check_data=False)
    out = {"dense_A": graph.dense(cfg, run_seed, "A"), "dense_B": graph.dense(cfg, run_seed, "B"),
           "chain": graph.imp_chain(cfg, run_seed), "imp": graph.imp(cfg, run_seed),
           "perm": graph.permutation(cfg, run_seed), "pmask": graph.permuted_mask(cfg, run_seed),
           "interp": graph.interpolation(cfg, run_seed)}
    hashes = {name: a.hash for name, a in out.items()}
    for k in (0, 1):
        for run_name in ("lth", "naive", "permuted", "random"):
            hashes[f"sparse_{run_name}@{k}"] = graph.sparse(cfg, run_seed, k, run_name).hash
    return hashes


def changed_stages(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name.split("@")[0] for name in before if before[name] != after[name]}


def with_field(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


def leaf_fields(cls: type = Config, prefix: str = "") -> set[str]:
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out |= leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def test_every_config_field_is_classified():
    """A new config key must say which stages use it, or this test (and the property below) cannot check it."""
    assert leaf_fields() == set(FIELDS)


@settings(max_examples=80, deadline=None)
@given(field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_each_field_changes_exactly_the_artifacts_that_depend_on_it(field, data):
    roots, values = FIELDS[field]
    value = data.draw(st.sampled_from(values))
    base = base_config()
    if field == "pruning.rewind_epoch":
        base = with_field(base, "epochs", 4)
    if field in STEP_ONLY:  # a cosine config refuses them: they are tried where they apply
        base = with_field(base, "optimizer.schedule", "step")
    changed = changed_stages(stage_hashes(base), stage_hashes(with_field(base, field, value)))
    assert changed == affected(roots), (field, value)


STEP_ONLY = ("optimizer.warmup_epochs", "optimizer.milestones", "optimizer.gamma")


def test_the_step_schedule_parameters_are_in_no_key_of_a_cosine_run():
    # Under cosine they change nothing, so keys leave them out; the config refuses non-defaults (test_config_cli).
    base = base_config()
    step = with_field(base, "optimizer.schedule", "step")
    assert changed_stages(stage_hashes(base), stage_hashes(step)) == affected(DENSE)
    cosine = graph.dense(config_from_dict(base, check_data=False), 0, "A").settings["optimizer"]
    assert set(cosine) == {"type", "lr", "momentum", "weight_decay", "nesterov", "schedule"}


@pytest.mark.parametrize("model_type,field,value", [
    ("VGG11", "batchnorm", True), ("VGG11", "init_weights", True), ("VGG11", "pruning.tolerance_vgg11", 1e-6),
    ("ResNet", "pruning.tolerance_resnet20", 0.01),
])
def test_model_specific_fields_change_the_artifacts_of_their_model(model_type, field, value):
    base = with_field(base_config(), "model_type", model_type)
    base["pruning"].pop("tolerance")  # the per-architecture tolerance applies only without the override
    roots = DENSE if field in ("batchnorm", "init_weights") else ("imp",)
    changed = changed_stages(stage_hashes(base), stage_hashes(with_field(base, field, value)))
    assert changed == affected(roots)


def test_weight_matching_settings_change_only_the_permutation_and_below():
    base = with_field(base_config(), "matching.method", "weight")
    for field, value in (("matching.max_iter", 5), ("matching.seed", 3)):
        changed = changed_stages(stage_hashes(base), stage_hashes(with_field(base, field, value)))
        assert changed == affected(("perm",)), field
    # Which batches activation matching sees means nothing to weight matching.
    assert changed_stages(stage_hashes(base), stage_hashes(with_field(base, "matching.augment", True))) == set()


def test_the_run_seed_changes_every_artifact():
    assert changed_stages(stage_hashes(base_config(), 0), stage_hashes(base_config(), 1)) == affected(DENSE)

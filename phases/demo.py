"""The embedded demo: both phases on Fashion-MNIST with an MLP at 97% sparsity, on CPU."""

from __future__ import annotations

from typing import Any

DEMO_CONFIG: dict[str, Any] = {
    "model_type": "MLP",
    "mlp_hidden": [512, 512],
    "dataset": "fashion-mnist",
    "dataset_root": "datasets",  # Debian's /usr/share/datasets/fashion-mnist is used when this is absent
    "epochs": 8,
    "sparse_epochs": 8,
    "sparse": {"random_control": True},  # a random mask of M_A's per-layer density, for scale
    "batch_size": 128,
    "num_workers": 0,
    "device": "cpu",
    "eval_every": 1,
    "rewind_points": [1],
    # k counts epochs (k = 0 would be the initialisation), as the paper's text says; the paper configs use
    # `released` instead, the released code's meaning (its checkpoint k holds the weights after k + 1 epochs).
    "rewind_convention": "epochs",
    "save_path": "runs",
    "optimizer": {"type": "SGD", "lr": 0.05, "sparse_lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "pruning": {"sparsity": 0.97, "prune_perc": 0.2, "prune_lr": 0.05, "train_epochs_per_prune": 1,
                "tolerance": 0.005},
    "matching": {"method": "activation", "num_batches": 50},
}

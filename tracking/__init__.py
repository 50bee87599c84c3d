"""Experiment tracking: Weights & Biases and TensorBoard mirror ``metrics.jsonl`` (opt-in, ``tracking:``).

``metrics.jsonl`` stays the record; a backend only mirrors it, so it never
changes a result, and a backend that fails is a warning, never a failed
training. Nothing here imports wandb or TensorBoard until a backend logs.
"""

from tracking.preflight import check_tracking
from tracking.tracker import Tracker, close_all, log_table

__all__ = ["Tracker", "check_tracking", "close_all", "log_table"]

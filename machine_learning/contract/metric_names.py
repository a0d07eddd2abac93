"""The metrics training logs, named once: evaluation, the gate's thresholds and the report.

Standard library only, so the CI side can name metrics without importing scikit-learn.
"""

from __future__ import annotations

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
MAIN_METRIC = "test_f1"  # what the project is judged by; listed first in every table
LOWER_IS_BETTER = frozenset({"log_loss"})
GATE_METRICS = tuple(f"test_{name}" for name in METRIC_NAMES)  # what thresholds may name


def greater_is_better(metric: str) -> bool:
    """The direction of a logged metric (``test_log_loss`` improves downwards)."""
    return metric.split("_", 1)[-1] not in LOWER_IS_BETTER

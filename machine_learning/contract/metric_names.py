"""The metrics training logs, named once: evaluation, the gate's thresholds and the report.

Standard library only, so the CI side can name metrics without importing scikit-learn.
"""

from __future__ import annotations

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
MAIN_METRIC = "test_f1"  # what the project is judged by; listed first in every table
LOWER_IS_BETTER = frozenset({"log_loss"})
# The second test set, recent battles held out of the inference log: logged as
# ``recent_test_<metric>``, shown by the gate and the report, judged only when a threshold names
# one (the gate's floors are on the simulated test set).
RECENT_TEST_PREFIX = "recent_test_"
RECENT_TEST_METRICS = tuple(f"{RECENT_TEST_PREFIX}{name}" for name in METRIC_NAMES)
GATE_METRICS = (
    *(f"test_{name}" for name in METRIC_NAMES),
    *RECENT_TEST_METRICS,
)  # what thresholds may name


def greater_is_better(metric: str) -> bool:
    """The direction of a logged metric (``test_log_loss`` improves downwards)."""
    return not any(metric == name or metric.endswith(f"_{name}") for name in LOWER_IS_BETTER)

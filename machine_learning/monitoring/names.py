"""What the monitor profiles and measures, named once: the profile, the thresholds and the record.

Light (no pandas, scipy or scikit-learn), so ``ci`` validates ``monitor.<metric>`` thresholds
cheaply.

Why these features. The ``balanced`` scenario (the natural drift of this domain) draws side A
over the same Pokédex as ``random`` and side B near it in base-stat-total order, so every
per-side column keeps its distribution (PSI ≤ 0.002 between 20,000 battles of each, measured):
the drift lives only in the *gaps between the sides*. Measured PSI, random vs balanced:
``diff_bst`` 6.0, ``log_bulk_ratio`` 1.0, ``diff_hits_to_ko`` 0.18 (the damage race),
``log_speed_ratio`` 0.09 and ``a_moves_first`` 0.02 (speed order), the predicted probability
0.98. The raw columns are profiled too (all but the names), for the drifts that do move them,
such as traffic concentrated on a few popular Pokémon; the names are not (1,336 levels: a window
of a few hundred battles cannot fill them, and a name's drift shows in its stats and types).
"""

from __future__ import annotations

from machine_learning.data import STATS

PREDICTION = "p_a_wins"
TYPE_COLUMNS = ("a_type1", "a_type2", "b_type1", "b_type2")
STAT_COLUMNS = tuple(f"{side}_{stat}" for side in "ab" for stat in STATS)
# Engineered features (BattleFeatures' names) that carry the domain's drift, by dataset version.
ENGINEERED = {
    "v1": ("diff_bst",),
    "v2": ("diff_bst", "log_bulk_ratio", "diff_hits_to_ko", "log_speed_ratio", "a_moves_first"),
}
CATEGORICAL = frozenset({*TYPE_COLUMNS, "a_moves_first"})
ALL_FEATURES = (*STAT_COLUMNS, *TYPE_COLUMNS, *ENGINEERED["v2"], PREDICTION)

DRIFT_STATISTICS = ("psi", "p_value")
QUALITY_METRICS = ("accuracy", "f1", "log_loss", "ece")
LOWER_IS_BETTER = frozenset({"psi", "log_loss", "ece"})


def profiled_features(dataset_version: str) -> tuple[str, ...]:
    """The battle features a profile of this dataset version holds (the prediction aside)."""
    return (*STAT_COLUMNS, *TYPE_COLUMNS, *ENGINEERED[dataset_version])


def is_categorical(feature: str) -> bool:
    """Types and the speed order (-1/0/1) are categories; the rest are binned by quantiles."""
    return feature in CATEGORICAL


def drift_metric(feature: str, statistic: str) -> str:
    """``diff_bst.psi``: the name of a drift figure in monitor.json, thresholds and MLflow."""
    return f"{feature}.{statistic}"


def monitor_metrics() -> tuple[str, ...]:
    """Every metric a ``monitor.<metric>`` threshold may name."""
    drift = tuple(drift_metric(f, s) for f in ALL_FEATURES for s in DRIFT_STATISTICS)
    return (*drift, *QUALITY_METRICS)


def greater_is_better(metric: str) -> bool:
    """The metric's own direction: drift (PSI), log loss and calibration error improve down."""
    return metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER

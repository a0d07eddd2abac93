"""One window of one version's logged battles, measured against that version's profile.

The monitor command reads a window's rows from the inference log (raw columns, ``p_a_wins``,
and the outcome joined by ``battle_id``, missing until it arrives) and hands them here; what
comes back is what monitor.json records and the decision judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from machine_learning.contract.records import JsonRecord
from machine_learning.monitoring import MonitoringInputError
from machine_learning.monitoring.drift import FeatureDrift, window_drift
from machine_learning.monitoring.names import DRIFT_STATISTICS, QUALITY_METRICS, drift_metric
from machine_learning.monitoring.quality import LiveQuality, live_quality

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.monitoring.profile import ReferenceProfile


@dataclass(frozen=True)
class WindowMeasurement(JsonRecord):
    """A version's battles in one window: how many, their drift, and their live quality."""

    version: str
    n_rows: int
    drift: list[FeatureDrift] = field(default_factory=list)
    quality: LiveQuality | None = None

    def __post_init__(self) -> None:
        if self.n_rows < 0:
            raise ValueError(f"version {self.version[:20]!r}: n_rows cannot be negative")
        if self.n_rows == 0 and (self.drift or self.quality):
            raise ValueError(f"version {self.version[:20]!r}: no rows, yet figures measured")
        if any(d.n + d.n_invalid != self.n_rows for d in self.drift):
            raise ValueError(f"version {self.version[:20]!r}: a feature counts other rows")
        if self.quality and self.quality.n_outcomes > self.n_rows:
            raise ValueError(f"version {self.version[:20]!r}: more outcomes than battles")

    def metrics(self) -> dict[str, float]:
        """Every figure measured, by the name thresholds use (``diff_bst.psi``, ``accuracy``)."""
        values: dict[str, float] = {}
        for drift in self.drift:
            for statistic in DRIFT_STATISTICS:
                value = getattr(drift, statistic)
                if value is not None:
                    values[drift_metric(drift.feature, statistic)] = value
        if self.quality:
            values |= {name: getattr(self.quality, name) for name in QUALITY_METRICS}
        return values

    def sample_size(self, metric: str) -> int:
        """How many values a metric was computed from: a feature's valid values, the outcomes
        for a quality metric, 0 for a metric not measured."""
        if metric in QUALITY_METRICS:
            return self.quality.n_outcomes if self.quality else 0
        feature = metric.rsplit(".", 1)[0]
        return next((d.n for d in self.drift if d.feature == feature), 0)


def measure_window(
    profile: ReferenceProfile,
    version: str,
    battles: pd.DataFrame,
    p_a_wins: np.ndarray,
    a_wins: np.ndarray | None = None,
) -> WindowMeasurement:
    """Drift and quality of a version's battles in a window.

    ``a_wins`` is aligned with the rows: 1 or 0 once the outcome is known, NaN until then
    (what a left join of the outcomes gives); None when no outcome was asked for.
    A window with no rows is a measurement of zero rows, which the decision calls "not
    enough data", never an error. The probabilities are the predictor's own, so one that is
    not a number in [0, 1] means a corrupt log: refused, where a battle feature that is not a
    number is skipped and counted (see drift).
    """
    if len(battles) == 0:
        return WindowMeasurement(version, 0)
    p = np.asarray(p_a_wins, dtype=float)
    if not np.all((p >= 0) & (p <= 1)):  # NaN fails both comparisons
        raise MonitoringInputError(f"version {version}: p_a_wins must be numbers in [0, 1]")
    drift = window_drift(profile, battles, p)
    quality = None
    if a_wins is not None:
        outcomes = np.asarray(a_wins, dtype=float)
        if outcomes.shape != p.shape:
            raise MonitoringInputError(f"{outcomes.shape} outcomes for {p.shape} predictions")
        known = ~np.isnan(outcomes)
        quality = live_quality(outcomes[known], p[known], len(battles))
    return WindowMeasurement(version, len(battles), drift, quality)

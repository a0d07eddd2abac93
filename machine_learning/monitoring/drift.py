"""Drift of a window of live values against a feature's reference profile.

Two figures per feature, as Evidently reports them:

- **PSI** (population stability index) over the reference bins: ``Σ (a - e) · ln(a / e)``
  with ``e`` the reference share and ``a`` the window's. A share of 0 on either side would make
  it infinite, so both are clipped to ``EPSILON`` (1e-4) first: an emptied bin still adds a
  large term (0.69 for a reference decile), and 1e-4 is below one battle's share in any window
  the monitor judges (≤ 10,000 rows), so it never outweighs a bin that holds a battle.
  The usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift.
- **a test suited to the kind**: for a continuous feature, the two-sample Kolmogorov-Smirnov
  test against the profile's stored sample (exact for small samples, asymptotic otherwise;
  conservative with tied values, such as integer base stats); for a categorical one, Pearson's
  chi-square goodness of fit to the reference shares (taken as exact: they come from the whole
  training set), categories expected fewer than 5 times pooled into one cell so the chi-square
  approximation holds.

Values that are not finite numbers (or, for categories, missing) are left out of both and
counted in ``n_invalid``: one corrupt row should not stop a monitoring pass, and the count says
it happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from machine_learning.contract.records import JsonRecord
from machine_learning.monitoring import MonitoringInputError
from machine_learning.monitoring.profile import FeatureKind, FeatureProfile, feature_values

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.monitoring.profile import ReferenceProfile

EPSILON = 1e-4
MIN_EXPECTED = 5.0  # a chi-square cell expected fewer times is pooled
KS_TEST, CHI_SQUARE_TEST = "ks_2samp", "chisquare"


@dataclass(frozen=True)
class FeatureDrift(JsonRecord):
    """One feature in one window: how many values were compared and how far they moved.

    ``psi``, ``statistic`` and ``p_value`` are None when no valid value was left to compare.
    """

    feature: str
    kind: FeatureKind
    n: int
    n_invalid: int = 0
    psi: float | None = None
    test: str = ""
    statistic: float | None = None
    p_value: float | None = None

    def __post_init__(self) -> None:
        if self.n < 0 or self.n_invalid < 0:
            raise ValueError(f"{self.feature}: counts cannot be negative")
        if self.psi is not None and self.psi < 0:
            raise ValueError(f"{self.feature}: psi cannot be negative, got {self.psi}")
        if self.p_value is not None and not 0.0 <= self.p_value <= 1.0:
            raise ValueError(f"{self.feature}: p_value must be in [0, 1], got {self.p_value}")
        if self.test not in ("", KS_TEST, CHI_SQUARE_TEST):
            raise ValueError(f"{self.feature}: unknown test {self.test[:30]!r}")


def population_stability_index(
    reference_shares: np.ndarray, window_shares: np.ndarray, epsilon: float = EPSILON
) -> float:
    """PSI between two share vectors over the same bins (shares clipped to ``epsilon``)."""
    expected = np.clip(np.asarray(reference_shares, dtype=float), epsilon, None)
    actual = np.clip(np.asarray(window_shares, dtype=float), epsilon, None)
    if expected.shape != actual.shape:
        raise ValueError(f"PSI needs shares over the same bins: {expected.shape} vs {actual.shape}")
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_test(reference_sample: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy import stats

    result = stats.ks_2samp(reference_sample, values)
    return float(result.statistic), _probability(result.pvalue)


def chi_square_test(reference_shares: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Chi-square goodness of fit of ``counts`` to the reference shares.

    Cells expected fewer than MIN_EXPECTED times are pooled. A pooled cell the reference never
    saw (expected 0) but the window fills gets EPSILON of the rows as its expectation: a large,
    finite statistic. With a single cell left there is nothing to test: (0, 1).
    """
    from scipy import stats

    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    expected = np.asarray(reference_shares, dtype=float) * n
    small = expected < MIN_EXPECTED
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0 and observed[-1] > 0:
        expected[-1] = EPSILON * n
    keep = (expected > 0) | (observed > 0)
    observed, expected = observed[keep], expected[keep]
    if len(observed) < 2:
        return 0.0, 1.0
    expected *= n / expected.sum()  # what scipy requires: the same total
    result = stats.chisquare(observed, expected)
    return float(result.statistic), _probability(result.pvalue)


def feature_drift(reference: FeatureProfile, values: np.ndarray) -> FeatureDrift:
    """PSI and the kind's test for one feature's window values."""
    values = np.asarray(values, dtype=float if reference.kind is FeatureKind.CONTINUOUS else object)
    valid = _valid(reference.kind, values)
    kept = values[valid]
    invalid = int(len(values) - len(kept))
    if len(kept) == 0:
        return FeatureDrift(reference.name, reference.kind, 0, invalid)
    counts = reference.bin_counts(kept)
    psi = population_stability_index(np.asarray(reference.shares), counts / len(kept))
    if reference.kind is FeatureKind.CONTINUOUS:
        test, (statistic, p_value) = KS_TEST, ks_test(np.asarray(reference.sample), kept)
    else:
        test, (statistic, p_value) = CHI_SQUARE_TEST, chi_square_test(reference.shares, counts)
    return FeatureDrift(
        reference.name, reference.kind, len(kept), invalid, psi, test, statistic, p_value
    )


def window_drift(
    profile: ReferenceProfile, battles: pd.DataFrame, p_a_wins: np.ndarray
) -> list[FeatureDrift]:
    """Every profiled feature of the window's battles, then its predicted probability."""
    if len(battles) != len(p_a_wins):
        raise MonitoringInputError(
            f"{len(battles)} battles but {len(p_a_wins)} predicted probabilities"
        )
    if len(battles) == 0:
        raise MonitoringInputError("a window with no battles has no drift to measure")
    values = feature_values(battles, profile.dataset_version)
    drifts = [feature_drift(feature, values[feature.name]) for feature in profile.features]
    return [*drifts, feature_drift(profile.prediction, p_a_wins)]


def _valid(kind: FeatureKind, values: np.ndarray) -> np.ndarray:
    if kind is FeatureKind.CONTINUOUS:
        return np.isfinite(values)
    return np.array([isinstance(v, str) for v in values], dtype=bool)


def _probability(p: float) -> float:
    """scipy's p-value as a float in [0, 1] (it may be a numpy scalar, or NaN when undefined)."""
    p = float(p)
    return 1.0 if math.isnan(p) else min(max(p, 0.0), 1.0)

"""Live quality: how right the served model was on the battles whose outcome came back.

Accuracy, f1 and log loss are computed by the training job's own function
(``evaluate.classification_metrics``), so a live accuracy means what the gate's test accuracy
means. The expected calibration error is added because a model can keep its accuracy while its
probabilities stop meaning what they say, which is what a caller of ``p_a_wins`` relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from machine_learning.contract.records import JsonRecord
from machine_learning.monitoring import MonitoringInputError

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class LiveQuality(JsonRecord):
    """Quality on the window's battles with outcomes; ``outcome_share`` of all its battles."""

    n_outcomes: int
    outcome_share: float
    accuracy: float
    f1: float
    log_loss: float
    ece: float

    def __post_init__(self) -> None:
        if self.n_outcomes < 1:
            raise ValueError("live quality needs at least one battle with an outcome")
        for name in ("outcome_share", "accuracy", "f1", "ece"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.log_loss < 0:
            raise ValueError(f"log_loss cannot be negative, got {self.log_loss}")


def expected_calibration_error(
    a_wins: np.ndarray, p_a_wins: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """ECE of P(A wins) over ``bins`` equal-width bins: ``Σ (n_b / n) · |wins_b - p_b|``.

    Binned on the probability of side A (not on the predicted class's confidence): sides are
    symmetric here, and it is the number the service returns. Expect ~0.01-0.03 from noise
    alone at a few hundred battles: most bins then hold a handful of them.
    """
    y, p = _checked(a_wins, p_a_wins)
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    wins = np.bincount(index, weights=y, minlength=bins)
    mass = np.bincount(index, weights=p, minlength=bins)
    filled = counts > 0
    gaps = np.abs(wins[filled] - mass[filled]) / counts[filled]
    return float(np.sum(counts[filled] / len(y) * gaps))


def live_quality(a_wins: np.ndarray, p_a_wins: np.ndarray, n_rows: int) -> LiveQuality | None:
    """Quality on the battles with outcomes (``a_wins`` 1/0 and their ``p_a_wins``) among a
    window of ``n_rows`` battles; None when none has an outcome yet."""
    from machine_learning.evaluate import classification_metrics

    y, p = _checked(a_wins, p_a_wins)
    if len(y) > n_rows:
        raise MonitoringInputError(f"{len(y)} outcomes for a window of {n_rows} battles")
    if len(y) == 0:
        return None
    metrics = classification_metrics(y, p, "live")
    return LiveQuality(
        n_outcomes=len(y),
        outcome_share=len(y) / n_rows,
        accuracy=metrics["live_accuracy"],
        f1=metrics["live_f1"],
        log_loss=metrics["live_log_loss"],
        ece=expected_calibration_error(y, p),
    )


def _checked(a_wins: np.ndarray, p_a_wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes 0/1 and probabilities in [0, 1], as many of each. Both come from our own
    service (the outcomes endpoint, the predictor), so anything else is refused, not skipped."""
    y = np.asarray(a_wins, dtype=float)
    p = np.asarray(p_a_wins, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise MonitoringInputError(f"{y.shape} outcomes but {p.shape} probabilities")
    if not np.all((y == 0) | (y == 1)):
        raise MonitoringInputError("outcomes must be 1 (side A won) or 0")
    if not np.all((p >= 0) & (p <= 1)):  # NaN fails both comparisons
        raise MonitoringInputError("predicted probabilities must be numbers in [0, 1]")
    return y, p

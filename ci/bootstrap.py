"""Metrics of scored battles and their paired bootstrap, vectorised over resamples.

A resample is a column of weights (how often each test battle was drawn), so one matrix product
gives a metric for every resample at once, and the candidate and the champion are scored on
the very same resamples (paired): the interval is that of their difference, which is much
narrower than comparing two independent intervals. Weights are drawn as Poisson(1) counts (the
"Poisson bootstrap"): the same distribution as multinomial resampling for large samples, and
one vectorised draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1_000
CONFIDENCE = 0.95
EPSILON = 1e-15


@dataclass(frozen=True)
class Comparison:
    """Candidate and champion values of one metric on the same rows, and the paired interval."""

    candidate: float
    champion: float
    delta: float
    interval: tuple[float, float]


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(n, resamples + 1) weights; column 0 is the original sample (all ones)."""
    rng = np.random.default_rng(seed)
    weights = np.ones((n, resamples + 1))
    weights[:, 1:] = rng.poisson(1.0, (n, resamples))
    return weights


def metrics(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, precision, recall, f1, roc_auc and log_loss for each column of ``weights``."""
    y = y.astype(bool)
    proba = np.asarray(proba, dtype=np.float64)  # float32 rounds 1 - 1e-15 up to 1: log(0)
    predicted = proba >= 0.5
    total = weights.sum(axis=0)
    tp = (predicted & y) @ weights
    fp = (predicted & ~y) @ weights
    fn = (~predicted & y) @ weights
    clipped = np.clip(proba, EPSILON, 1 - EPSILON)
    losses = -np.where(y, np.log(clipped), np.log(1 - clipped))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": ((predicted == y) @ weights) / total,
            "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), 0.0),
            "f1": np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
            "roc_auc": roc_auc(y, proba, weights),
            "log_loss": (losses @ weights) / total,
        }


def roc_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC per column of ``weights`` (ties count one half, as in scikit-learn)."""
    order = np.argsort(score, kind="stable")
    sorted_score, positive = score[order], y[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w = weights[order]
    pos_per_group = np.add.reduceat(w * positive[:, None], starts, axis=0)
    neg_per_group = np.add.reduceat(w * ~positive[:, None], starts, axis=0)
    negatives_below = np.cumsum(neg_per_group, axis=0) - neg_per_group
    wins = (pos_per_group * (negatives_below + 0.5 * neg_per_group)).sum(axis=0)
    pairs = pos_per_group.sum(axis=0) * neg_per_group.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def compare(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Comparison]:
    """Every metric of both models on the same rows, with the paired 95% interval of the delta."""
    weights = resample_weights(len(y), resamples, seed)
    ours, theirs = metrics(y, candidate, weights), metrics(y, champion, weights)
    tail = (1 - CONFIDENCE) / 2 * 100
    result = {}
    for name in ours:
        deltas = ours[name][1:] - theirs[name][1:]
        low, high = np.nanpercentile(deltas, [tail, 100 - tail])
        result[name] = Comparison(
            float(ours[name][0]),
            float(theirs[name][0]),
            float(ours[name][0] - theirs[name][0]),
            (float(low), float(high)),
        )
    return result


def point_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The metrics on the rows as they are (no resampling)."""
    values = metrics(y, proba, np.ones((len(y), 1)))
    return {name: float(value[0]) for name, value in values.items()}

"""Metrics for a fitted model and for the trivial baseline, assembled in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn import metrics as skm

from machine_learning.contract.metric_names import RECENT_TEST_PREFIX
from machine_learning.data import STATS
from machine_learning.datasets import LABEL

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline


def classification_metrics(y: np.ndarray, proba: np.ndarray, prefix: str) -> dict[str, float]:
    """The six metrics of one split, keyed ``<prefix>_<metric>``."""
    predicted = (proba >= 0.5).astype(int)
    values = {
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted, zero_division=0),
        "recall": skm.recall_score(y, predicted, zero_division=0),
        "f1": skm.f1_score(y, predicted, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, proba) if len(set(y)) > 1 else float("nan"),
        "log_loss": skm.log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1]),
    }
    return {f"{prefix}_{name}": float(value) for name, value in values.items()}


def win_probability(pipeline: Pipeline, battles: pd.DataFrame) -> np.ndarray:
    """P(side A wins) for each battle row."""
    return pipeline.predict_proba(battles.drop(columns=[LABEL], errors="ignore"))[:, 1]


def evaluate(
    pipeline: Pipeline,
    train: pd.DataFrame,
    test: pd.DataFrame,
    recent_test: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Train and test metrics, the overfitting gap, and the baseline beside them; with the
    recent battles held out of the inference log, their metrics too (``recent_test_*``)."""
    result = classification_metrics(
        train[LABEL].to_numpy(), win_probability(pipeline, train), "train"
    )
    result |= classification_metrics(
        test[LABEL].to_numpy(), win_probability(pipeline, test), "test"
    )
    result["overfitting_gap"] = result["train_accuracy"] - result["test_accuracy"]
    if recent_test is not None:
        result |= classification_metrics(
            recent_test[LABEL].to_numpy(),
            win_probability(pipeline, recent_test),
            RECENT_TEST_PREFIX.removesuffix("_"),
        )
    return result | baseline_metrics(test)


def baseline_metrics(test: pd.DataFrame) -> dict[str, float]:
    """The trivial rule "the side with the higher base-stat total wins", on the test set.

    Its log loss is left out: a hard 0/1 rule has an unbounded one.
    """
    diff = sum(test[f"a_{stat}"] - test[f"b_{stat}"] for stat in STATS).to_numpy()
    proba = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    values = classification_metrics(test[LABEL].to_numpy(), proba, "baseline_test")
    values["baseline_test_roc_auc"] = float(skm.roc_auc_score(test[LABEL], diff))
    del values["baseline_test_log_loss"]
    return values

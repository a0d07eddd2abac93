"""The model zoo: each model is a scikit-learn Pipeline from raw battle rows to a win probability.

The feature step is part of the pipeline, so a logged model scores any battle table and the
champion can be re-scored on exactly a candidate's test rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


class ModelName(StrEnum):
    XGBOOST = "xgboost"
    RANDOM_FOREST = "random_forest"
    LOGISTIC_REGRESSION = "logistic_regression"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model and where ``--tune`` searches."""

    build: Callable[[int], list[tuple[str, Any]]]  # seed -> pipeline steps after the features
    search_space: Callable[[], dict[str, Any]]  # parameter distributions for RandomizedSearchCV


def _xgboost(seed: int) -> list[tuple[str, Any]]:
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=200,
        max_depth=6,
        learning_rate=0.1,
        subsample=0.9,
        tree_method="hist",
        n_jobs=2,
        random_state=seed,
        eval_metric="logloss",
    )
    return [("model", model)]


def _random_forest(seed: int) -> list[tuple[str, Any]]:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=100, min_samples_leaf=2, n_jobs=2, random_state=seed
    )
    return [("model", model)]


def _logistic_regression(seed: int) -> list[tuple[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    return [
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=1.0, max_iter=1000, random_state=seed)),
    ]


def _xgboost_space() -> dict[str, Any]:
    from scipy import stats

    return {
        "model__n_estimators": stats.randint(100, 500),
        "model__max_depth": stats.randint(3, 10),
        "model__learning_rate": stats.loguniform(0.02, 0.3),
        "model__subsample": stats.uniform(0.6, 0.4),
        "model__colsample_bytree": stats.uniform(0.5, 0.5),
    }


def _random_forest_space() -> dict[str, Any]:
    from scipy import stats

    return {
        "model__n_estimators": stats.randint(100, 300),
        "model__max_depth": [None, 10, 20, 30],
        "model__min_samples_leaf": stats.randint(1, 8),
        "model__max_features": ["sqrt", "log2", 0.5],
    }


def _logistic_regression_space() -> dict[str, Any]:
    from scipy import stats

    return {"model__C": stats.loguniform(1e-3, 1e2)}


MODELS: dict[ModelName, ModelSpec] = {
    ModelName.XGBOOST: ModelSpec(_xgboost, _xgboost_space),
    ModelName.RANDOM_FOREST: ModelSpec(_random_forest, _random_forest_space),
    ModelName.LOGISTIC_REGRESSION: ModelSpec(_logistic_regression, _logistic_regression_space),
}


def build_pipeline(model: ModelName, dataset_version: str, seed: int) -> Pipeline:
    """An unfitted pipeline: battle features for ``dataset_version``, then the estimator."""
    from sklearn.pipeline import Pipeline

    from machine_learning.features import BattleFeatures

    return Pipeline([("features", BattleFeatures(dataset_version)), *MODELS[model].build(seed)])


def model_params(pipeline: Pipeline) -> dict[str, Any]:
    """The estimator's hyperparameters worth recording (scalars only, None left out)."""
    params = pipeline.named_steps["model"].get_params()
    return {
        key: value
        for key, value in sorted(params.items())
        if isinstance(value, str | int | float | bool) and value is not None
    }


def feature_importance(pipeline: Pipeline) -> dict[str, float]:
    """Importance per feature name: tree importances, or |coefficient| on scaled features."""
    names = pipeline.named_steps["features"].get_feature_names_out()
    model = pipeline.named_steps["model"]
    values = getattr(model, "feature_importances_", None)
    if values is None:
        values = abs(model.coef_[0])
    return {str(name): float(value) for name, value in zip(names, values, strict=True)}

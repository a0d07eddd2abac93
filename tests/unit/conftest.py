import pytest
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from machine_learning.datasets import make_battle_data
from machine_learning.features import BattleFeatures
from machine_learning.serving.predict import ModelInfo, Predictor
from machine_learning.simulator import Scenario


@pytest.fixture(scope="session")
def small_battles():
    data = make_battle_data(8_000, Scenario.RANDOM, seed=0, n_test=4_000)
    return data.train, data.test


@pytest.fixture(scope="session")
def predictor(small_battles) -> Predictor:
    """A small real pipeline (the features and XGBoost on two threads, as train builds it)."""
    train, _ = small_battles
    pipeline = Pipeline(
        [
            ("features", BattleFeatures()),
            ("model", XGBClassifier(n_estimators=20, max_depth=4, n_jobs=2, random_state=0)),
        ]
    )
    pipeline.fit(train.drop(columns="a_wins"), train["a_wins"])
    return Predictor(ModelInfo(uri="models:/m/1", name="m", version="1"), pipeline)

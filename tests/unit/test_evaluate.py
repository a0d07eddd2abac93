import numpy as np
import pandas as pd
import pytest

from machine_learning.datasets import LABEL
from machine_learning.evaluate import baseline_metrics, classification_metrics, evaluate
from machine_learning.models import MODELS, ModelName, build_pipeline, feature_importance


def test_perfect_predictions_score_perfectly():
    y = np.array([0, 1, 1, 0])
    values = classification_metrics(y, np.array([0.1, 0.9, 0.8, 0.2]), "test")
    assert values["test_accuracy"] == values["test_f1"] == values["test_roc_auc"] == 1.0
    assert values["test_log_loss"] == pytest.approx(-np.log([0.9, 0.9, 0.8, 0.8]).mean())


def test_inverted_predictions_score_zero():
    values = classification_metrics(np.array([0, 1]), np.array([0.9, 0.1]), "x")
    assert values["x_accuracy"] == values["x_f1"] == values["x_roc_auc"] == 0.0


def test_baseline_picks_the_higher_base_stat_total():
    stats = ["hp", "atk", "def", "spa", "spd", "spe"]
    rows = []
    for a_total, b_total, label in [(600, 300, 1), (300, 600, 0), (500, 400, 0), (400, 500, 1)]:
        rows.append(
            {
                **{f"a_{s}": a_total / 6 for s in stats},
                **{f"b_{s}": b_total / 6 for s in stats},
                LABEL: label,
            }
        )
    values = baseline_metrics(pd.DataFrame(rows))
    assert values["baseline_test_accuracy"] == 0.5
    assert "baseline_test_log_loss" not in values


def test_v2_beats_v1_beats_the_baseline(small_battles):
    """The feature set and the model each add something over "higher total wins"."""
    train, test = small_battles
    f1 = {}
    for version in ("v1", "v2"):
        pipeline = build_pipeline(ModelName.XGBOOST, version, seed=0).fit(
            train.drop(columns=[LABEL]), train[LABEL]
        )
        metrics = evaluate(pipeline, train, test)
        f1[version], f1["baseline"] = metrics["test_f1"], metrics["baseline_test_f1"]
    assert f1["v2"] > f1["v1"] > f1["baseline"]


@pytest.mark.parametrize("model", list(ModelName))
def test_every_model_fits_and_reports_importance(model, small_battles):
    train, test = small_battles
    pipeline = build_pipeline(model, "v2", seed=0).fit(train.drop(columns=[LABEL]), train[LABEL])
    importance = feature_importance(pipeline)
    assert len(importance) == 41 and all(value >= 0 for value in importance.values())
    assert evaluate(pipeline, train, test)["test_accuracy"] > 0.85


@pytest.mark.parametrize("model", list(ModelName))
def test_tuning_searches_the_space_and_refits_the_best(model, tmp_path, small_battles):
    from machine_learning.datasets import BattleData
    from machine_learning.simulator import Scenario
    from machine_learning.train import TrainConfig, fit

    train, test = small_battles
    data = BattleData(train.head(900), test.head(300), Scenario.RANDOM)
    config = TrainConfig(model=model, tune=True, n_trials=2, seed=3, output_dir=tmp_path)
    tuned = fit(model, config, data, tmp_path / "plots")
    default = build_pipeline(model, "v2", seed=3).named_steps["model"].get_params()
    searched = [key.removeprefix("model__") for key in MODELS[model].search_space()]
    assert any(tuned.hyperparams.get(k) != default.get(k) for k in searched if k in default)
    assert tuned.metrics["test_accuracy"] > 0.8 and len(tuned.plots) == 3


def test_tuning_counts_its_folds_on_a_terminal_and_stays_silent_in_a_log(small_battles):
    import io

    from machine_learning.train import FoldProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    train, test = small_battles
    model = build_pipeline(ModelName.LOGISTIC_REGRESSION, "v1", seed=0).fit(
        train.drop(columns=[LABEL]), train[LABEL]
    )
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = FoldProgress(2, stream)
        scores = [progress(model, test.drop(columns=[LABEL]), test[LABEL]) for _ in range(2)]
    assert (
        terminal.getvalue() == f"\r  fold 1/2: f1 {scores[0]:.4f}\r  fold 2/2: f1 {scores[1]:.4f}\n"
    )
    assert log.getvalue() == "" and 0.5 < scores[0] == scores[1] < 1

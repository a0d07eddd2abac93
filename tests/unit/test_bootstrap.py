import numpy as np
import pytest
from sklearn import metrics as skm

from ci.bootstrap import EPSILON, compare, point_metrics, resample_weights


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 4_000)
    strong = np.round(np.clip(0.35 * y + 0.65 * rng.random(4_000), 0, 1), 2)  # with ties
    weak = np.clip(0.15 * y + 0.85 * rng.random(4_000), 0, 1)
    return y, strong, weak


def test_point_metrics_agree_with_scikit_learn(scored):
    y, proba, _ = scored
    ours = point_metrics(y, proba)
    predicted = proba >= 0.5
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert ours["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert ours["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert ours["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert ours["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba))
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_a_model_compared_with_itself_has_a_zero_interval(scored):
    y, proba, _ = scored
    result = compare(y, proba, proba, resamples=200)
    assert all(c.delta == 0 and c.interval == (0.0, 0.0) for c in result.values())


def test_a_clearly_better_model_has_an_interval_above_zero(scored):
    y, strong, weak = scored
    result = compare(y, strong, weak, resamples=500)
    assert result["roc_auc"].interval[0] > 0 and result["f1"].interval[0] > 0
    assert result["log_loss"].interval[1] < 0  # lower is better
    swapped = compare(y, weak, strong, resamples=500)
    assert swapped["f1"].delta == pytest.approx(-result["f1"].delta)


def test_the_interval_covers_the_observed_delta_and_is_seeded(scored):
    y, strong, weak = scored
    one, two = compare(y, strong, weak, 300, seed=1), compare(y, strong, weak, 300, seed=1)
    assert one == two
    low, high = one["accuracy"].interval
    assert low <= one["accuracy"].delta <= high


def test_resample_weights_keep_the_original_sample_first():
    weights = resample_weights(1_000, 50, seed=0)
    assert weights.shape == (1_000, 51) and (weights[:, 0] == 1).all()
    assert abs(weights[:, 1:].mean() - 1.0) < 0.02


def test_confident_float32_probabilities_give_a_finite_log_loss():
    """XGBoost answers in float32, where 1 - 1e-15 rounds to 1: a wrong, certain answer
    would be log(0) unless the probabilities are clipped in float64."""
    y = np.array([0, 1, 0, 1])
    proba = np.array([1.0, 1.0, 0.0, 0.2], dtype=np.float32)
    loss = point_metrics(y, proba)["log_loss"]
    assert np.isfinite(loss)
    expected = (-np.log(1 - (1 - EPSILON)) - np.log(0.2)) / 4  # one certain miss, one at 0.2
    assert loss == pytest.approx(expected, rel=1e-9)

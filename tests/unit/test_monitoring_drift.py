"""Drift (PSI and the test of each feature's kind), live quality and one window's measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from machine_learning.contract.records import RecordError
from machine_learning.datasets import LABEL, battles
from machine_learning.monitoring import MonitoringInputError
from machine_learning.monitoring.drift import (
    CHI_SQUARE_TEST,
    EPSILON,
    KS_TEST,
    FeatureDrift,
    chi_square_test,
    feature_drift,
    population_stability_index,
    window_drift,
)
from machine_learning.monitoring.profile import build_profile
from machine_learning.monitoring.quality import (
    LiveQuality,
    expected_calibration_error,
    live_quality,
)
from machine_learning.monitoring.window import WindowMeasurement, measure_window
from machine_learning.simulator import Scenario


def _probabilities(rows):
    """A stand-in model: P(A wins) from the base-stat-total gap (drifts like a real one)."""
    diff = sum(rows[f"a_{s}"] - rows[f"b_{s}"] for s in ("hp", "atk", "def", "spa", "spd", "spe"))
    return 1 / (1 + np.exp(-diff.to_numpy() / 60))


@pytest.fixture(scope="module")
def profile():
    train = battles(4_000, Scenario.RANDOM, seed=21)
    test = battles(1_000, Scenario.RANDOM, seed=22)
    return build_profile(train, _probabilities(test), "v2", seed=1)


@pytest.fixture(scope="module")
def random_window():
    return battles(1_000, Scenario.RANDOM, seed=23)


@pytest.fixture(scope="module")
def balanced_window():
    return battles(1_000, Scenario.BALANCED, seed=24)


def _by_feature(drifts):
    return {drift.feature: drift for drift in drifts}


def test_psi_is_zero_for_the_same_shares_and_matches_its_formula():
    assert population_stability_index(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert population_stability_index(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == (
        pytest.approx(expected)
    )


def test_an_emptied_bin_counts_through_the_epsilon_not_to_infinity():
    psi = population_stability_index(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    expected = 0.5 * math.log(2) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert psi == pytest.approx(expected)
    assert 4 < psi < 5


def test_psi_refuses_shares_over_different_bins():
    with pytest.raises(ValueError, match="same bins"):
        population_stability_index(np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5]))


def test_random_traffic_does_not_drift_and_balanced_traffic_does(
    profile, random_window, balanced_window
):
    steady = _by_feature(window_drift(profile, random_window, _probabilities(random_window)))
    moved = _by_feature(window_drift(profile, balanced_window, _probabilities(balanced_window)))
    assert list(steady) == [*(f.name for f in profile.features), "p_a_wins"]
    assert max(d.psi for d in steady.values()) < 0.1
    for feature in ("diff_bst", "log_bulk_ratio", "p_a_wins"):
        assert moved[feature].psi > 0.5, feature
        assert moved[feature].p_value < 1e-6, feature
    assert steady["diff_bst"].p_value > 0.001
    assert moved["a_hp"].psi < 0.1  # balanced keeps each side's own distribution


def test_each_kind_gets_its_test(profile, random_window):
    drifts = _by_feature(window_drift(profile, random_window, _probabilities(random_window)))
    assert drifts["diff_bst"].test == KS_TEST
    assert drifts["a_type1"].test == CHI_SQUARE_TEST
    assert drifts["a_moves_first"].test == CHI_SQUARE_TEST
    assert all(d.n == 1_000 and d.n_invalid == 0 for d in drifts.values())


def test_a_window_of_one_type_is_categorical_drift(profile):
    a_type1 = next(f for f in profile.features if f.name == "a_type1")
    drift = feature_drift(a_type1, np.array(["Water"] * 300, dtype=object))
    assert drift.psi > 1 and drift.p_value < 1e-10


def test_an_unseen_category_is_drift_not_a_crash(profile):
    a_type1 = next(f for f in profile.features if f.name == "a_type1")
    values = np.array(["Shadow"] * 50 + a_type1.categories * 20, dtype=object)
    drift = feature_drift(a_type1, values)
    assert math.isfinite(drift.statistic) and drift.p_value < 1e-6
    assert drift.psi > 0.3


def test_chi_square_gives_a_cell_the_reference_never_saw_a_finite_large_statistic():
    statistic, p_value = chi_square_test(np.array([0.5, 0.5, 0.0]), np.array([45, 45, 10]))
    assert 1e3 < statistic < math.inf and p_value < 1e-100  # (10 - 0.01)² / 0.01


def test_chi_square_pools_rare_cells_and_has_nothing_to_test_in_one_cell():
    statistic, p_value = chi_square_test(np.array([0.5, 0.5, 0.0]), np.array([50, 50, 0]))
    assert statistic == 0.0 and p_value == 1.0
    assert chi_square_test(np.array([1.0, 0.0]), np.array([10, 0])) == (0.0, 1.0)
    # rare cells (expected < 5) are pooled: 3 cells of 0.01 at n=100 become one
    _, pooled = chi_square_test(np.array([0.97, 0.01, 0.01, 0.01]), np.array([97, 3, 0, 0]))
    assert pooled > 0.05


def test_nan_and_inf_values_are_left_out_and_counted(profile):
    diff_bst = next(f for f in profile.features if f.name == "diff_bst")
    values = np.array([*diff_bst.sample, np.nan, np.inf, -np.inf])  # the reference's sample
    drift = feature_drift(diff_bst, values)
    assert (drift.n, drift.n_invalid) == (500, 3)
    assert drift.p_value == 1.0
    assert math.isfinite(drift.psi) and drift.psi < 0.1
    empty = feature_drift(diff_bst, np.array([np.nan, np.nan]))
    assert (empty.n, empty.n_invalid, empty.psi, empty.p_value) == (0, 2, None, None)


def test_missing_categories_are_invalid_values(profile):
    moves = next(f for f in profile.features if f.name == "a_moves_first")
    drift = feature_drift(moves, np.array(["1", "-1", None, None], dtype=object))
    assert (drift.n, drift.n_invalid) == (2, 2)


def test_window_drift_refuses_windows_it_cannot_compare(profile, random_window):
    p = _probabilities(random_window)
    with pytest.raises(MonitoringInputError, match="1000 battles but 999"):
        window_drift(profile, random_window, p[:-1])
    with pytest.raises(MonitoringInputError, match="no battles"):
        window_drift(profile, random_window.head(0), p[:0])
    with pytest.raises(MonitoringInputError, match="lack the columns b_spe"):
        window_drift(profile, random_window.drop(columns=["b_spe"]), p)


def test_a_feature_drift_record_refuses_impossible_figures():
    with pytest.raises(RecordError, match="p_value must be in"):
        FeatureDrift.from_dict({"feature": "x", "kind": "continuous", "n": 1, "p_value": 2}, "f")
    with pytest.raises(RecordError, match="psi cannot be negative"):
        FeatureDrift.from_dict({"feature": "x", "kind": "continuous", "n": 1, "psi": -1}, "f")
    with pytest.raises(RecordError, match="counts cannot be negative"):
        FeatureDrift.from_dict({"feature": "x", "kind": "continuous", "n": -1}, "f")
    with pytest.raises(RecordError, match="unknown test 't_test'"):
        FeatureDrift.from_dict(
            {"feature": "x", "kind": "continuous", "n": 1, "test": "t_test"}, "f"
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_outcomes": 0}, "at least one battle with an outcome"),
        ({"accuracy": 1.5}, r"accuracy must be in \[0, 1\]"),
        ({"ece": -0.1}, r"ece must be in \[0, 1\]"),
        ({"log_loss": -0.1}, "log_loss cannot be negative"),
    ],
)
def test_a_live_quality_record_refuses_impossible_figures(change, message):
    valid = {"n_outcomes": 5, "outcome_share": 0.5, "accuracy": 0.8, "f1": 0.8}
    with pytest.raises(RecordError, match=message):
        LiveQuality.from_dict(valid | {"log_loss": 0.3, "ece": 0.05} | change, "q")


def test_ece_is_the_weighted_gap_between_wins_and_probabilities():
    assert expected_calibration_error(np.array([1, 0, 1]), np.array([1.0, 0.0, 1.0])) == 0.0
    y = np.array([1, 0] * 50)
    assert expected_calibration_error(y, np.full(100, 0.8)) == pytest.approx(0.3)
    # two bins: 0.05 (all lost) and 0.95 (all won): gaps 0.05 each
    y, p = np.array([0, 0, 1, 1]), np.array([0.05, 0.05, 0.95, 0.95])
    assert expected_calibration_error(y, p) == pytest.approx(0.05)


def test_live_quality_on_the_battles_with_outcomes():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.2, 0.6])
    quality = live_quality(y, p, n_rows=10)
    assert quality.n_outcomes == 4 and quality.outcome_share == 0.4
    assert quality.accuracy == 0.5 and quality.f1 == 0.5
    expected = -np.mean(np.log([0.9, 0.4, 0.8, 0.4]))
    assert quality.log_loss == pytest.approx(expected)
    assert live_quality(np.array([]), np.array([]), n_rows=10) is None


@pytest.mark.parametrize(
    ("y", "p", "n_rows", "message"),
    [
        ([1, 2], [0.5, 0.5], 5, "outcomes must be 1"),
        ([1, np.nan], [0.5, 0.5], 5, "outcomes must be 1"),
        ([1, 0], [0.5, np.nan], 5, "probabilities must be numbers in"),
        ([1, 0], [0.5, 1.5], 5, "probabilities must be numbers in"),
        ([1, 0], [0.5], 5, "outcomes but"),
        ([1, 0, 1], [0.5, 0.5, 0.5], 2, "3 outcomes for a window of 2"),
    ],
)
def test_live_quality_refuses_what_our_endpoints_never_write(y, p, n_rows, message):
    with pytest.raises(MonitoringInputError, match=message):
        live_quality(np.array(y, dtype=float), np.array(p, dtype=float), n_rows)


def test_a_window_measures_drift_and_quality_on_the_known_outcomes(profile, random_window):
    p = _probabilities(random_window)
    outcomes = random_window[LABEL].to_numpy().astype(float)
    outcomes[::4] = np.nan  # a quarter still waiting for their outcome
    rows = random_window.drop(columns=[LABEL])
    measurement = measure_window(profile, "7", rows, p, outcomes)
    assert measurement.version == "7" and measurement.n_rows == 1_000
    assert measurement.quality.n_outcomes == 750 and measurement.quality.outcome_share == 0.75
    metrics = measurement.metrics()
    assert metrics["diff_bst.psi"] == measurement.drift[16].psi
    assert {"p_a_wins.psi", "p_a_wins.p_value", "accuracy", "ece"} <= set(metrics)
    assert measurement.sample_size("accuracy") == 750
    assert measurement.sample_size("diff_bst.psi") == 1_000
    assert measurement.sample_size("bogus.psi") == 0
    assert measure_window(profile, "7", rows, p).quality is None


def test_a_window_with_no_rows_is_a_measurement_of_zero_rows(profile, random_window):
    empty = measure_window(profile, "7", random_window.head(0), np.array([]), np.array([]))
    assert (empty.n_rows, empty.drift, empty.quality, empty.metrics()) == (0, [], None, {})


def test_a_window_refuses_corrupt_probabilities_and_misaligned_outcomes(profile, random_window):
    p = _probabilities(random_window)
    with pytest.raises(MonitoringInputError, match="p_a_wins must be numbers in"):
        measure_window(profile, "7", random_window, np.where(np.arange(1_000) == 5, np.nan, p))
    with pytest.raises(MonitoringInputError, match="outcomes for"):
        measure_window(profile, "7", random_window, p, np.ones(3))


def test_a_measurement_record_refuses_counts_that_do_not_add_up():
    drift = {"feature": "diff_bst", "kind": "continuous", "n": 5, "n_invalid": 1}
    with pytest.raises(RecordError, match="a feature counts other rows"):
        WindowMeasurement.from_dict({"version": "1", "n_rows": 10, "drift": [drift]}, "m")
    with pytest.raises(RecordError, match="no rows, yet figures measured"):
        WindowMeasurement.from_dict({"version": "1", "n_rows": 0, "drift": [drift]}, "m")
    with pytest.raises(RecordError, match="n_rows cannot be negative"):
        WindowMeasurement.from_dict({"version": "1", "n_rows": -1}, "m")
    quality = {"n_outcomes": 20, "outcome_share": 1.0, "accuracy": 1, "f1": 1}
    quality |= {"log_loss": 0.1, "ece": 0.0}
    with pytest.raises(RecordError, match="more outcomes than battles"):
        WindowMeasurement.from_dict({"version": "1", "n_rows": 10, "quality": quality}, "m")

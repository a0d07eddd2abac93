"""The gate's verdict rules: examples, then properties over generated cases (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from ci.thresholds import Threshold
from ci.verdict import judge, overall
from machine_learning.contract.gate_record import Verdict

F1 = Threshold("test_f1", 0.85, True, tolerance_absolute=0.01)
LOSS = Threshold("test_log_loss", 0.35, False, tolerance_relative=0.05)


def test_first_run_without_a_champion_is_judged_on_the_floor_only():
    assert judge(F1, 0.90).verdict is Verdict.PASS
    assert "no champion" in judge(F1, 0.90).reason
    assert judge(F1, 0.80).verdict is Verdict.FAIL


def test_a_clear_improvement_passes():
    result = judge(F1, 0.93, 0.90, (0.02, 0.04))
    assert (result.verdict, result.reason) == (Verdict.PASS, "better than the champion by 0.0300")


def test_a_significant_regression_beyond_tolerance_fails():
    result = judge(F1, 0.88, 0.92, (-0.05, -0.03))
    assert result.verdict is Verdict.FAIL and "tolerance 0.0100" in result.reason


def test_a_regression_whose_interval_includes_zero_is_noise():
    assert judge(F1, 0.88, 0.92, (-0.09, 0.01)).verdict is Verdict.NOISE


def test_a_significant_regression_within_tolerance_passes():
    result = judge(F1, 0.915, 0.92, (-0.008, -0.002))
    assert result.verdict is Verdict.PASS and "within the tolerance" in result.reason


def test_lower_is_better_metrics_use_the_ceiling_and_relative_tolerance():
    assert judge(LOSS, 0.40).verdict is Verdict.FAIL
    assert judge(LOSS, 0.25, 0.20, (0.03, 0.07)).verdict is Verdict.FAIL  # 0.05 > 5% of 0.20
    assert judge(LOSS, 0.205, 0.20, (0.001, 0.009)).verdict is Verdict.PASS  # within 5%


def test_the_gate_fails_when_any_metric_fails():
    assert overall([Verdict.PASS, Verdict.NOISE]) is Verdict.PASS
    assert overall([Verdict.PASS, Verdict.FAIL, Verdict.NOISE]) is Verdict.FAIL


unit = st.floats(0.0, 1.0, allow_nan=False)
width = st.floats(0.0, 0.2, allow_nan=False)
rules = st.builds(
    Threshold,
    st.just("m"),
    st.one_of(st.none(), unit),
    st.booleans(),
    st.floats(0.0, 0.1),
    st.floats(0.0, 0.2),
)


def _sign(rule: Threshold) -> float:
    return 1.0 if rule.greater_is_better else -1.0


@given(rules, unit, st.floats(1e-6, 1.0), st.one_of(st.none(), unit), width, width)
def test_missing_the_floor_always_fails(rule, floor, gap, champion, below, above):
    rule = replace(rule, threshold=floor)  # every case misses its floor, by construction
    candidate = floor - _sign(rule) * gap
    delta = None if champion is None else candidate - champion
    interval = None if delta is None else (delta - below, delta + above)
    assert judge(rule, candidate, champion, interval).verdict is Verdict.FAIL


@given(rules, unit, unit, width, width)
def test_an_interval_containing_zero_never_fails_on_regression(rule, candidate, champion, lo, hi):
    interval = (-lo, hi)
    meets_floor = rule.threshold is None or _sign(rule) * (candidate - rule.threshold) >= 0
    if meets_floor:
        assert judge(rule, candidate, champion, interval).verdict is not Verdict.FAIL


@given(rules, unit, unit, width, width)
def test_a_regression_failure_is_beyond_the_tolerance(rule, candidate, champion, lo, hi):
    delta = candidate - champion
    result = judge(rule, candidate, champion, (delta - lo, delta + hi))
    floor_ok = rule.threshold is None or _sign(rule) * (candidate - rule.threshold) >= 0
    if result.verdict is Verdict.FAIL and floor_ok:
        assert -_sign(rule) * delta > rule.allowed_regression(champion)


@given(rules, unit, unit, width, width, st.floats(0.0, 0.3))
def test_improving_the_candidate_never_turns_a_non_failure_into_a_failure(
    rule, candidate, champion, lo, hi, gain
):
    better = candidate + _sign(rule) * gain
    delta, improved = candidate - champion, better - champion
    before = judge(rule, candidate, champion, (delta - lo, delta + hi))
    after = judge(rule, better, champion, (improved - lo, improved + hi))
    if before.verdict is not Verdict.FAIL:
        assert after.verdict is not Verdict.FAIL


@given(rules, unit, unit, width, width)
def test_lower_is_better_mirrors_greater_is_better(rule, candidate, champion, lo, hi):
    mirrored = Threshold(
        rule.metric,
        None if rule.threshold is None else -rule.threshold,
        not rule.greater_is_better,
        rule.tolerance_absolute,
        rule.tolerance_relative,
    )
    delta = candidate - champion
    original = judge(rule, candidate, champion, (delta - lo, delta + hi))
    flipped = judge(mirrored, -candidate, -champion, (-delta - hi, -delta + lo))
    assert original.verdict is flipped.verdict

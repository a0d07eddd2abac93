"""The monitor's thresholds (fail closed), window verdicts, the K-of-N decision and monitor.json."""

from __future__ import annotations

import json

import pytest

from ci.monitor_decision import (
    MIN_ROWS,
    VersionJudgement,
    WindowStatus,
    decide,
    judge_measurement,
    window_status,
)
from ci.monitor_record import MeasuredWindow, MonitorRecord, build_record
from ci.monitor_thresholds import (
    MonitorThreshold,
    from_seed_file,
    from_tags,
    parse_spec,
)
from ci.thresholds import ThresholdError
from machine_learning.contract.records import RecordError
from machine_learning.monitoring.drift import FeatureDrift
from machine_learning.monitoring.profile import FeatureKind
from machine_learning.monitoring.quality import LiveQuality
from machine_learning.monitoring.window import WindowMeasurement

B, H, N = WindowStatus.BREACH, WindowStatus.HEALTHY, WindowStatus.NOT_ENOUGH_DATA
PSI = MonitorThreshold("diff_bst.psi", 0.2, False)
ACCURACY = MonitorThreshold("accuracy", 0.85, True)
RULES = [PSI, ACCURACY]


def _measurement(n_rows=1_000, psi=0.05, accuracy=0.93, n_outcomes=500, version="3"):
    drift = [FeatureDrift("diff_bst", FeatureKind.CONTINUOUS, n_rows, 0, psi, "ks_2samp", 0.1, 0.3)]
    quality = None
    if n_outcomes:
        quality = LiveQuality(n_outcomes, n_outcomes / n_rows, accuracy, accuracy, 0.2, 0.02)
    return WindowMeasurement(version, n_rows, drift, quality)


# --- thresholds ---------------------------------------------------------------------------


def test_the_seed_file_is_valid_and_watches_the_drifting_features_and_quality():
    rules = {rule.metric: rule for rule in from_seed_file()}
    assert {"diff_bst.psi", "p_a_wins.psi", "accuracy", "ece"} <= set(rules)
    assert rules["diff_bst.psi"].greater_is_better is False
    assert rules["accuracy"].greater_is_better is True


def test_a_spec_round_trips_through_its_tag_and_other_tags_are_ignored():
    tags = {PSI.tag: PSI.to_json(), "gate.test_f1": '{"threshold": 0.9}', "owner": "team"}
    assert PSI.tag == "monitor.diff_bst.psi"
    assert from_tags(tags) == [PSI]


def test_the_bound_itself_is_not_crossed():
    assert not PSI.crossed(0.2) and PSI.crossed(0.2001)
    assert not ACCURACY.crossed(0.85) and ACCURACY.crossed(0.8499)
    assert PSI.describe() == "≤ 0.2" and ACCURACY.describe() == "≥ 0.85"


def test_the_direction_defaults_to_the_metrics_own():
    assert parse_spec("ece", {"threshold": 0.1}, "x").greater_is_better is False
    assert parse_spec("a_type1.p_value", {"threshold": 0.01}, "x").greater_is_better is True


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        ("monitor.diff_bst.psi", "not json", "not valid JSON"),
        ("monitor.diff_bst.psi", '{"threshold": NaN}', "NaN is not a number JSON allows"),
        ("monitor.diff_bst.psi", '"0.2"', "expected a table/object"),
        ("monitor.diff_bst.psi", '{"threshold": 0.2, "tolerance": 1}', r"unknown key\(s\)"),
        ("monitor.diff_bst.psi", "{}", r"threshold must be a number in \(0, 10\]"),
        ("monitor.diff_bst.psi", '{"threshold": null}', "threshold must be a number"),
        ("monitor.diff_bst.psi", '{"threshold": true}', "threshold must be a number"),
        ("monitor.diff_bst.psi", '{"threshold": 0}', "threshold must be a number"),
        ("monitor.accuracy", '{"threshold": 1.5}', r"threshold must be a number in \(0, 1\]"),
        ("monitor.diff_bst.psi", '{"threshold": 0.2, "greater_is_better": true}', "must be false"),
        ("monitor.accuracy", '{"threshold": 0.8, "greater_is_better": false}', "must be true"),
        ("monitor.accuracy", '{"threshold": 0.8, "greater_is_better": "yes"}', "true or false"),
        ("monitor.a_name.psi", '{"threshold": 0.2}', "not a metric the monitor computes"),
        ("monitor.diff_bst.mean", '{"threshold": 0.2}', "not a metric the monitor computes"),
        ("monitor.test_f1", '{"threshold": 0.2}', "not a metric the monitor computes"),
    ],
)
def test_a_malformed_tag_fails_closed_naming_the_tag(tag, value, message):
    with pytest.raises(ThresholdError, match=message) as raised:
        from_tags({tag: value})
    assert tag in str(raised.value)


def test_a_dotted_name_left_unquoted_in_toml_gets_a_hint(tmp_path):
    seed = tmp_path / "monitor_thresholds.toml"
    seed.write_text("[diff_bst.psi]\nthreshold = 0.2\n")
    with pytest.raises(ThresholdError, match=r'in quotes, \["diff_bst.psi"\]'):
        from_seed_file(seed)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "defines no thresholds"),
        (b"[accuracy\n", "monitor_thresholds.toml"),
        (b"\xff\xfe", "not UTF-8"),
        (b'["ece"]\nthreshold = "low"\n', r"monitor_thresholds.toml \[ece\]: threshold must"),
    ],
)
def test_a_malformed_seed_file_fails_closed(tmp_path, content, message):
    seed = tmp_path / "monitor_thresholds.toml"
    seed.write_bytes(content)
    with pytest.raises(ThresholdError, match=message):
        from_seed_file(seed)


def test_a_missing_seed_file_is_a_threshold_error(tmp_path):
    with pytest.raises(ThresholdError, match="No such file"):
        from_seed_file(tmp_path / "absent.toml")


# --- judging a window ---------------------------------------------------------------------


def test_a_window_breaches_when_a_threshold_is_crossed():
    judged = judge_measurement(_measurement(psi=0.31, accuracy=0.8), RULES)
    assert judged.status is B
    assert [b.describe() for b in judged.breaches] == [
        "diff_bst.psi 0.31 > 0.2",
        "accuracy 0.8 < 0.85",
    ]
    assert judge_measurement(_measurement(), RULES).status is H


def test_too_few_rows_is_never_a_breach():
    judged = judge_measurement(_measurement(n_rows=MIN_ROWS - 1, psi=9.0, n_outcomes=0), RULES)
    assert (judged.status, judged.breaches) == (N, [])
    assert judged.unmeasured == ["diff_bst.psi", "accuracy"]
    empty = judge_measurement(WindowMeasurement("3", 0), RULES)
    assert empty.status is N


def test_quality_on_too_few_outcomes_is_unmeasured_not_judged():
    judged = judge_measurement(_measurement(accuracy=0.5, n_outcomes=MIN_ROWS - 1), RULES)
    assert judged.status is H and judged.unmeasured == ["accuracy"]
    judged = judge_measurement(_measurement(n_outcomes=0), RULES)
    assert judged.status is H and judged.unmeasured == ["accuracy"]


def test_a_threshold_on_a_feature_the_profile_lacks_is_unmeasured():
    rule = MonitorThreshold("log_bulk_ratio.psi", 0.2, False)  # a v1 profile has no such feature
    judged = judge_measurement(_measurement(psi=0.01), [PSI, rule])
    assert judged.status is H and judged.unmeasured == ["log_bulk_ratio.psi"]


def test_a_feature_with_too_few_valid_values_is_unmeasured():
    drift = [FeatureDrift("diff_bst", FeatureKind.CONTINUOUS, 150, 850, 3.0, "ks_2samp", 0.5, 0.0)]
    judged = judge_measurement(WindowMeasurement("3", 1_000, drift), [PSI])
    assert judged.status is H and judged.unmeasured == ["diff_bst.psi"]


def test_judging_needs_thresholds_and_a_sane_minimum():
    with pytest.raises(ValueError, match="no thresholds"):
        judge_measurement(_measurement(), [])
    with pytest.raises(ValueError, match="min_rows must be 1 to 1,000"):
        judge_measurement(_measurement(), RULES, min_rows=1_001)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [([], N), ([N], N), ([N, H], H), ([H, B], B), ([N, B], B), ([H, H], H)],
)
def test_a_window_status_follows_its_versions(statuses, expected):
    judgements = [
        VersionJudgement(str(i), s, [_breach()] if s is B else []) for i, s in enumerate(statuses)
    ]
    assert window_status(judgements) is expected


def _breach():
    from ci.monitor_decision import Breach

    return Breach("diff_bst.psi", 1.0, 0.2, False)


# --- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "retrain", "reason"),
    [
        ([B, H, H, H, B], True, "2 of the last 5 windows breach (at least 2), the latest"),
        ([H, H, H, B, B], True, "2 of the last 5"),
        ([H, H, H, H, B], False, "1 of the last 5 windows breach, fewer than 2"),
        ([B, B, B, B, H], False, "the latest window is healthy"),
        ([B, B, B, B, N], False, "the latest window is not enough data"),
        ([B, N, N, N, B], True, "2 of the last 5"),
        ([B, H, H, H, H, B], False, "1 of the last 5"),  # the oldest breach is out of the last 5
        ([B, B], True, "2 of the last 2"),  # a monitor just started: K still applies
        ([B], False, "fewer than 2"),
        ([], False, "no windows to judge"),
    ],
)
def test_retrain_when_k_of_the_last_n_breach_and_the_latest_does(statuses, retrain, reason):
    decision = decide(statuses, min_breaches=2, n_windows=5)
    assert decision.retrain is retrain
    assert reason in decision.reason


def test_k_and_n_are_checked():
    assert decide([B], min_breaches=1, n_windows=1).retrain
    with pytest.raises(ValueError, match="min_breaches must be 1 to the number of windows"):
        decide([B], min_breaches=6, n_windows=5)
    with pytest.raises(ValueError, match="min_breaches must be 1"):
        decide([B], min_breaches=0, n_windows=5)
    with pytest.raises(ValueError, match="number of windows must be 1 to 365"):
        decide([B], min_breaches=1, n_windows=0)


# --- monitor.json -------------------------------------------------------------------------


def _record(measurements_per_window, unprofiled=None):
    windows = [
        MeasuredWindow(
            f"2026-12-0{i + 1}T00:00:00+00:00",
            f"2026-12-0{i + 2}T00:00:00+00:00",
            measured,
            (unprofiled or {}).get(i, {}),
        )
        for i, measured in enumerate(measurements_per_window)
    ]
    return build_record(
        "pokemon-battle",
        "2026-12-06T00:00:00+00:00",
        86_400,
        RULES,
        windows,
        min_breaches=2,
        n_windows=5,
        thresholds_source="tags",
    )


def _drifting_record():
    steady, drifting = _measurement(), _measurement(psi=0.9, version="3")
    young = _measurement(120, n_outcomes=60, version="4")
    windows = [[steady], [steady], [], [drifting, young], [drifting]]
    return _record(windows, {1: {"2": 40}})  # window 1 also holds 40 rows of a version 2


def test_a_record_judges_every_window_and_round_trips(tmp_path):
    record = _drifting_record()
    assert [w.status for w in record.windows] == [H, H, N, B, B]
    assert record.windows[1].unprofiled_rows == {"2": 40}
    assert record.decision.retrain and record.exit_code == 1
    path = tmp_path / "monitor.json"
    record.write(path)
    assert MonitorRecord.read(path) == record
    sampled = build_record(
        "pokemon-battle",
        record.generated_at,
        86_400,
        RULES,
        [
            MeasuredWindow(
                record.windows[0].start, record.windows[0].end, [_measurement()], {}, {"3": 25_000}
            )
        ],
        min_breaches=1,
        n_windows=1,
        unprofiled_versions={"9": "not a version of pokemon-battle"},
    )
    sampled.write(path)
    assert MonitorRecord.read(path) == sampled and sampled.windows[0].logged_rows == {"3": 25_000}
    healthy = _record([[_measurement()]] * 3)
    assert not healthy.decision.retrain and healthy.exit_code == 0


def test_rows_of_a_version_without_a_profile_are_counted_never_judged():
    record = _record([[], [_measurement()]], {0: {"1": 900}, 1: {"1": 15}})
    assert [w.status for w in record.windows] == [N, H]
    assert record.windows[0].unprofiled_rows == {"1": 900}


def _tampered(change):
    data = _drifting_record().to_dict()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["decision"].update(retrain=False), "decision does not follow"),
        (lambda d: d["windows"][4].update(status="healthy"), "status healthy does not follow"),
        (
            lambda d: d["windows"][4]["versions"][0]["judgement"].update(
                status="healthy", breaches=[]
            ),
            "status breach does not follow",
        ),
        (
            lambda d: d["windows"][4]["versions"][0]["measurement"]["drift"][0].update(psi=0.01),
            "judgement does not follow",
        ),
        (lambda d: d["thresholds"][0].update(threshold=5.0), "judgement does not follow"),
        (lambda d: d["thresholds"][0].update(greater_is_better=True), "must be false"),
        (lambda d: d.update(thresholds=[]), "judged with none"),
        (lambda d: d.update(min_rows=5_000), "min_rows must be 1 to 1,000"),
        (lambda d: d["windows"].reverse(), "oldest first"),
        (lambda d: d["windows"][0].update(end="2026-12-03T00:00:00+00:00"), "must not overlap"),
        (lambda d: d["windows"][0].update(start="2026-12-01T00:00:00"), "has no time zone"),
        (lambda d: d["windows"][0].update(start="yesterday"), "not an ISO 8601 time"),
        (lambda d: d["windows"][0].update(end="2026-11-30T00:00:00+00:00"), "start must come"),
        (lambda d: d["decision"].update(min_breaches=9), "min_breaches must be 1 to"),
        (lambda d: d["decision"].update(breaching_windows=-1), "breaching_windows"),
        (lambda d: d.update(window_seconds=0), "window_seconds must be positive"),
        (lambda d: d["windows"][3]["versions"][1]["judgement"].update(version="3"), "different"),
        (lambda d: d["windows"][3]["versions"].append(d["windows"][3]["versions"][0]), "twice"),
        (lambda d: d["windows"][0]["versions"][0]["measurement"].update(n_rows="many"), "whole"),
        (lambda d: d.pop("decision"), "'decision' is missing"),
        (lambda d: d["windows"][1]["unprofiled_rows"].update({"2": 0}), "must be positive"),
        (lambda d: d["windows"][1]["unprofiled_rows"].update({"3": 5}), "listed twice"),
        (lambda d: d["windows"][1].update(unprofiled_rows={"2": "many"}), "whole number"),
        (lambda d: d["windows"][0].update(logged_rows={"3": 999}), "fewer battles logged than"),
        (lambda d: d.update(unprofiled_versions={"2": 7}), "must be a string"),
    ],
)
def test_a_tampered_or_inconsistent_record_is_refused(tmp_path, change, message):
    path = tmp_path / "monitor.json"
    path.write_text(json.dumps(_tampered(change)))
    with pytest.raises(RecordError, match=message) as raised:
        MonitorRecord.read(path)
    assert str(path) in str(raised.value)


def _champion_record(champion: str):
    """v3 breaches in both windows; v4, promoted during the second, is healthy there."""
    drifting, replacement = _measurement(psi=0.9, version="3"), _measurement(version="4")
    windows = [
        MeasuredWindow(
            f"2026-12-0{i + 1}T00:00:00+00:00", f"2026-12-0{i + 2}T00:00:00+00:00", measured
        )
        for i, measured in enumerate([[drifting], [drifting, replacement]])
    ]
    return build_record(
        "pokemon-battle",
        "2026-12-03T00:00:00+00:00",
        86_400,
        RULES,
        windows,
        min_breaches=2,
        n_windows=5,
        champion=champion,
    )


@pytest.mark.parametrize(("champion", "retrain"), [("4", False), ("3", True), ("", True)])
def test_the_decision_is_about_the_champion_not_the_version_it_replaced(champion, retrain):
    """After a promotion, the replaced version's battles linger in the windows: they must not
    call for retraining the model that replaced it (the loop would never settle). With no
    champion known, any version's breach counts."""
    record = _champion_record(champion)
    assert [w.status for w in record.windows] == [B, B]  # what the reader sees is unchanged
    assert record.decision.retrain is retrain
    assert MonitorRecord.from_dict(record.to_dict(), "monitor.json") == record


def test_a_record_whose_champion_was_edited_is_refused():
    data = _champion_record("3").to_dict() | {"champion": "4"}
    with pytest.raises(RecordError, match="decision does not follow"):
        MonitorRecord.from_dict(data, "monitor.json")

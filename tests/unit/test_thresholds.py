import json

import pytest

from ci.thresholds import (
    Threshold,
    ThresholdError,
    from_seed_file,
    from_tags,
    parse_spec,
    updated,
)


def test_the_seed_file_is_valid_and_covers_the_main_metrics():
    rules = {rule.metric: rule for rule in from_seed_file()}
    assert {"test_f1", "test_accuracy", "test_roc_auc", "test_log_loss"} <= set(rules)
    assert rules["test_log_loss"].greater_is_better is False


def test_a_spec_round_trips_through_its_tag():
    rule = Threshold("test_f1", 0.9, True, 0.01, 0.02)
    assert from_tags({rule.tag: rule.to_json(), "owner": "team"}) == [rule]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", r"tag gate\.test_f1: not valid JSON"),
        ('"0.9"', r"tag gate\.test_f1: expected a table/object"),
        ('{"threshold": "high"}', r"tag gate\.test_f1: threshold must be a number or null"),
        ('{"threshold": 0.9, "greater": true}', r"unknown key\(s\) \['greater'\]"),
        ('{"threshold": 0.9, "tolerance_absolute": -1}', r"tolerance_absolute must be a number"),
        ('{"threshold": 0.9, "greater_is_better": "yes"}', r"greater_is_better must be true or"),
        (
            '{"threshold": NaN}',
            r"tag gate\.test_f1: not valid JSON \(NaN is not a number JSON allows\)",
        ),
    ],
)
def test_malformed_tags_name_the_tag(value, message):
    with pytest.raises(ThresholdError, match=message):
        from_tags({"gate.test_f1": value})


def test_a_malformed_seed_file_names_the_table(tmp_path):
    seed = tmp_path / "thresholds.toml"
    seed.write_text("[test_f1]\nthreshold = 'x'\n")
    with pytest.raises(ThresholdError, match=r"thresholds.toml \[test_f1\]: threshold must be"):
        from_seed_file(seed)


def test_describe_says_direction_and_tolerances():
    spec = {"threshold": 0.85, "tolerance_absolute": 0.005}
    assert parse_spec("test_f1", spec, "x").describe() == "≥ 0.85, tolerance 0.005"
    spec = {"threshold": 0.35, "greater_is_better": False, "tolerance_relative": 0.05}
    assert parse_spec("test_log_loss", spec, "x").describe() == "≤ 0.35, tolerance 5%"
    rule = parse_spec("test_f1", {"threshold": None}, "x")
    assert json.loads(rule.to_json())["threshold"] is None


@pytest.mark.parametrize("metric", ["test_bogus", "f1", "x" * 300, "train_f1", ""])
def test_only_metrics_the_gate_computes_can_have_thresholds(metric):
    with pytest.raises(ThresholdError, match="is not a metric the gate computes; use one of"):
        parse_spec(metric, {"threshold": 0.5}, "--")


def test_direction_comes_from_the_metric_unless_stated():
    assert parse_spec("test_log_loss", {"threshold": 0.3}, "x").greater_is_better is False
    assert parse_spec("test_f1", {"threshold": 0.3}, "x").greater_is_better is True
    stated = parse_spec("test_log_loss", {"greater_is_better": True}, "x")
    assert stated.greater_is_better is True


def test_updating_one_field_keeps_the_others():
    rule = Threshold("test_log_loss", 0.35, False, 0.01, 0.05)
    assert updated(rule, "test_log_loss", {"threshold": 0.3}) == Threshold(
        "test_log_loss", 0.3, False, 0.01, 0.05
    )
    assert updated(None, "test_log_loss", {"threshold": 0.3}) == Threshold(
        "test_log_loss", 0.3, False
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "defines no thresholds"),
        ("# only a comment\n", "defines no thresholds"),
        ("[test_bogus]\nthreshold = 0.5\n[test_f1]\nthreshold = 0.8\n", "test_bogus"),
        ("[test_f1]\nthreshold = 0.8\n[test_f1_x]\n", "test_f1_x"),
    ],
)
def test_a_seed_file_that_would_fail_open_or_poison_is_refused(tmp_path, text, message):
    seed = tmp_path / "thresholds.toml"
    seed.write_text(text)
    with pytest.raises(ThresholdError, match=message):
        from_seed_file(seed)


def test_a_seed_file_that_is_not_utf8_is_named(tmp_path):
    seed = tmp_path / "thresholds.toml"
    seed.write_bytes(b"[test_f1]\nthreshold = 0.8 # \xff\xfe\n")
    with pytest.raises(ThresholdError, match="not UTF-8 text"):
        from_seed_file(seed)

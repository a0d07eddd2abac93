import json

import pytest

from ci.thresholds import Threshold, ThresholdError, from_seed_file, from_tags, parse_spec


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
        ('{"threshold": NaN}', r"threshold must be a number or null"),
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
    assert parse_spec("m", {"threshold": 0.85, "tolerance_absolute": 0.005}, "x").describe() == (
        "≥ 0.85, tolerance 0.005"
    )
    spec = {"threshold": 0.35, "greater_is_better": False, "tolerance_relative": 0.05}
    assert parse_spec("m", spec, "x").describe() == "≤ 0.35, tolerance 5%"
    assert json.loads(parse_spec("m", {"threshold": None}, "x").to_json())["threshold"] is None

"""The reference profile: what it holds, that it is small and never the rows, and that a
malformed profile file is one RecordError naming the field."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from machine_learning.contract.records import RecordError
from machine_learning.datasets import RAW_COLUMNS, battles
from machine_learning.monitoring import MonitoringInputError
from machine_learning.monitoring.names import (
    ENGINEERED,
    PREDICTION,
    STAT_COLUMNS,
    TYPE_COLUMNS,
)
from machine_learning.monitoring.profile import (
    MAX_PROFILE_BYTES,
    FeatureKind,
    ReferenceProfile,
    build_profile,
    continuous_counts,
    feature_values,
)
from machine_learning.simulator import Scenario


@pytest.fixture(scope="module")
def train():
    return battles(3_000, Scenario.RANDOM, seed=11)


@pytest.fixture(scope="module")
def profile(train):
    probabilities = np.random.default_rng(0).random(1_000)
    return build_profile(train, probabilities, "v2", seed=3)


def test_a_v2_profile_holds_the_raw_columns_but_names_and_the_drifting_features(profile):
    kinds = {feature.name: feature.kind for feature in profile.features}
    assert list(kinds) == [*STAT_COLUMNS, *TYPE_COLUMNS, *ENGINEERED["v2"]]
    assert "a_name" not in kinds and "b_name" not in kinds
    assert kinds["diff_bst"] is FeatureKind.CONTINUOUS
    assert kinds["a_type2"] is FeatureKind.CATEGORICAL
    assert kinds["a_moves_first"] is FeatureKind.CATEGORICAL
    assert profile.prediction.name == PREDICTION
    assert profile.prediction.kind is FeatureKind.CONTINUOUS


def test_a_v1_profile_holds_only_what_v1_features_compute(train):
    profile = build_profile(train, np.full(10, 0.5), "v1")
    engineered = [f.name for f in profile.features if f.name not in (*STAT_COLUMNS, *TYPE_COLUMNS)]
    assert engineered == ["diff_bst"]


def test_the_shares_are_the_training_values_binned_by_the_edges(profile, train):
    values = feature_values(train, "v2")
    for feature in profile.features:
        counts = feature.bin_counts(values[feature.name])
        assert counts.sum() == len(train) == feature.n
        np.testing.assert_allclose(counts / len(train), feature.shares, atol=1e-8)


def test_continuous_bins_are_deciles_and_open_ended(profile):
    diff_bst = next(f for f in profile.features if f.name == "diff_bst")
    assert len(diff_bst.shares) == 10
    assert all(0.07 < share < 0.13 for share in diff_bst.shares)
    beyond = np.array([-1e9, 1e9])
    assert continuous_counts(diff_bst.edges, beyond).tolist() == [1, *[0] * 8, 1]


def test_types_keep_the_missing_second_type_as_a_category(profile):
    a_type2 = next(f for f in profile.features if f.name == "a_type2")
    assert a_type2.categories[0] == ""  # single-typed Pokémon: the most frequent "type"
    assert 0.4 < a_type2.shares[0] < 0.5
    assert a_type2.shares[-1] == 0.0  # nothing outside the categories listed


def test_the_json_is_small_round_trips_and_holds_no_rows(profile, train):
    text = profile.to_json()
    assert len(text) < 60_000
    assert ReferenceProfile.from_json(text) == profile
    names = set(train["a_name"]) | set(train["b_name"])
    assert not any(f'"{name}"' in text for name in names)
    assert max(len(f.sample) for f in profile.features) <= 500


def test_the_same_seed_gives_the_same_bytes(train):
    probabilities = np.linspace(0, 1, 300)
    first = build_profile(train, probabilities, "v2", seed=5).to_json()
    assert build_profile(train, probabilities, "v2", seed=5).to_json() == first
    assert build_profile(train, probabilities, "v2", seed=6).to_json() != first


def test_non_finite_training_values_are_refused(train):
    with pytest.raises(ValueError, match="p_a_wins: the reference holds non-finite"):
        build_profile(train, np.array([0.5, np.nan]), "v2")
    broken = train.copy()
    broken["a_spe"] = broken["a_spe"].astype(float)
    broken.loc[0, "a_spe"] = np.inf
    with pytest.raises(ValueError, match="a_spe: the reference holds non-finite"):
        build_profile(broken, np.full(10, 0.5), "v2")


def test_profile_arguments_are_checked(train):
    with pytest.raises(ValueError, match=r"bins must be 2\.\.50"):
        build_profile(train, np.full(10, 0.5), "v2", bins=1)
    with pytest.raises(ValueError, match=r"sample_size 1\.\.2000"):
        build_profile(train, np.full(10, 0.5), "v2", sample_size=0)
    with pytest.raises(ValueError, match="no values to profile p_a_wins"):
        build_profile(train, np.array([]), "v2")


def test_battle_rows_without_the_raw_columns_are_refused(train):
    with pytest.raises(MonitoringInputError, match="lack the columns a_hp"):
        feature_values(train.drop(columns=["a_hp"]), "v2")
    odd = train.head(50).copy()
    odd["b_type1"] = "Shadow"
    with pytest.raises(MonitoringInputError, match="unknown Pokémon type 'Shadow'"):
        feature_values(odd, "v2")


def test_feature_values_turn_bad_numbers_into_nan_and_missing_types_into_empty(train):
    rows = train.head(3)[list(RAW_COLUMNS)].copy()
    rows["a_hp"] = rows["a_hp"].astype(object)
    rows.loc[rows.index[0], "a_hp"] = "lots"
    rows.loc[rows.index[1], "a_type2"] = None
    values = feature_values(rows, "v2")
    assert np.isnan(values["a_hp"][0]) and np.isnan(values["diff_bst"][0])
    assert values["a_type2"][1] == ""
    assert values["a_moves_first"][2] in ("-1", "0", "1")


def _mutated(profile, change):
    data = json.loads(profile.to_json())
    change(data)
    return json.dumps(data)


def _feature(name):
    def pick(data):
        return next(f for f in data["features"] if f["name"] == name)

    return pick


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _feature("diff_bst")(d).update(name="a_name"), "'a_name' is not one the"),
        (lambda d: _feature("diff_bst")(d).update(name="bogus"), "'bogus' is not one the"),
        (lambda d: _feature("a_type1")(d).update(kind="continuous"), "must be categorical"),
        (lambda d: _feature("diff_bst")(d).update(kind="ordinal"), "must be one of"),
        (lambda d: _feature("diff_bst")(d)["shares"].__setitem__(0, 0.5), "add up to 1"),
        (lambda d: _feature("diff_bst")(d)["shares"].__setitem__(0, "x"), r"shares\[0\]"),
        (lambda d: _feature("diff_bst")(d)["shares"].__setitem__(0, -0.1), r"numbers in \[0, 1\]"),
        (lambda d: _feature("diff_bst")(d).update(categories=["x"]), "has no categories"),
        (lambda d: _feature("diff_bst")(d)["edges"].reverse(), "edges must increase"),
        (lambda d: _feature("diff_bst")(d)["edges"].pop(), "one share more than edges"),
        (lambda d: _feature("diff_bst")(d).update(sample=[]), "sample must hold"),
        (lambda d: _feature("diff_bst")(d).update(sample=[1.0] * 2001), "sample must hold"),
        (lambda d: _feature("a_type1")(d)["categories"].__setitem__(1, "Water"), "repeat"),
        (lambda d: _feature("a_type1")(d).update(sample=[1.0]), "has no edges or sample"),
        (lambda d: _feature("a_type1")(d).update(n=0), "n must be at least 1"),
        (lambda d: d["features"].append(d["features"][0]), "distinct features"),
        (lambda d: d.update(features=[]), "distinct features"),
        (lambda d: d.update(dataset_version="v1"), "v1 profile cannot hold log_bulk_ratio"),
        (lambda d: d.update(dataset_version="v9"), "must be one of"),
        (lambda d: d.update(format=2), "format 2 is not 1"),
        (lambda d: d["prediction"].update(name="diff_bst"), "prediction must profile p_a_wins"),
        (lambda d: d.pop("prediction"), "'prediction' is missing"),
        (lambda d: d.update(features={"diff_bst": 1}), "must be a list"),
    ],
)
def test_a_malformed_profile_is_one_record_error_naming_the_field(profile, change, message):
    with pytest.raises(RecordError, match=message):
        ReferenceProfile.from_json(_mutated(profile, change), "runs:/abc/profile.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "is not valid JSON"),
        ('{"format": NaN}', "NaN is not a number JSON allows"),
        ("[]", "the document must be an object"),
        (" " * (MAX_PROFILE_BYTES + 1), "is larger than 262,144 bytes"),
    ],
)
def test_a_profile_that_is_not_a_profile_document_is_refused(text, message):
    with pytest.raises(RecordError, match=message):
        ReferenceProfile.from_json(text, "profile.json")


def test_a_profile_file_is_read_only_when_regular_and_bounded(profile, tmp_path):
    path = tmp_path / "profile.json"
    profile.write(path)
    assert ReferenceProfile.read(path) == profile
    link = tmp_path / "link.json"
    os.symlink(path, link)
    with pytest.raises(RecordError, match="is a symlink"):
        ReferenceProfile.read(link)
    path.write_text(" " * (MAX_PROFILE_BYTES + 1))
    with pytest.raises(RecordError, match="larger than"):
        ReferenceProfile.read(path)


def test_training_writes_the_profile_of_its_own_battles_and_test_predictions(tmp_path, train):
    """What every training run (and every model of ``compare``) logs as ``profile.json``."""
    from machine_learning.datasets import BattleData
    from machine_learning.evaluate import win_probability
    from machine_learning.models import ModelName
    from machine_learning.train import TrainConfig, fit

    data = BattleData(train.head(1_200), battles(400, Scenario.RANDOM, seed=12), Scenario.RANDOM)
    config = TrainConfig(model=ModelName.LOGISTIC_REGRESSION, seed=5, output_dir=tmp_path)
    trained = fit(ModelName.LOGISTIC_REGRESSION, config, data, tmp_path / "plots")

    assert trained.profile == tmp_path / "plots" / "profile.json"
    written = ReferenceProfile.read(trained.profile)
    assert written.dataset_version == "v2"
    assert {f.n for f in written.features} == {1_200}
    expected = build_profile(data.train, win_probability(trained.pipeline, data.test), "v2", seed=5)
    assert written == expected
    text = trained.profile.read_text(encoding="utf-8")
    assert len(text) < MAX_PROFILE_BYTES
    assert not any(name in text for name in data.train["a_name"].head(50))

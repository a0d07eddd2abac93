import numpy as np
import pandas as pd
import pytest

from machine_learning.datasets import LABEL, battles
from machine_learning.features import BattleFeatures
from machine_learning.simulator import Scenario


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return battles(500, Scenario.RANDOM, 11).drop(columns=[LABEL])


def test_v1_is_base_stats_differences_and_totals(table):
    features = BattleFeatures("v1").fit(table)
    matrix = features.transform(table)
    names = list(features.get_feature_names_out())
    assert matrix.shape == (500, 21)
    assert names[:3] == ["a_hp", "a_atk", "a_def"] and names[-1] == "diff_bst"
    assert np.allclose(matrix[:, names.index("diff_spe")], table["a_spe"] - table["b_spe"])


def test_v2_adds_matchup_features(table):
    features = BattleFeatures("v2").fit(table)
    names = list(features.get_feature_names_out())
    assert features.transform(table).shape == (500, len(names))
    assert len(names) >= 40
    assert {"a_best_stab_eff", "a_moves_first", "a_damage_share", "diff_hits_to_ko"} <= set(names)


def _single(a: dict, b: dict) -> pd.DataFrame:
    row = {f"a_{k}": v for k, v in a.items()} | {f"b_{k}": v for k, v in b.items()}
    return pd.DataFrame([row])


BLASTOISE = {
    "name": "Blastoise",
    "type1": "Water",
    "type2": "",
    "hp": 79,
    "atk": 83,
    "def": 100,
    "spa": 85,
    "spd": 105,
    "spe": 78,
}
CHARIZARD = {
    "name": "Charizard",
    "type1": "Fire",
    "type2": "Flying",
    "hp": 78,
    "atk": 84,
    "def": 78,
    "spa": 109,
    "spd": 85,
    "spe": 100,
}


def test_type_matchups_are_computed_from_the_chart():
    row = _single(BLASTOISE, CHARIZARD)
    features = BattleFeatures("v2").fit(row)
    values = dict(zip(features.get_feature_names_out(), features.transform(row)[0], strict=True))
    assert values["a_best_stab_eff"] == 2.0  # Water vs Fire/Flying
    assert values["b_type1_eff"] == 0.5  # Fire vs Water
    assert values["b_type2_eff"] == 1.0  # Flying vs Water
    assert values["a_dual_type"] == 0.0 and values["b_dual_type"] == 1.0
    assert values["a_moves_first"] == -1.0  # Charizard is faster


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="lack the columns a_spe"):
        BattleFeatures("v1").fit(_single(BLASTOISE, CHARIZARD).drop(columns=["a_spe"]))


def test_unknown_type_is_named():
    row = _single(BLASTOISE | {"type1": "Cosmic"}, CHARIZARD)
    with pytest.raises(ValueError, match="unknown Pokémon type 'Cosmic'"):
        BattleFeatures("v2").fit(row)


def test_unknown_dataset_version_is_refused():
    with pytest.raises(ValueError, match="'v9' is not a valid DatasetVersion"):
        BattleFeatures("v9").fit(_single(BLASTOISE, CHARIZARD))


def test_one_battle_at_a_time_gives_the_rows_of_a_whole_batch(table):
    """The service's small batches take another path through the lookups: same numbers."""
    features = BattleFeatures("v2").fit(table)
    rows = table.head(40)  # above SMALL_BATCH rows: factorised; one row: looked up directly
    whole = features.transform(rows)
    one_by_one = np.vstack([features.transform(rows.iloc[[i]]) for i in range(len(rows))])
    assert np.array_equal(whole, one_by_one)

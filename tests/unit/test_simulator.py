import numpy as np
import pytest

from machine_learning.data import load_pokedex
from machine_learning.datasets import (
    RAW_COLUMNS,
    TEST_SEED,
    battles,
    make_battle_data,
    table_digest,
)
from machine_learning.mechanics import type_index
from machine_learning.simulator import Scenario, sample_pairs, simulate


def test_same_seed_gives_the_same_battles_byte_for_byte():
    first, second = battles(2_000, Scenario.RANDOM, 7), battles(2_000, Scenario.RANDOM, 7)
    assert first.to_csv().encode() == second.to_csv().encode()
    assert table_digest(first) == table_digest(second)


def test_another_seed_gives_other_battles():
    assert table_digest(battles(2_000, Scenario.RANDOM, 7)) != table_digest(
        battles(2_000, Scenario.RANDOM, 8)
    )


def test_test_set_is_fixed_whatever_the_training_seed():
    one = make_battle_data(500, Scenario.RANDOM, seed=1, n_test=300)
    two = make_battle_data(500, Scenario.RANDOM, seed=2, n_test=300)
    assert (
        one.test_digest == two.test_digest == table_digest(battles(300, Scenario.RANDOM, TEST_SEED))
    )
    assert one.digest != two.digest


def test_digest_reads_rows_beyond_ten_thousand():
    table = battles(12_000, Scenario.RANDOM, 3)
    changed = table.copy()
    changed.loc[11_500, "a_wins"] = 1 - changed.loc[11_500, "a_wins"]
    assert table_digest(table) != table_digest(changed)


def test_battle_rows_have_the_raw_columns_and_a_binary_label():
    table = battles(100, Scenario.BALANCED, 1)
    assert tuple(table.columns) == (*RAW_COLUMNS, "a_wins")
    assert set(table["a_wins"]) <= {0, 1}


@pytest.mark.parametrize("n", [0, -5])
def test_non_positive_battle_count_is_refused(n):
    with pytest.raises(ValueError, match="must be positive"):
        battles(n, Scenario.RANDOM, 1)


def test_pairs_never_fight_themselves_and_balanced_pairs_are_closer():
    bst = load_pokedex()["bst"].to_numpy()
    rng = np.random.default_rng(0)
    random_a, random_b = sample_pairs(bst, 20_000, Scenario.RANDOM, rng)
    balanced_a, balanced_b = sample_pairs(bst, 20_000, Scenario.BALANCED, rng)
    assert (random_a != random_b).all() and (balanced_a != balanced_b).all()
    random_gap = np.abs(bst[random_a] - bst[random_b]).mean()
    balanced_gap = np.abs(bst[balanced_a] - bst[balanced_b]).mean()
    assert balanced_gap < random_gap / 5


def _duel(a_name: str, b_name: str, n: int = 2_000) -> float:
    dex = load_pokedex().set_index("name")
    stats = ["hp", "atk", "def", "spa", "spd", "spe"]
    a_base = np.tile(dex.loc[a_name, stats].to_numpy(dtype=float), (n, 1))
    b_base = np.tile(dex.loc[b_name, stats].to_numpy(dtype=float), (n, 1))

    def types(name):
        return np.tile(type_index([dex.loc[name, "type1"], dex.loc[name, "type2"]]), (n, 1))

    return simulate(a_base, b_base, types(a_name), types(b_name), np.random.default_rng(5)).mean()


def test_a_legendary_beats_a_baby():
    assert _duel("Mewtwo", "Caterpie") == 1.0
    assert _duel("Caterpie", "Mewtwo") == 0.0


def test_type_advantage_decides_an_even_matchup():
    # Blastoise (Water) vs Charizard (Fire/Flying): similar totals, Water beats Fire.
    assert _duel("Blastoise", "Charizard") > 0.8


def test_a_mirror_match_is_close_to_a_coin_flip():
    assert 0.35 < _duel("Pikachu", "Pikachu") < 0.65

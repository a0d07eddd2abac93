import json
import zipfile

import numpy as np
import pytest

from machine_learning.data import load_pokedex, load_type_chart
from machine_learning.data.rebuild import POKEDEX_MEMBER, TYPECHART_MEMBER, main


def species(name: str) -> dict:
    dex = load_pokedex()
    return dex[dex["name"] == name].iloc[0].to_dict()


def test_pokedex_covers_every_generation_with_unique_ids():
    dex = load_pokedex()
    assert dex["id"].is_unique
    assert dex["num"].nunique() == 1025
    assert set(dex["generation"]) == set(range(1, 10))
    assert (dex["bst"] == dex[["hp", "atk", "def", "spa", "spd", "spe"]].sum(axis=1)).all()


@pytest.mark.parametrize(
    ("name", "types", "stats"),
    [
        ("Pikachu", ("Electric", ""), (35, 55, 40, 50, 50, 90)),
        ("Charizard", ("Fire", "Flying"), (78, 84, 78, 109, 85, 100)),
        ("Garchomp", ("Dragon", "Ground"), (108, 130, 95, 80, 85, 102)),
        ("Shuckle", ("Bug", "Rock"), (20, 10, 230, 10, 230, 5)),
        ("Blissey", ("Normal", ""), (255, 10, 10, 75, 135, 55)),
    ],
)
def test_known_species(name, types, stats):
    row = species(name)
    assert (row["type1"], row["type2"]) == types
    assert tuple(row[s] for s in ("hp", "atk", "def", "spa", "spd", "spe")) == stats


def test_formes_and_flags():
    assert species("Charizard-Mega-X")["type2"] == "Dragon"
    assert species("Mewtwo")["legendary"] == 1
    assert species("Mew")["mythical"] == 1
    assert species("Pikachu")["legendary"] == 0
    assert not load_pokedex()["forme"].isin(["Gmax", "Totem"]).any()


@pytest.mark.parametrize(
    ("attacking", "defending", "multiplier"),
    [
        ("Fire", "Grass", 2.0),
        ("Water", "Fire", 2.0),
        ("Electric", "Ground", 0.0),
        ("Ghost", "Normal", 0.0),
        ("Dragon", "Fairy", 0.0),
        ("Fire", "Water", 0.5),
        ("Steel", "Fairy", 2.0),
        ("Normal", "Normal", 1.0),
    ],
)
def test_type_chart_matchups(attacking, defending, multiplier):
    types, chart = load_type_chart()
    assert len(types) == 18
    assert chart[types.index(attacking), types.index(defending)] == multiplier


def test_type_chart_values_are_game_multipliers():
    _, chart = load_type_chart()
    assert set(np.unique(chart)) == {0.0, 0.5, 1.0, 2.0}


def test_rebuild_filters_and_converts_a_showdown_wheel(tmp_path):
    pokedex = {
        "bulbasaur": {
            "num": 1,
            "name": "Bulbasaur",
            "types": ["Grass", "Poison"],
            "baseStats": {"hp": 45, "atk": 49, "def": 49, "spa": 65, "spd": 65, "spe": 45},
        },
        "venusaurgmax": {
            "num": 3,
            "name": "Venusaur-Gmax",
            "forme": "Gmax",
            "types": ["Grass"],
            "baseStats": {"hp": 1, "atk": 1, "def": 1, "spa": 1, "spd": 1, "spe": 1},
        },
        "syclant": {
            "num": -1,
            "name": "Syclant",
            "types": ["Ice", "Bug"],
            "baseStats": {"hp": 1, "atk": 1, "def": 1, "spa": 1, "spd": 1, "spe": 1},
        },
        "mew": {
            "num": 151,
            "name": "Mew",
            "types": ["Psychic"],
            "tags": ["Mythical"],
            "baseStats": {"hp": 100, "atk": 100, "def": 100, "spa": 100, "spd": 100, "spe": 100},
        },
    }
    typechart = {
        "fire": {"damageTaken": {"Fire": 2, "Water": 1}},
        "water": {"damageTaken": {"Fire": 2, "Water": 2}},
    }
    wheel = tmp_path / "poke_env.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(POKEDEX_MEMBER, json.dumps(pokedex))
        archive.writestr(TYPECHART_MEMBER, json.dumps(typechart))
    assert main([str(wheel), "--out-dir", str(tmp_path)]) == 0
    lines = (tmp_path / "pokedex.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in lines[1:]] == ["Bulbasaur", "Mew"]
    assert lines[2].endswith(",600,1,0,1")
    chart = (tmp_path / "type_chart.csv").read_text().splitlines()
    assert chart == ["attacking,Fire,Water", "Fire,0.5,0.5", "Water,2.0,0.5"]


def test_rebuild_reports_an_unreadable_wheel(tmp_path, capsys):
    assert main([str(tmp_path / "missing.whl"), "--out-dir", str(tmp_path)]) == 2
    assert "cannot read Showdown data" in capsys.readouterr().err

"""The predictor's hot path: bodies of battles by known names decoded straight to Pokédex rows,
and plainly valid raw rows straight to the model's columns, answered byte for byte as the
contract's path answers them; every other body left to the contract's validation (which says
what is wrong)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from machine_learning.contract.prediction import MAX_BATTLES, MAX_NAME_CHARS, MAX_STAT, RAW_FIELDS
from machine_learning.datasets import held_out_battles
from machine_learning.serving.hot_path import Decoded, decoded
from machine_learning.serving.predict import (
    ModelInfo,
    Predictor,
    RawBattles,
    asked_battles,
    pokedex,
    raw_rows,
    showdown_id,
)
from machine_learning.serving.routes import _battles, _scored
from machine_learning.simulator import Scenario


def spellings_drawn(count: int, seed: int) -> list[str]:
    """Spellings the decoder knows, whenever it was built: the Pokédex's names and their
    Showdown ids (other tests add the spellings they find; the decoder keeps its own)."""
    names = pokedex().names
    every = names + [showdown_id(name) for name in names]
    return [str(s) for s in np.random.default_rng(seed).choice(every, count)]


def bodies(a: list[str], b: list[str]) -> dict[str, bytes]:
    rows = [{"a": x, "b": y} for x, y in zip(a, b, strict=True)]
    return {
        "rows": json.dumps({"battles": rows}).encode(),
        "columns": json.dumps({"battles": {"a": a, "b": b}}).encode(),
    }


def table_predictor() -> Predictor:
    n = len(pokedex().names)
    table = np.random.default_rng(3).random((n, n)).round(6)
    return Predictor(ModelInfo(uri="models:/m/2", name="m", version="2"), None, table)


@pytest.mark.parametrize("form", ["rows", "columns"])
def test_known_names_are_answered_byte_for_byte_as_the_contracts_path_answers(form):
    raw = bodies(spellings_drawn(500, seed=1), spellings_drawn(500, seed=2))[form]
    served, known = table_predictor(), decoded(raw)
    assert isinstance(known, Decoded) and known.as_columns == (form == "columns")
    assert _scored(served, known, None, None) == _scored(served, _battles(raw), None, None)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"battles": [{"a": "pikachu", "b": "mew", "a": "onix"}]}',
        b'{"battles": {"a": ["pikachu"], "b": ["mew"], "a": ["onix"]}}',
        b'{"battles": {"a": ["pikachu"], "b": ["mew"]}, "battles": [{"a": "onix", "b": "mew"}]}',
        b'{"battles": [{"a": "onix", "b": "mew"}], "battles": {"a": ["pikachu"], "b": ["mew"]}}',
        b'{"battles": {"a": ["\\u0050ikachu", "Flab\\u00e9b\\u00e9"], "b": ["mew", "onix"]}}',
        b' \n{"battles" :\t[ {"b": "mew", "a": "Mr. Mime"} ] } \n',
    ],
)
def test_duplicate_keys_escapes_and_whitespace_read_as_the_contracts_parser_reads_them(raw):
    """msgspec and pydantic's parser must agree on what a body says (the last of duplicate
    keys wins in both); whichever path takes it, the answer is the contract path's."""
    served = table_predictor()
    hot = decoded(raw) or _battles(raw)
    assert _scored(served, hot, None, None) == _scored(served, _battles(raw), None, None)


def test_a_spelling_found_after_the_decoder_was_built_still_takes_the_contracts_path():
    """The decoder knows the spellings of its first use; later ones are answered all the same."""
    decoded(bodies(["pikachu"], ["mew"])["rows"])  # the decoder is built
    seen = set(pokedex().spellings())
    cases = ("".join(c) for c in itertools.product(*zip("pikachu", "PIKACHU", strict=True)))
    late = next(spelling for spelling in cases if spelling not in seen)
    raw = bodies([late], ["mew"])["columns"]
    assert decoded(raw) is None
    assert asked_battles(_battles(raw)).a.tolist() == [pokedex().find("pikachu")]
    assert late in pokedex().spellings() and decoded(raw) is None  # not in the decoder


TOO_MANY = MAX_BATTLES + 1


@pytest.mark.parametrize(
    "body",
    [
        {"battles": [{"a": "pikachu", "b": "not-a-pokemon"}]},
        {"battles": {"a": ["pikachu"], "b": ["not-a-pokemon"]}},
        {"battles": [{"a": "pikachu", "b": "mew", "c": "onix"}]},
        {"battles": {"a": ["pikachu"], "b": ["mew"], "c": ["onix"]}},
        {"battles": [{"a": "pikachu", "b": "mew"}], "extra": 1},
        {"battles": [{"a": "pikachu"}]},
        {"battles": []},
        {"battles": {"a": [], "b": []}},
        {"battles": {"a": ["pikachu", "mew"], "b": ["mew"]}},
        {"battles": {"a": ["pikachu"] * TOO_MANY, "b": ["mew"] * TOO_MANY}},
        {"battles": [{"a": "pikachu", "b": "mew"}] * TOO_MANY},
        {"battles": [{"a": 25, "b": "mew"}]},
        {"battles": [{"a_name": "Pikachu", "b_name": "Mew"}]},
        {"battles": [[[[]]]]},
        {"outcomes": []},
        [],
    ],
    ids=lambda body: json.dumps(body)[:60],
)
def test_every_other_body_is_left_to_the_contracts_validation(body):
    assert decoded(json.dumps(body).encode()) is None


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"battles": [{"a": "pikachu", "b": "mew"}]} x', b"\xff"]
)
def test_what_is_not_json_is_left_to_the_contracts_validation(raw):
    assert decoded(raw) is None
    assert _battles(raw)[0] == 400


def raw_records(count: int) -> list[dict]:
    """Raw rows as a client sends them: a_type2 null and b_type2 "" in the first (no second
    type, both ways), stats at both bounds, and a caller's label as long as allowed."""
    frame = held_out_battles(count, Scenario.RANDOM)[list(RAW_FIELDS)]
    records = json.loads(frame.to_json(orient="records"))
    records[0] |= {"a_type2": None, "b_type2": "", "a_hp": 1, "b_spe": MAX_STAT}
    label = "Flab\u00e9b\u00e9\u2019s twin "
    records[1] |= {"a_name": label + "x" * (MAX_NAME_CHARS - len(label))}
    return records


def test_plainly_valid_raw_rows_become_the_contract_paths_model_input_exactly():
    raw = json.dumps({"battles": raw_records(300)}).encode()
    hot = decoded(raw)
    assert isinstance(hot, Decoded) and not hot.by_name and not hot.as_columns
    asked = hot.asked()  # the model's columns, built where the model scores
    assert isinstance(asked, RawBattles)
    pd.testing.assert_frame_equal(asked.frame(), raw_rows(_battles(raw)))


@pytest.mark.parametrize(
    "change",
    [
        {"a_hp": 80.0},
        {"a_hp": "80"},
        {"a_hp": 0},
        {"a_hp": MAX_STAT + 1},
        {"a_hp": True},
        {"a_hp": 10**400},
        {"a_type1": "fire"},
        {"b_type2": "None"},
        {"a_name": "x" * (MAX_NAME_CHARS + 1)},
        {"a_name": 25},
        {"extra": 1},
    ],
    ids=str,
)
def test_raw_rows_the_contract_may_read_otherwise_are_left_to_it(change):
    """Stricter than the contract, never looser: pydantic reads 80.0 and "80" as 80 and refuses
    the rest with a reason; either way it is the contract's path that decides."""
    record = raw_records(2)[0] | change
    assert decoded(json.dumps({"battles": [record]}).encode()) is None


def test_a_raw_row_without_a_field_is_left_to_the_contract():
    record = raw_records(2)[0]
    del record["b_spd"]
    assert decoded(json.dumps({"battles": [record]}).encode()) is None

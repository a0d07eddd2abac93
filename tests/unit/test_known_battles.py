"""The predictor's hot path: bodies of battles by known names decoded straight to Pokédex rows,
answered byte for byte as the contract's path answers them, and every other body left to the
contract's validation (which says what is wrong)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from machine_learning.contract.prediction import MAX_BATTLES
from machine_learning.serving.known_battles import KnownBattles, known_battles
from machine_learning.serving.predict import (
    ModelInfo,
    Predictor,
    asked_battles,
    pokedex,
    showdown_id,
)
from machine_learning.serving.routes import _battles, _scored


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
    served, known = table_predictor(), known_battles(raw)
    assert isinstance(known, KnownBattles) and known.as_columns == (form == "columns")
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
    hot = known_battles(raw) or _battles(raw)
    assert _scored(served, hot, None, None) == _scored(served, _battles(raw), None, None)


def test_a_spelling_found_after_the_decoder_was_built_still_takes_the_contracts_path():
    """The decoder knows the spellings of its first use; later ones are answered all the same."""
    known_battles(bodies(["pikachu"], ["mew"])["rows"])  # the decoder is built
    seen = set(pokedex().spellings())
    cases = ("".join(c) for c in itertools.product(*zip("pikachu", "PIKACHU", strict=True)))
    late = next(spelling for spelling in cases if spelling not in seen)
    raw = bodies([late], ["mew"])["columns"]
    assert known_battles(raw) is None
    assert asked_battles(_battles(raw)).a.tolist() == [pokedex().find("pikachu")]
    assert late in pokedex().spellings() and known_battles(raw) is None  # not in the decoder


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
    assert known_battles(json.dumps(body).encode()) is None


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"battles": [{"a": "pikachu", "b": "mew"}]} x', b"\xff"]
)
def test_what_is_not_json_is_left_to_the_contracts_validation(raw):
    assert known_battles(raw) is None
    assert _battles(raw)[0] == 400

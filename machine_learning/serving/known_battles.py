"""Request bodies whose battles are all by name, in spellings the Pokédex already knows, decoded
straight to Pokédex rows: the hot path of ``/v1/predict``.

msgspec decodes the body against the closed set of known spellings (the Pokédex's names, ids
and Showdown ids): each name is matched from the body's bytes and comes back as the very string
the Pokédex keys on, so nothing is built twice and every lookup is an identity hit. 10,000
battles as columns are decoded and looked up in about 1.1 ms, where pydantic's parser and the
lookups took about 1.8 (benchmarks/serving.py). Anything else — another shape, an unknown or
new spelling, an empty or oversized list — is not an error here: it returns None and the body
goes through the contract's validation, which says what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from machine_learning.contract.prediction import MAX_BATTLES
from machine_learning.serving.predict import NamedBattles, pokedex

if TYPE_CHECKING:
    from machine_learning.serving.predict import Pokedex


@dataclass(frozen=True)
class KnownBattles:
    """Battles decoded by the hot path, and whether they were asked as columns (and so are
    answered as columns) or as rows."""

    battles: NamedBattles
    as_columns: bool


def known_battles(raw: bytes) -> KnownBattles | None:
    """The body's battles when it is ``{"battles": …}`` by name, as rows or as columns, with
    every name a known spelling; else None (the contract's validation takes it)."""
    dex = pokedex()
    try:
        battles = _decoder(dex).decode(raw).battles
    except msgspec.DecodeError:  # validation errors included
        return None
    if isinstance(battles, list):
        a, b = (list(map(attrgetter(side), battles)) for side in "ab")
    else:
        a, b = battles.a, battles.b
    found = dex.known_columns(a, b)
    return KnownBattles(found, not isinstance(battles, list)) if found else None


def prepare_decoder() -> None:
    """Build the Pokédex and the decoder now (about 10 ms for the decoder's 2,672 spellings), so
    the service's start pays for them rather than its first answer."""
    _decoder(pokedex())


@cache
def _decoder(dex: Pokedex) -> msgspec.json.Decoder:
    """The decoder of bodies in the spellings ``dex`` knows now (later ones take the contract's
    path). Built once, in about 10 ms."""
    spelling = Literal[tuple(dex.spellings())]
    names = Annotated[list[spelling], msgspec.Meta(min_length=1, max_length=MAX_BATTLES)]
    columns = msgspec.defstruct("Columns", [("a", names), ("b", names)], forbid_unknown_fields=True)
    battle = msgspec.defstruct(
        "Battle", [("a", spelling), ("b", spelling)], forbid_unknown_fields=True, gc=False
    )
    rows = Annotated[list[battle], msgspec.Meta(min_length=1, max_length=MAX_BATTLES)]
    body = msgspec.defstruct("Body", [("battles", columns | rows)], forbid_unknown_fields=True)
    return msgspec.json.Decoder(body)

"""The hot path of ``/v1/predict``: request bodies decoded by msgspec straight to what the model
or the matchup table takes, without the contract's models, when they are plainly valid.

Two kinds of body take it. Battles by name (rows or columns) whose every name is a spelling the
Pokédex already knows: msgspec matches each name from the body's bytes against that closed set
and returns the very string the Pokédex keys on, so nothing is built twice and every lookup is
an identity hit. And full raw rows already within the contract's bounds (known types, whole
stats from 1 to MAX_STAT, names of at most MAX_NAME_CHARS), decoded straight into the model's
columns (built in the worker thread that scores them). 10,000 battles as columns cost about
0.4 ms less to decode than through pydantic's parser and the lookups; 10,000 raw rows about
35 ms less than parsing, validating and ``DataFrame.from_records`` (benchmarks/serving.py),
and hold the event loop for the decoding only (about 6 ms, against about 15 ms of parsing).

The hot path is stricter than the contract, never looser: anything else — another shape, a name
not seen yet, a stat written as 80.0 or "80", an empty or oversized list — is not an error
here. It returns None, and the body goes through the contract's validation, which accepts what
it accepts and says what is wrong with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from machine_learning.contract.prediction import (
    MAX_BATTLES,
    MAX_NAME_CHARS,
    MAX_STAT,
    RAW_FIELDS,
    STATS,
    TYPES,
)
from machine_learning.serving.predict import (
    Battles,
    NamedBattles,
    RawBattles,
    pokedex,
    without_missing_types,
)

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.serving.predict import Pokedex


@dataclass(frozen=True)
class Decoded:
    """Battles decoded by the hot path: by name as Pokédex rows (and whether they were asked as
    columns, and so are answered as columns), or raw rows as msgspec decoded them."""

    battles: NamedBattles | list
    as_columns: bool = False

    @property
    def by_name(self) -> bool:
        return isinstance(self.battles, NamedBattles)

    def asked(self) -> Battles:
        """The battles as the table or the model takes them. Raw rows become the model's
        columns here, in the worker thread that scores them, not on the event loop (10,000
        rows: about 10 ms)."""
        if self.by_name:
            return self.battles
        return RawBattles(_model_columns(self.battles))


def decoded(raw: bytes) -> Decoded | None:
    """The body's battles when the hot path takes it (see the module), else None."""
    return _by_name(raw) or _raw_rows(raw)


def prepare_decoders() -> None:
    """Build the Pokédex and the decoders now (about 10 ms for the 2,672 spellings), so the
    service's start pays for them rather than its first answer."""
    _names_decoder(pokedex())
    _raw_decoder()


def _by_name(raw: bytes) -> Decoded | None:
    dex = pokedex()
    try:
        battles = _names_decoder(dex).decode(raw).battles
    except msgspec.DecodeError:  # validation errors included
        return None
    as_columns = not isinstance(battles, list)
    if as_columns:
        a, b = battles.a, battles.b
    else:
        a, b = (list(map(attrgetter(side), battles)) for side in "ab")
    found = dex.known_columns(a, b)
    return Decoded(found, as_columns) if found else None


def _raw_rows(raw: bytes) -> Decoded | None:
    try:
        return Decoded(_raw_decoder().decode(raw).battles)
    except msgspec.DecodeError:
        return None


def _model_columns(rows: list) -> pd.DataFrame:
    """Decoded raw rows as the model's input, typed as ``predict.raw_rows`` types them."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for field in RAW_FIELDS:
        values = map(attrgetter(field), rows)
        is_stat = field[2:] in STATS
        columns[field] = np.fromiter(values, np.int64, len(rows)) if is_stat else list(values)
    return without_missing_types(pd.DataFrame(columns))


def _rows(item: Any) -> Any:
    return Annotated[list[item], msgspec.Meta(min_length=1, max_length=MAX_BATTLES)]


def _struct(name: str, fields: list[tuple[str, Any]]) -> Any:
    """A struct that refuses fields it does not name (the contract's path decides on them)."""
    return msgspec.defstruct(name, fields, forbid_unknown_fields=True, gc=False)


@cache
def _names_decoder(dex: Pokedex) -> msgspec.json.Decoder:
    """Bodies of battles by name in the spellings ``dex`` knows now (later ones take the
    contract's path): ``{"battles": [{"a": …, "b": …}, …]}`` or ``{"battles": {"a": […], "b":
    […]}}``."""
    spelling = Literal[tuple(dex.spellings())]
    columns = _struct("Columns", [("a", _rows(spelling)), ("b", _rows(spelling))])
    battle = _struct("Battle", [("a", spelling), ("b", spelling)])
    return msgspec.json.Decoder(_struct("Body", [("battles", columns | _rows(battle))]))


@cache
def _raw_decoder() -> msgspec.json.Decoder:
    """Bodies of full raw rows, each field within the contract's bounds (contract.RawBattle)."""
    kinds = {
        "name": Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)],
        "type1": Literal[TYPES],
        "type2": Literal[(*TYPES, "")] | None,
        **dict.fromkeys(STATS, Annotated[int, msgspec.Meta(ge=1, le=MAX_STAT)]),
    }
    row = _struct("RawRow", [(field, kinds[field[2:]]) for field in RAW_FIELDS])
    return msgspec.json.Decoder(_struct("RawBody", [("battles", _rows(row))]))

"""Who wins: a logged model asked about battles given by Pokémon name or by raw battle rows.

The model takes raw battle rows (both sides' names, types and base stats: datasets.RAW_COLUMNS)
and returns class probabilities, column 1 being "a wins". Names are looked up in the shipped
Pokédex the way Showdown ids work (case, spaces and punctuation ignored: "Mr. Mime" = "mrmime",
"charizard-mega-x" = "Charizard-Mega-X"); an unknown name gets the closest ones as suggestions.
"""

from __future__ import annotations

import difflib
import heapq
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from machine_learning.contract.failures import BadInput, first_line
from machine_learning.contract.mlflow_names import CHAMPION, REGISTERED_MODEL, TAG_GIT_SHA
from machine_learning.contract.prediction import (
    BATTLE_COLUMNS,
    MAX_BATTLES,
    MAX_NAME_CHARS,
    MAX_STAT,
    NAMED_BATTLES,
    RAW_BATTLES,
    STATS,
    ServedModel,
    response_json,
)
from machine_learning.data import load_pokedex
from machine_learning.datasets import RAW_COLUMNS, SIDE_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

DEFAULT_MODEL_URI = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
TYPED_NAMES_KEPT = 100_000
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class PredictError(BadInput, ValueError):
    """Input the model cannot be asked about (unknown Pokémon, malformed rows), or no model."""


class Pokedex:
    """Name → raw columns of one side, for every species and forme."""

    def __init__(self) -> None:
        import numpy as np
        from pydantic_core import to_json

        table = load_pokedex()
        self.names: list[str] = table["name"].tolist()
        self._index = {showdown_id(name): row for row, name in enumerate(self.names)}
        self._index |= {ident: row for row, ident in enumerate(table["id"])}
        # Names as typed → row, starting with the Pokédex's spellings and ids: a batch names the
        # same few spellings again and again, and a dict hit costs a tenth of showdown_id()'s
        # regular expression (10,000 battles: 27 → 3 ms). Only checked names get in.
        self._typed: dict[str, int] = {name: row for row, name in enumerate(self.names)}
        self._typed |= self._index
        self._columns = {column: table[column].to_numpy() for column in SIDE_COLUMNS}
        self.spelled = self._columns["name"]
        # Each name as a JSON string, for answers written as columns (columns_json)
        self.quoted = np.array([to_json(name) for name in self.names], dtype=object)

    def spellings(self) -> list[str]:
        """Every spelling found so far, as the very strings the lookups key on."""
        return list(self._typed)

    def find(self, name: str) -> int:
        """The row of ``name``; PredictError with the closest names when there is none."""
        row = self._typed.get(name)
        if row is not None:
            return row
        row = self._index.get(showdown_id(name))
        if row is None:
            close = difflib.get_close_matches(showdown_id(name), self._index, n=3, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(self.names[self._index[c]] for c in close)}?"
                if close
                else "see the names in machine_learning/data/pokedex.csv"
            )
            raise PredictError(f"unknown Pokémon {name[:60]!r}: {hint}")
        if len(self._typed) < TYPED_NAMES_KEPT:  # bounded: spellings are endless
            self._typed[name] = row
        return row

    def battles(self, a_names: Sequence[str], b_names: Sequence[str]) -> NamedBattles:
        """Battles a[i] vs b[i] as Pokédex rows (PredictError naming the first unknown name)."""
        import numpy as np

        a_rows, b_rows = (
            np.fromiter(map(self.find, names), dtype=np.intp, count=len(names))
            for names in (a_names, b_names)
        )
        return NamedBattles(a_rows, b_rows)

    def known(self, records: Sequence[Mapping[str, Any]]) -> NamedBattles | None:
        """The battles, when each is exactly ``a`` and ``b`` in spellings already found (so
        already checked against the contract); else None, and they go through its validation.
        The common case costs 10,000 battles about 1.5 ms instead of 9 ms (benchmarks/serving.py).
        """
        # map() over C functions: a generator per battle would cost more than the lookups
        if set(map(len, records)) != {2}:
            return None
        try:
            a, b = (list(map(itemgetter(side), records)) for side in "ab")
        except KeyError:
            return None
        return self.known_columns(a, b)

    def known_columns(self, a: Sequence[Any], b: Sequence[Any]) -> NamedBattles | None:
        """Battles a[i] vs b[i] when both columns are as long and hold only spellings already
        found; else None (see ``known``)."""
        import numpy as np

        if type(a) is not list or type(b) is not list or len(a) != len(b):
            return None
        row = self._typed.__getitem__  # straight into the arrays: 10,000 battles 1.05 → 0.75 ms
        try:
            a_rows, b_rows = (np.fromiter(map(row, side), np.intp, len(side)) for side in (a, b))
        except (KeyError, TypeError):  # a spelling not found yet, or a name not even hashable
            return None
        return NamedBattles(a_rows, b_rows)

    def frame(self, a_rows: np.ndarray, b_rows: np.ndarray) -> pd.DataFrame:
        """Raw battle rows for Pokédex rows a[i] vs b[i], with the Pokédex's spelling of each
        name: one array lookup per column, not a dict per battle."""
        import pandas as pd

        return pd.DataFrame(
            {
                f"{side}_{column}": self._columns[column].take(rows)
                for side, rows in (("a", a_rows), ("b", b_rows))
                for column in SIDE_COLUMNS
            }
        )


@dataclass(frozen=True)
class NamedBattles:
    """Battles by name, as rows of the Pokédex: a version's matchup table answers them with one
    array lookup, and the raw columns are built only when the model or the log needs them."""

    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    def frame(self) -> pd.DataFrame:
        return pokedex().frame(self.a, self.b)

    def names(self) -> tuple[list[str], list[str]]:
        spelled = pokedex().spelled
        return spelled.take(self.a).tolist(), spelled.take(self.b).tolist()


@dataclass(frozen=True)
class RawBattles:
    """Battles given as full raw rows, already checked: only the model can answer them."""

    rows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self) -> pd.DataFrame:
        return self.rows

    def names(self) -> tuple[list[str], list[str]]:
        return self.rows["a_name"].tolist(), self.rows["b_name"].tolist()


Battles = NamedBattles | RawBattles


def showdown_id(name: str) -> str:
    """Showdown's id of a name: lower case letters and digits only, accents dropped (NFKD:
    "Flabébé" typed with é as one character or as e and an accent is "flabebe" either way)."""
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", name).lower())


@cache
def pokedex() -> Pokedex:
    return Pokedex()


def by_name(records: Sequence[Mapping[str, Any]]) -> bool:
    """True when the battles are given by name (a record has ``a`` or ``b``), else raw rows."""
    return any("a" in record or "b" in record for record in records)


def asked_battles(records: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Battles:
    """Battles given by name pairs, by name columns (a mapping) or by full raw rows (a
    request's or a batch file's), checked against the prediction contract. The form is chosen
    from the fields rather than left to a union, so a bad battle is told what its own form
    lacks."""
    if isinstance(records, Mapping):
        return _column_battles(records)
    if not by_name(records):
        return RawBattles(raw_rows(records))
    known = pokedex().known(records)
    if known is not None:
        return known
    odd = next((r for r in records if isinstance(r, Mapping) and r.keys() != {"a", "b"}), None)
    if odd is not None:  # before the checks, which list every extra field
        fields = _fields(odd)
        raise PredictError(f"a battle by name has exactly the fields a and b; one has {fields}")
    battles = _validated(NAMED_BATTLES, records, _named_reason)
    return pokedex().battles([b["a"] for b in battles], [b["b"] for b in battles])


def _column_battles(columns: Mapping[str, Any]) -> NamedBattles:
    """Battles asked as the columns a and b: the lookup of ``known`` first, the contract's
    validation only when it does not answer."""
    if columns.keys() != {"a", "b"}:  # before the checks, which list every extra key
        raise PredictError(
            f"battles as columns have exactly the columns a and b; these have {_fields(columns)}"
        )
    known = pokedex().known_columns(columns["a"], columns["b"])
    if known is not None and len(known):
        return known
    checked = _validated(BATTLE_COLUMNS, columns, _column_reason)
    a, b = checked["a"], checked["b"]
    if len(a) != len(b):
        raise PredictError(f"the columns a and b must be as long; a has {len(a):,}, b {len(b):,}")
    return pokedex().battles(a, b)


def battle_rows(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The asked battles as the model's input: raw battle rows."""
    return asked_battles(records).frame()


def raw_rows(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Full raw battle rows as given, each field checked (types known, base stats whole
    numbers from 1 to MAX_STAT): a bad value is named here, not deep inside the model, and
    never reaches the features' 64-bit arithmetic."""
    import pandas as pd

    rows = _validated(RAW_BATTLES, records, _raw_reason)
    table = pd.DataFrame.from_records(rows, columns=list(RAW_COLUMNS))
    for side in "ab":
        for stat in STATS:
            table[f"{side}_{stat}"] = table[f"{side}_{stat}"].astype("int64")
    return without_missing_types(table)


def without_missing_types(table: pd.DataFrame) -> pd.DataFrame:
    """Raw rows with a missing second type (null) written "", as the model was trained."""
    for side in "ab":
        table[f"{side}_type2"] = table[f"{side}_type2"].fillna("")
    return table


def _validated(adapter: TypeAdapter, records: Any, reason: Callable) -> Any:
    """``records`` through the contract's ``adapter``; PredictError with the first reason."""
    try:
        return adapter.validate_python(records)
    except ValidationError as error:
        raise PredictError(reason(error.errors(include_url=False)[0], records)) from None


def _fields(record: Mapping[str, Any], shown: int = 4) -> str:
    """A record's keys for a one-line reason: the first few in sorted order (without sorting
    them all: a body may hold hundreds of thousands), any that is not a plain name quoted and
    cut short (a key may hold a newline or be megabytes long)."""
    keys = [
        key if key.isidentifier() and len(key) <= 40 else _shown(key)
        for key in heapq.nsmallest(shown, map(str, record))
    ]
    more = len(record) - shown
    return (", ".join(keys) or "none") + (f" and {more:,} more" if more > 0 else "")


def _named_reason(error: Mapping[str, Any], records: Sequence[Any]) -> str:
    """One line for the first field of battles by name that breaks the contract."""
    index, field = (*error["loc"], "")[:2]
    if error["type"] == "string_type":
        return "names must be strings"
    if error["type"].startswith("string_too"):
        return f"battle {index + 1}: {field} must be 1 to {MAX_NAME_CHARS} characters"
    return f"every battle must be an object ({error['msg']})"


def _column_reason(error: Mapping[str, Any], columns: Mapping[str, Any]) -> str:
    """One line for the first part of battles as columns that breaks the contract."""
    column, index = (*error["loc"], "", "")[:2]
    if error["type"] == "list_type":
        return f"column {column} must be a list of names"
    if error["type"] == "too_short":
        return f"column {column} is empty; send at least one battle"
    if error["type"] == "too_long":
        return f"column {column} holds more than {MAX_BATTLES:,} battles; send fewer"
    if error["type"] == "string_type":
        return f"column {column}: names must be strings; battle {index + 1} is not"
    if error["type"].startswith("string_too"):
        return f"column {column}, battle {index + 1}: names are 1 to {MAX_NAME_CHARS} characters"
    return f"battles as columns: {error['msg']}"


def _raw_reason(error: Mapping[str, Any], records: Sequence[Any]) -> str:
    """One line for the first field of raw rows that breaks the contract."""
    index, column = (*error["loc"], "")[:2]
    if error["type"] == "missing":
        lacking = [column for column in RAW_COLUMNS if column not in records[index]]
        return f"rows lack the columns {', '.join(lacking)}"
    shown = _shown(error["input"])
    if column.endswith(tuple(f"_{stat}" for stat in STATS)):
        return (
            f"{column} must be a positive number in every row (a whole base stat from 1 to "
            f"{MAX_STAT:,}); row {index + 1} has {shown}"
        )
    if "_type" in column:
        return f"{column}: unknown type {shown}"
    if column:
        limit = f"at most {MAX_NAME_CHARS} characters"
        return f"{column} must be a name of {limit}; row {index + 1} has {shown}"
    return f"every battle must be an object ({error['msg']})"


def _shown(value: Any) -> str:
    """A value as a short quote (a number of thousands of digits has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number of thousands of digits"
    return text if len(text) <= 40 else f"{text[:37]}..."


class ModelInfo(ServedModel):
    """Which model answers: the contract's ServedModel (what ``/v1/version`` answers: its URI,
    and for a registered one its name, version, alias, run and commit), and what the service
    derives from it."""

    model_config = ConfigDict(frozen=True)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version else self.uri

    @property
    def load_uri(self) -> str:
        """What to load: the version itself, so an alias moving meanwhile cannot mix them."""
        return f"models:/{self.name}/{self.version}" if self.version else self.uri


def resolve_model(model_uri: str, client: MlflowClient | None) -> ModelInfo:
    """Resolve a registry URI (``models:/name@alias``, ``models:/name/3``) to its version;
    other URIs (a folder, ``runs:/``) are served as they are."""
    from mlflow.exceptions import MlflowException

    match = _REGISTRY_URI.match(model_uri)
    if not match or client is None:
        return ModelInfo(uri=model_uri)
    name, alias = match["name"], match["alias"] or ""
    try:
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, match["version"])
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise PredictError(
                f"no model behind {model_uri}: promote one first (python -m ci promote), or "
                "pass --model-uri (e.g. outputs/model)"
            ) from None
        raise
    tags = version.tags or {}
    return ModelInfo(
        uri=model_uri,
        name=name,
        version=str(version.version),
        alias=alias,
        run_id=version.run_id or "",
        git_sha=tags.get(TAG_GIT_SHA, ""),
    )


@dataclass(frozen=True)
class Predictor:
    """A loaded model and what it is; asked about many battles at once. ``matchups``, once the
    service has built it (serving.matchups), holds the answer to every battle by name."""

    info: ModelInfo
    pipeline: Any
    matchups: np.ndarray | None = None

    def p_a_wins(self, rows: pd.DataFrame) -> np.ndarray:
        """P(side a wins) for each raw battle row (scikit-learn directly: no per-call schema
        enforcement, the rows were built or checked with exactly the model's columns)."""
        return self.pipeline.predict_proba(rows)[:, 1]

    def answered(self, battles: Battles) -> np.ndarray:
        """P(side a wins) of each battle as the API answers it (``rounded``): from the matchup
        table for battles by name once there is one, else from the model."""
        if self.matchups is not None and isinstance(battles, NamedBattles):
            row = self.matchups.shape[1]  # one flat take: a 2-D fancy index costs 2.5x as much
            return self.matchups.ravel().take(battles.a * row + battles.b)
        return self.rounded(battles.frame())

    def rounded(self, rows: pd.DataFrame) -> np.ndarray:
        """P(side a wins) for raw rows as the API answers it: float64 (float32's repr is not the
        rounded value), 6 digits. What the inference log keeps, too."""
        import numpy as np

        return self.p_a_wins(rows).astype(np.float64).round(6)

    def response(
        self,
        battles: Battles,
        p: np.ndarray,
        battle_ids: Sequence[str] | None = None,
        columns: bool = False,
    ) -> bytes:
        """The prediction API's response for battles answered ``p``: contract.PredictResponse,
        or PredictColumnsResponse for battles asked as ``columns`` (always by name)."""
        version = self.info.version or None
        if columns:
            assert isinstance(battles, NamedBattles), "battles as columns are by name"
            return columns_json(version, battles, p, battle_ids)
        a, b = battles.names()
        q = p_b_wins(p).tolist()
        return response_json(version, a, b, p.tolist(), q, battle_ids)

    def answer_json(self, battles: Battles) -> bytes:
        """The prediction API's response for these battles."""
        return self.response(battles, self.answered(battles))


def p_b_wins(answered: np.ndarray) -> np.ndarray:
    """P(side b wins) as answered, from the answered (rounded) P(side a wins): the two add up to
    1 to the sixth digit, in the API and in batch files alike."""
    return (1 - answered).round(6)


def columns_json(
    model_version: str | None,
    battles: NamedBattles,
    p: np.ndarray,
    battle_ids: Sequence[str] | None = None,
) -> bytes:
    """contract.PredictColumnsResponse for battles by name answered ``p``, written as bytes:
    the Pokédex's names already quoted, the probabilities as six-decimal numbers straight
    from numpy ("0.034000" is the same number as the rows' 0.034), joined once. 10,000 battles
    in about 0.6 ms (benchmarks/serving.py: ``write``), against about 2.5 ms through the
    response model's serializer; tests hold it to the model's schema and to the rows' answers."""
    import numpy as np
    from pydantic_core import to_json

    if not (np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1):
        raise ValueError("the model answered probabilities outside [0, 1]")
    quoted = pokedex().quoted
    micro = np.rint(p * 1_000_000).astype(np.int64)  # what rounded() rounded to
    parts = [
        b'{"model_version":' + to_json(model_version) + b',"predictions":{"a":[',
        b",".join(quoted.take(battles.a).tolist()),  # a list joins faster than an array
        b'],"b":[',
        b",".join(quoted.take(battles.b).tolist()),
        b'],"p_a_wins":[',
        _decimals(micro),
        b'],"p_b_wins":[',
        _decimals(1_000_000 - micro),  # p_b_wins(), exactly
        b"]",
    ]
    if battle_ids is not None:
        parts += [b',"battle_id":', to_json(list(battle_ids))]
    return b"".join([*parts, b"}}"])


def _decimals(micro: np.ndarray) -> memoryview:
    """Millionths from 0 to 1,000,000 as comma-separated decimals: 34000 → 0.034000. Each
    is two table rows, its thousands ("0.034") and its units with the comma ("000,"), copied
    as whole 5- and 4-byte items: 10,000 in 0.08 ms, where digit-by-digit arithmetic took 0.2.
    """
    import numpy as np

    thousands, units = np.divmod(micro, 1000)
    leading, trailing = _decimal_parts()
    text = np.empty(len(micro), [("leading", "V5"), ("trailing", "V4")])
    text["leading"] = leading.take(thousands)
    text["trailing"] = trailing.take(units)
    return memoryview(text).cast("B")[:-1]


@cache
def _decimal_parts() -> tuple[np.ndarray, np.ndarray]:
    """The tables of ``_decimals``: "0.000" … "1.000" by thousands, "000," … "999," by units."""
    import numpy as np

    leading = b"".join(b"%d.%03d" % divmod(n, 1000) for n in range(1001))
    trailing = b"".join(b"%03d," % n for n in range(1000))
    return np.frombuffer(leading, "V5"), np.frombuffer(trailing, "V4")


def load_predictor(info: ModelInfo) -> Predictor:
    """Load the model ``info`` describes (the sklearn flavour of what train logged)."""
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    try:
        pipeline = mlflow.sklearn.load_model(info.load_uri)
    except (MlflowException, OSError) as error:
        raise PredictError(f"cannot load the model {info.load_uri}: {first_line(error)}") from None
    return Predictor(info, pipeline)

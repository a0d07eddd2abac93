"""Who wins: a logged model asked about battles given by Pokémon name or by raw battle rows.

The model takes raw battle rows (both sides' names, types and base stats: datasets.RAW_COLUMNS)
and returns class probabilities, column 1 being "a wins". Names are looked up in the shipped
Pokédex the way Showdown ids work (case, spaces and punctuation ignored: "Mr. Mime" = "mrmime",
"charizard-mega-x" = "Charizard-Mega-X"); an unknown name gets the closest ones as suggestions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from machine_learning.data import STATS, load_pokedex, load_type_chart
from machine_learning.datasets import RAW_COLUMNS, SIDE_COLUMNS
from machine_learning.failures import first_line
from machine_learning.provenance import CHAMPION, REGISTERED_MODEL, TAG_GIT_SHA

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

DEFAULT_MODEL_URI = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class PredictError(ValueError):
    """Input the model cannot be asked about (unknown Pokémon, malformed rows), or no model."""


class Pokedex:
    """Name → raw columns of one side, for every species and forme."""

    def __init__(self) -> None:
        table = load_pokedex()
        self.names: list[str] = table["name"].tolist()
        self._index = {key(name): row for row, name in enumerate(self.names)}
        self._index |= {ident: row for row, ident in enumerate(table["id"])}
        self._columns = {column: table[column].to_numpy() for column in SIDE_COLUMNS}

    def find(self, name: str) -> int:
        """The row of ``name``; PredictError with the closest names when there is none."""
        row = self._index.get(key(name))
        if row is None:
            close = difflib.get_close_matches(key(name), self._index, n=3, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(self.names[self._index[c]] for c in close)}?"
                if close
                else "see the names in machine_learning/data/pokedex.csv"
            )
            raise PredictError(f"unknown Pokémon {name[:60]!r}: {hint}")
        return row

    def battles(self, pairs: Iterable[tuple[str, str]]) -> pd.DataFrame:
        """Raw battle rows for (a, b) name pairs, with the Pokédex's spelling of each name."""
        import pandas as pd

        rows = [(self.find(a), self.find(b)) for a, b in pairs]
        a_rows, b_rows = ([row[i] for row in rows] for i in (0, 1))
        return pd.DataFrame(
            {
                f"{side}_{column}": self._columns[column][index]
                for side, index in (("a", a_rows), ("b", b_rows))
                for column in SIDE_COLUMNS
            }
        )


def key(name: str) -> str:
    """Showdown's id of a name: lower case letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def pokedex() -> Pokedex:
    return Pokedex()


def raw_rows(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Full raw battle rows as given (a batch file's or a request's), checked column by column:
    a wrong type or stat is named here, not deep inside the model."""
    import pandas as pd

    table = pd.DataFrame.from_records(records)
    missing = [column for column in RAW_COLUMNS if column not in table.columns]
    if missing:
        raise PredictError(f"rows lack the columns {', '.join(missing)}")
    table = table[list(RAW_COLUMNS)].copy()
    types = set(load_type_chart()[0])
    for side in "ab":
        for stat in STATS:
            column = f"{side}_{stat}"
            values = pd.to_numeric(table[column], errors="coerce")
            if values.isna().any() or (values <= 0).any():
                raise PredictError(f"{column} must be a positive number in every row")
            table[column] = values.astype("int64")
        for slot, allowed in ((f"{side}_type1", types), (f"{side}_type2", types | {""})):
            table[slot] = table[slot].fillna("").astype(str)
            unknown = sorted(set(table[slot]) - allowed)
            if unknown:
                raise PredictError(f"{slot}: unknown type {unknown[0][:30]!r}")
        table[f"{side}_name"] = table[f"{side}_name"].fillna("").astype(str)
    return table


@dataclass(frozen=True)
class ModelInfo:
    """Which model answers: its URI, and for a registered one its name, version, run and commit."""

    uri: str
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    git_sha: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version else self.uri

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def load_uri(self) -> str:
        """What to load: the version itself, so an alias moving meanwhile cannot mix them."""
        return f"models:/{self.name}/{self.version}" if self.version else self.uri


def describe(model_uri: str, client: MlflowClient | None) -> ModelInfo:
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
    """A loaded model and what it is; asked about many battles at once."""

    info: ModelInfo
    pipeline: Any

    def p_a_wins(self, rows: pd.DataFrame) -> np.ndarray:
        """P(side a wins) for each raw battle row (scikit-learn directly: no per-call schema
        enforcement, the rows were built or checked with exactly the model's columns)."""
        return self.pipeline.predict_proba(rows)[:, 1]

    def answer(self, rows: pd.DataFrame) -> dict[str, Any]:
        """The service's JSON shape for these battles."""
        p = self.p_a_wins(rows)
        predictions = [
            {"a": a, "b": b, "p_a_wins": round(float(pa), 6), "p_b_wins": round(1 - float(pa), 6)}
            for a, b, pa in zip(rows["a_name"], rows["b_name"], p, strict=True)
        ]
        return {"model_version": self.info.version or None, "predictions": predictions}


def load_predictor(info: ModelInfo) -> Predictor:
    """Load the model ``info`` describes (the sklearn flavour of what train logged)."""
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    try:
        pipeline = mlflow.sklearn.load_model(info.load_uri)
    except (MlflowException, OSError) as error:
        raise PredictError(f"cannot load the model {info.load_uri}: {first_line(error)}") from None
    return Predictor(info, pipeline)


def pairs_of(records: list[Mapping[str, Any]]) -> list[tuple[str, str]] | None:
    """(a, b) name pairs when the battles are given by name (a record has ``a`` or ``b``);
    None for raw rows. A battle by name with a field missing or extra is told so, rather than
    that it lacks the 18 columns of a raw row."""
    if not any("a" in r or "b" in r for r in records):
        return None
    for record in records:
        if set(record) != {"a", "b"}:
            fields = ", ".join(sorted(map(str, record))) or "none"
            raise PredictError(f"a battle by name has exactly the fields a and b; one has {fields}")
        if not (isinstance(record["a"], str) and isinstance(record["b"], str)):
            raise PredictError("names must be strings")
    return [(r["a"], r["b"]) for r in records]


def battle_rows(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Battles given by name pairs or by full raw rows, as the model's input."""
    pairs = pairs_of(records)
    return pokedex().battles(pairs) if pairs is not None else raw_rows(records)

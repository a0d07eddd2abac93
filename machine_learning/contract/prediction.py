"""The prediction API (``/v1``): the request ``serve`` accepts, the response it answers, which
``ci verify`` and ``predict --json`` read and print through these same models.

Battles are TypedDicts inside the models: pydantic checks each field exactly as it would on a
model, without building one object per battle. Battles by name come as rows (one object each)
or as columns (``{"a": [...], "b": [...]}``, the form ``DataFrame.to_dict("list")`` gives);
the answer comes in the form asked. Columns are the cheap form for large requests: 10,000
battles are two lists of strings to read and four lists to write, not 10,000 objects each way.

Measured on 10,000 battles by name (README, Benchmarks): parsing and validating a body of row
objects takes 4.6 ms as TypedDicts, 7.3 ms as models; writing 10,000 predictions through the
response model 3 ms, against 11 ms validating them as models and 12 ms with ``json.dumps``.

Bounds are part of the contract: a base stat is a whole number from 1 to ``MAX_STAT`` (so the
features' 64-bit arithmetic cannot wrap), a name at most ``MAX_NAME_CHARS`` characters (so the
closest-name search stays cheap), at most ``MAX_BATTLES`` battles a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, NotRequired, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

API_VERSION = "v1"
API_PREFIX = f"/{API_VERSION}"
MAX_BATTLES = 10_000
MAX_NAME_CHARS = 100
MAX_STAT = 1_000  # the games' base stats stop at 255
# A request whose X-Request-Id starts with this is answered but kept out of the inference log:
# canary battles (ci verify's) would otherwise pass for traffic in the monitor's windows.
SYNTHETIC_REQUEST_PREFIX = "synthetic-"
# Outcomes become training labels: a predictor started with this variable set takes
# POST /v1/outcomes only with ``Authorization: Bearer <its value>`` (traffic sends it from the
# same variable).
OUTCOMES_TOKEN_VARIABLE = "OUTCOMES_TOKEN"
STATS = ("hp", "atk", "def", "spa", "spd", "spe")
TYPES = (
    "Bug", "Dark", "Dragon", "Electric", "Fairy", "Fighting", "Fire", "Flying", "Ghost",
    "Grass", "Ground", "Ice", "Normal", "Poison", "Psychic", "Rock", "Steel", "Water",
)  # fmt: skip

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Stat = Annotated[int, Field(ge=1, le=MAX_STAT)]
PokemonType = Literal[TYPES]  # type: ignore[valid-type]
SecondType = Literal[(*TYPES, "")] | None  # type: ignore[valid-type]  # "" or null: none
Probability = Annotated[float, Field(ge=0, le=1, strict=True, allow_inf_nan=False)]

SIDE_FIELDS: dict[str, object] = {
    "name": str,  # a raw row's name is the caller's label, not looked up
    "type1": PokemonType,
    "type2": SecondType,
    **dict.fromkeys(STATS, Stat),
}
RAW_FIELDS = tuple(f"{side}_{field}" for side in "ab" for field in SIDE_FIELDS)


class BattleByName(TypedDict):
    """Two Pokémon by name, looked up in the Pokédex (case, spaces and punctuation ignored)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    a: Name
    b: Name


RawBattle = TypedDict(  # type: ignore[misc]
    "RawBattle",
    {
        f"{side}_{field}": Annotated[kind, Field(max_length=MAX_NAME_CHARS)]
        if field == "name"
        else kind
        for side in "ab"
        for field, kind in SIDE_FIELDS.items()
    },
)
RawBattle.__doc__ = "A full raw battle row: both sides' name, types and base stats."


Names = Annotated[list[Name], Field(min_length=1, max_length=MAX_BATTLES, fail_fast=True)]
Battle = TypeVar("Battle")
Rows = Annotated[list[Battle], Field(min_length=1, max_length=MAX_BATTLES)]


class BattleColumns(TypedDict):
    """Battles by name as two columns of the same length (the service refuses columns of
    different lengths): battle i is a[i] against b[i]."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    a: Names
    b: Names


class PredictRequest(BaseModel):
    """``POST /v1/predict``: battles by name (rows or columns), or full raw rows."""

    battles: Rows[BattleByName] | Rows[RawBattle] | BattleColumns


class Prediction(TypedDict):
    """One battle's answer: the names as the model saw them and both sides' win probability;
    ``battle_id`` when the predictor keeps an inference log (post the outcome with it)."""

    a: str
    b: str
    p_a_wins: Probability
    p_b_wins: Probability
    battle_id: NotRequired[str]


class PredictResponse(BaseModel):
    """The answer to ``POST /v1/predict``, in the order asked; ``model_version`` is null for a
    model that is not a registered version (a folder, ``runs:/``)."""

    model_version: str | None
    predictions: list[Prediction]


Probabilities = list[Probability]


class PredictionColumns(TypedDict):
    """The answers to battles asked as columns, as columns in the same order: the fields of
    Prediction, each a list."""

    a: list[str]
    b: list[str]
    p_a_wins: Probabilities
    p_b_wins: Probabilities
    battle_id: NotRequired[list[str]]


class PredictColumnsResponse(BaseModel):
    """The answer to ``POST /v1/predict`` with battles as columns."""

    model_version: str | None
    predictions: PredictionColumns


class ServedModel(BaseModel):
    """``GET /v1/version``: which model answers."""

    uri: str
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    git_sha: str = ""


class Health(BaseModel):
    """``GET /health``: ``degraded`` while a newer version fails to load (the old one serves).
    ``status`` is about the model only; the inference log has fields of its own, since a log
    that fails drops rows but never an answer."""

    status: Literal["ok", "degraded", "unavailable"]
    model_version: str | None
    error: str | None
    # The version that failed to load, when one did: a client waiting for it (``ci verify``)
    # stops waiting, since loading the same artifacts again fails the same way.
    failed_version: str | None = None
    # null without an inference log; "failing" while its rows cannot be written (they are
    # dropped and counted in /metrics), with the database's one-line reason.
    inference_log: Literal["ok", "failing"] | None = None
    inference_log_error: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one line saying what to fix."""

    error: str


# The request's two forms, checked up to the first bad battle (a hostile body of 10,000 bad rows
# costs one error, not 180,000).
NAMED_BATTLES = TypeAdapter(Annotated[list[BattleByName], Field(fail_fast=True)])
RAW_BATTLES = TypeAdapter(Annotated[list[RawBattle], Field(fail_fast=True)])
BATTLE_COLUMNS = TypeAdapter(BattleColumns)


def response_json(
    model_version: str | None,
    a: Sequence[str],
    b: Sequence[str],
    p_a_wins: Sequence[float],
    p_b_wins: Sequence[float],
    battle_ids: Sequence[str] | None = None,
) -> bytes:
    """The response body, written by the response model's serializer from plain lists: the
    values come from the model, so they are not validated again (10,000 battles: 3 ms)."""
    predictions: list[dict] = [
        {"a": x, "b": y, "p_a_wins": p, "p_b_wins": q}
        for x, y, p, q in zip(a, b, p_a_wins, p_b_wins, strict=True)
    ]
    if battle_ids is not None:
        for prediction, battle_id in zip(predictions, battle_ids, strict=True):
            prediction["battle_id"] = battle_id
    answer = PredictResponse.model_construct(model_version=model_version, predictions=predictions)
    return PredictResponse.__pydantic_serializer__.to_json(answer)

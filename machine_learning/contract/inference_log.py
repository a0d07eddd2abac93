"""The inference log: what the predictor answered, and who really won, as two SQL tables.

The predictor (``serve --inference-log URL``) writes one ``battles`` row per answered battle;
``POST /v1/outcomes`` writes ``outcomes`` rows, joined to their battle by ``battle_id``; the
monitor (``ci monitor``) and retraining (``train --with-inference-log``) read both. The URL is a
SQLAlchemy URL: PostgreSQL in the stack (its own database), a SQLite file on a laptop.

Times are UTC. ``battle_id`` is ``<request id>-<index>``, the request id being 32 hex digits
drawn per request, so several predictor processes can write to one log without coordinating.
The 18 raw columns are the battle as the model saw it (``datasets.RAW_COLUMNS``: names in the
Pokédex's spelling, types, base stats). Retention deletes old battles with their outcomes.

Imports SQLAlchemy (MLflow's own dependency): only what reads or writes the log imports this.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.engine import URL, make_url

from machine_learning.contract.prediction import MAX_BATTLES, MAX_NAME_CHARS, SIDE_FIELDS

BATTLE_ID_CHARS = 40  # 32 hex digits, a dash, the battle's index in its request (< 10,000)
REQUEST_ID_CHARS = 200  # X-Request-Id is the caller's: kept, cut at this length
DEFAULT_RETENTION_DAYS = 30
ENVIRONMENT_VARIABLE = "INFERENCE_LOG_URL"
CONNECT_TIMEOUT_S = 10  # a reader's connection

metadata = MetaData()


def _raw_column(name: str, kind: object) -> Column:
    if kind is str or name.endswith(("_type1", "_type2")):
        return Column(name, String(MAX_NAME_CHARS), nullable=name.endswith("_type2"))
    return Column(name, Integer, nullable=False)


battles = Table(
    "battles",
    metadata,
    Column("battle_id", String(BATTLE_ID_CHARS), primary_key=True),
    Column("logged_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(REQUEST_ID_CHARS), nullable=True),
    Column("model_version", String(40), nullable=False),  # "" for an unregistered model
    *(_raw_column(f"{side}_{field}", kind) for side in "ab" for field, kind in SIDE_FIELDS.items()),
    Column("p_a_wins", Float, nullable=False),
    Index("battles_by_time", "logged_at"),
    Index("battles_by_version_time", "model_version", "logged_at"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("battle_id", String(BATTLE_ID_CHARS), primary_key=True),
    Column("a_wins", Boolean, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

BattleId = Annotated[str, Field(min_length=1, max_length=BATTLE_ID_CHARS)]


class Outcome(BaseModel):
    """One battle really fought: its id (from the prediction's answer) and who won."""

    battle_id: BattleId
    winner: Literal["a", "b"]


class OutcomesRequest(BaseModel):
    """``POST /v1/outcomes``: the battles that were fought, at most MAX_BATTLES a request."""

    outcomes: list[Outcome] = Field(min_length=1, max_length=MAX_BATTLES)


class OutcomesResponse(BaseModel):
    """What became of each outcome. Posting the same outcome again changes nothing (it counts
    as ``already_recorded``); an id the log does not hold is reported back, not stored; a winner
    contradicting the one recorded keeps the first and is reported under ``conflicting``."""

    recorded: int
    already_recorded: int
    unknown: list[str]
    conflicting: list[str]


def connect_args(
    url: URL, statement_timeout_s: float, read_only: bool, connect_s: float = CONNECT_TIMEOUT_S
) -> dict[str, object]:
    """How a process connects to the log: within ``connect_s``, and on PostgreSQL (psycopg)
    with each statement bounded — read-only for its readers (the monitor, retraining) — so a
    busy, locked or hung log fails in one line instead of holding a job or the predictor's
    writer. The bounds are added to the libpq ``options`` the URL may give (a search_path, …),
    which SQLAlchemy would otherwise replace by these."""
    if url.get_backend_name() == "sqlite":
        return {"timeout": connect_s}
    if url.get_backend_name() != "postgresql" or not url.get_driver_name().startswith("psycopg"):
        return {}
    given = url.query.get("options", "")
    bounds = [*([given] if isinstance(given, str) else given)]
    bounds.append(f"-c statement_timeout={round(statement_timeout_s * 1000)}")
    if read_only:
        bounds.append("-c default_transaction_read_only=on")
    return {"connect_timeout": connect_s, "options": " ".join(filter(None, bounds))}


# Query parameters that carry credentials (libpq reads ``?password=`` and ``?sslpassword=``
# as well as the URL's own password): hidden wherever the URL or a driver's message is shown.
SECRET_QUERY_WORDS = ("password", "secret", "token")
HIDDEN = "***"


def redacted(url: str) -> str:
    """The log's URL as it may be shown: its password, and every query parameter named like a
    credential, replaced by ``***``."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: show nothing of it
        return "<an inference log URL SQLAlchemy cannot read>"
    hidden = {key: HIDDEN for key in parsed.query if _secret(key)}
    shown = parsed.update_query_dict(hidden) if hidden else parsed
    return shown.render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN)


def scrubbed(text: str, url: str) -> str:
    """``text`` (a driver's message) with the URL's credentials cut out, should it repeat
    them: its password and the values of its credential-like query parameters."""
    try:
        parsed = make_url(url)
    except Exception:  # an unreadable URL: hide it whole
        return text.replace(url, "<the URL>")
    secrets = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if _secret(key):
            secrets += [value] if isinstance(value, str) else list(value)
    for secret in filter(None, map(str, secrets)):
        text = text.replace(secret, HIDDEN)
    return text


def _secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_QUERY_WORDS)

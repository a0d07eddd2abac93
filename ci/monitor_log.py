"""The inference log as the monitor reads it: one window, one version at a time, bounded.

Per window, one grouped count says which versions answered and how often; then, per version,
one query reads only the columns the profile needs (the raw stats and types, ``p_a_wins``, and
the outcome by a left join of ``outcomes``), filtered by version and time in SQL and cut at
``MAX_WINDOW_ROWS``. A window busier than that is measured on a random sample of its battles
(``ORDER BY random()``, which PostgreSQL and SQLite both have): a sample of whole requests would
let one client's large batch decide the drift. Memory stays that of one version's sample,
whatever the log holds.

Only what the log's database says is trusted as data, never as markup: versions and names are
strings of anyone's choosing, escaped by whoever shows them.

Failures: a URL that cannot name a database, a SQLite file that does not exist or a database
without the log's tables is bad input (exit 2); a database that does not answer or fails is
InferenceLogFailed (exit 3), its line naming the log with the password hidden.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from machine_learning.contract.failures import BadInput, Unreachable, first_line
from machine_learning.contract.inference_log import (
    battles,
    connect_args,
    outcomes,
    redacted,
    scrubbed,
)
from machine_learning.monitoring.names import PREDICTION, STAT_COLUMNS, TYPE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import URL, Engine

# What drift.EPSILON was sized for (a PSI bin emptied by chance must not outweigh one battle).
MAX_WINDOW_ROWS = 10_000
STATEMENT_TIMEOUT_S = 45  # with the connection's 10 s: a failing log is reported within 60 s
BACKENDS = ("postgresql", "sqlite")
MEASURED_COLUMNS = (*STAT_COLUMNS, *TYPE_COLUMNS, PREDICTION)


class InferenceLogFailed(Unreachable):
    """The inference log's database does not answer, or fails (exit 3)."""


@dataclass(frozen=True)
class VersionRows:
    """One version's battles in one window: the raw columns the profile needs, what it
    predicted, and who won (1/0, NaN while the outcome has not come back)."""

    battles: pd.DataFrame
    p_a_wins: np.ndarray
    a_wins: np.ndarray


def parse_url(text: str) -> URL:
    """A log URL SQLAlchemy reads, on a backend the log is kept on (PostgreSQL or SQLite).

    The message never repeats the URL: it may hold a password.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise BadInput(
            "the inference log URL is not a database URL (postgresql://user@host/db or "
            "sqlite:///path/to/log.db)"
        ) from None
    if url.get_backend_name() not in BACKENDS:
        raise BadInput(
            f"the inference log is kept in PostgreSQL or SQLite, not {url.get_backend_name()!r}"
        )
    return url


class LogReader:
    """A read-only view of the log: which versions answered in a window, and their rows."""

    def __init__(self, url_text: str) -> None:
        self.url = parse_url(url_text)
        self.shown = redacted(url_text)
        self._url_text = url_text  # for scrubbing the driver's messages only
        self._engine = _engine(self.url)

    def __enter__(self) -> LogReader:
        with self._failures("reading"):
            from sqlalchemy import inspect

            missing = [
                t.name for t in (battles, outcomes) if not inspect(self._engine).has_table(t.name)
            ]
        if missing:
            raise BadInput(
                f"{self.shown} is not an inference log: it has no {' or '.join(missing)} table "
                "(the predictor creates them when it starts with --inference-log)"
            )
        return self

    def __exit__(self, *_: object) -> None:
        self._engine.dispose()

    def versions(self, start: datetime, end: datetime) -> dict[str, int]:
        """Battles logged in ``[start, end)`` per version that answered them."""
        from sqlalchemy import func, select

        query = (
            select(battles.c.model_version, func.count())
            .where(*_in_window(start, end))
            .group_by(battles.c.model_version)
        )
        with self._failures("counting the battles of a window"), self._engine.connect() as db:
            return {str(version): int(count) for version, count in db.execute(query)}

    def rows(
        self, version: str, start: datetime, end: datetime, limit: int = MAX_WINDOW_ROWS
    ) -> VersionRows:
        """A version's battles in ``[start, end)`` with their outcomes, at most ``limit``."""
        import pandas as pd
        from sqlalchemy import func, select

        query = (
            select(*(battles.c[name] for name in MEASURED_COLUMNS), outcomes.c.a_wins)
            .select_from(battles.outerjoin(outcomes, battles.c.battle_id == outcomes.c.battle_id))
            .where(battles.c.model_version == version, *_in_window(start, end))
            .order_by(func.random())
            .limit(limit)
        )
        with self._failures("reading a window's battles"), self._engine.connect() as db:
            table = pd.DataFrame(db.execute(query).all(), columns=[*MEASURED_COLUMNS, "a_wins"])
        p_a_wins = pd.to_numeric(table.pop(PREDICTION), errors="coerce").to_numpy(dtype=float)
        a_wins = table.pop("a_wins").astype(float).to_numpy()
        return VersionRows(table, p_a_wins, a_wins)

    def version_changes(
        self, start: datetime, end: datetime, limit: int
    ) -> list[tuple[datetime, str, str]]:
        """(when, version, previous) each time the answering version changed in ``[start,
        end)``, oldest first, at most ``limit``: the database finds the change points (LAG over
        time), so only those cross the wire."""
        from sqlalchemy import func, select

        previous = func.lag(battles.c.model_version).over(order_by=battles.c.logged_at)
        ordered = (
            select(battles.c.logged_at, battles.c.model_version, previous.label("previous"))
            .where(*_in_window(start, end))
            .subquery()
        )
        query = (
            select(ordered.c.logged_at, ordered.c.model_version, ordered.c.previous)
            .where(ordered.c.previous.is_not(None), ordered.c.previous != ordered.c.model_version)
            .order_by(ordered.c.logged_at)
            .limit(limit)
        )
        with self._failures("reading when versions changed"), self._engine.connect() as db:
            return [(_utc(at), str(new), str(old)) for at, new, old in db.execute(query)]

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """The database's errors as InferenceLogFailed (exit 3), the password never shown."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except SQLAlchemyError as error:
            reason = scrubbed(first_line(getattr(error, "orig", None) or error), self._url_text)
            raise InferenceLogFailed(
                f"the inference log {self.shown} failed while {doing}: {reason}"
            ) from None


def _utc(moment: datetime | str) -> datetime:
    """SQLite hands a time back naive (or as text); it was written in UTC."""
    from datetime import UTC

    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _in_window(start: datetime, end: datetime) -> tuple:
    return battles.c.logged_at >= start, battles.c.logged_at < end


def _engine(url: URL) -> Engine:
    """An engine that fails fast: connection and statements bounded in time; for SQLite, a file
    that must exist already (SQLAlchemy would create an empty one)."""
    from sqlalchemy import create_engine

    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            raise BadInput(f"no inference log at {path or 'an in-memory database'}: no such file")
    return create_engine(url, connect_args=connect_args(url, STATEMENT_TIMEOUT_S, read_only=True))

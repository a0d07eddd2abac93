"""The predictor's inference log (``serve --inference-log URL``): every answered battle becomes a
``battles`` row, written off the request path; ``POST /v1/outcomes`` records who really won.

A request puts one item on a queue bounded in battles (``QUEUE_BATTLES``), whatever its size; a
writer thread takes everything queued every ``FLUSH_INTERVAL_S`` and inserts it with one
executemany. Neither a full queue nor a database that is down slows or fails an answer: the
battles are dropped and counted (``/metrics``), ``/health`` says the log is failing and why, and
the writer tries the database again after a backoff (doubling to ``BACKOFF_MAX_S``). It creates
the tables when it first reaches the database, and enforces the retention then and every
``RETENTION_CHECK_S``. Outcomes are written synchronously, after the queue is flushed: an outcome
posted right after its answer finds its battle.

The tables and the request/response models are the contract's
(``machine_learning.contract.inference_log``); the URL is only ever shown ``redacted``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import create_engine, delete, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from machine_learning.contract.failures import BadInput, Unreachable, first_line
from machine_learning.contract.inference_log import (
    ENVIRONMENT_VARIABLE,
    REQUEST_ID_CHARS,
    Outcome,
    OutcomesResponse,
    battles,
    connect_args,
    metadata,
    outcomes,
    redacted,
    scrubbed,
)
from machine_learning.datasets import RAW_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from machine_learning.serving.predict import Battles

# Each statement on PostgreSQL is bounded: a table locked by someone else (a migration, a
# VACUUM FULL) fails the writer's batch, which is dropped and counted like any database failure,
# and an outcomes post answers 503, instead of both waiting for as long as the lock is held.
STATEMENT_TIMEOUT_S = 30.0
QUEUE_BATTLES = 100_000  # about 20 MB of queued rows; beyond it, answered battles are dropped
FLUSH_INTERVAL_S = 0.5  # one insert per half second, however many requests came in between
FLUSH_WAIT_S = 10.0  # an outcome waits at most this long for the battles queued before it
BACKOFF_S, BACKOFF_MAX_S = 0.5, 10.0
RETENTION_CHECK_S = 3_600.0
CONNECT_TIMEOUT_S = 5  # a database that does not answer fails a write in 5 s, not the OS's 2 min
IDS_PER_QUERY = 500  # ids in one IN (...): within every database's limit on parameters
EXAMPLES = "e.g. postgresql://user@host:5432/inference_log or sqlite:///inference-log.db"
NO_LOG = (
    "this predictor keeps no inference log: start serve with --inference-log URL "
    f"(or {ENVIRONMENT_VARIABLE}) to record outcomes"
)
DropReason = Literal["queue_full", "database"]


class InferenceLogURLError(BadInput):
    """A log URL SQLAlchemy cannot read, or whose driver is unknown or not installed."""


class InferenceLogDown(Unreachable):
    """The log's database does not answer (an outcome cannot be recorded now)."""


@dataclass(frozen=True)
class Answered:
    """One request's battles as they were answered: what the writer turns into rows. Kept as the
    request had them (Pokédex rows or raw rows, its probabilities), so queuing costs the request
    nothing per battle."""

    logged_at: datetime
    key: str  # 32 hex digits, drawn per request: the prefix of its battle ids
    request_id: str | None
    model_version: str
    battles: Battles
    p_a_wins: np.ndarray

    def __len__(self) -> int:
        return len(self.p_a_wins)


def log_rows(items: Sequence[Answered]) -> list[dict]:
    """The ``battles`` rows of queued requests, in plain Python values (drivers take no numpy
    scalars). One data frame for them all: a column read per request would cost the writer
    ~0.4 ms of the interpreter's time per one-battle request, taken from the answers."""
    import numpy as np

    if not items:
        return []
    frame = raw_frame([item.battles for item in items])
    raw = [frame[column].tolist() for column in RAW_COLUMNS]
    p_a_wins = np.concatenate([item.p_a_wins for item in items]).tolist()
    who = [
        (battle_id(item.key, index), item.logged_at, item.request_id, item.model_version)
        for item in items
        for index in range(len(item))
    ]
    return [
        dict(zip(ROW_KEYS, (*answered, *values, p), strict=True))
        for answered, p, *values in zip(who, p_a_wins, *raw, strict=True)
    ]


def raw_frame(asked: Sequence[Battles]) -> pd.DataFrame:
    """The raw columns of many requests' battles: requests by name (the usual ones) become one
    frame from their Pokédex rows at once, rather than a frame each."""
    import numpy as np
    import pandas as pd

    from machine_learning.serving.predict import NamedBattles, pokedex

    if all(isinstance(battles, NamedBattles) for battles in asked):
        a, b = (np.concatenate([getattr(battles, side) for battles in asked]) for side in "ab")
        return pokedex().frame(a, b)
    return pd.concat([battles.frame() for battles in asked], ignore_index=True)


ROW_KEYS = ("battle_id", "logged_at", "request_id", "model_version", *RAW_COLUMNS, "p_a_wins")


def battle_id(key: str, index: int) -> str:
    """The contract's battle id: the request's 32 hex digits, a dash, the battle's index."""
    return f"{key}-{index}"


class BattleQueue:
    """Answered requests waiting for the writer, bounded in battles (one item per request)."""

    def __init__(self, max_battles: int) -> None:
        self.max_battles = max_battles
        self._items: deque[Answered] = deque()
        self._lock = threading.Lock()
        self.battles = 0  # queued now
        self.dropped = 0  # refused because the queue was full
        self.accepted = 0  # items accepted so far: the sequence a flush waits on

    def offer(self, item: Answered) -> bool:
        """Queue ``item``, or count its battles as dropped when they would not fit."""
        with self._lock:
            if self.battles + len(item) > self.max_battles:
                self.dropped += len(item)
                return False
            self._items.append(item)
            self.battles += len(item)
            self.accepted += 1
            return True

    def take_all(self) -> list[Answered]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self.battles = 0
            return items


def open_engine(url: str, statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> Engine:
    """The log's engine; InferenceLogURLError (one line, exit 2) for a URL SQLAlchemy cannot
    read or a driver it cannot load. Nothing is connected yet: a database down at start is the
    writer's to report, not a reason to refuse to serve."""
    shown = redacted(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InferenceLogURLError(
            f"inference log {shown}: not a SQLAlchemy URL ({EXAMPLES})"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise InferenceLogURLError(
            f"inference log {shown}: an in-memory SQLite log is lost at exit and not shared "
            f"between threads: name a file ({EXAMPLES})"
        )
    try:
        parsed.get_driver_name()  # loads the dialect: a missing driver is said here
        bounds = connect_args(
            parsed, statement_timeout_s, read_only=False, connect_s=CONNECT_TIMEOUT_S
        )
        return create_engine(parsed, pool_pre_ping=True, connect_args=bounds)
    except (NoSuchModuleError, ImportError) as error:
        raise InferenceLogURLError(
            f"inference log {shown}: unknown or missing driver ({first_line(error)}; {EXAMPLES})"
        ) from None


def create_tables(engine: Engine) -> None:
    """The log's tables, created if missing. Several predictors may start at once against one
    database: the one that loses the race to create them finds them made by the other."""
    try:
        metadata.create_all(engine)
    except Exception:
        with engine.connect() as connection:
            existing = inspect(connection)
            if not all(existing.has_table(table.name) for table in metadata.sorted_tables):
                raise


class InferenceLog:
    """The log of one predictor process: the queue, its writer thread, the outcomes' writes, and
    what ``/metrics`` and ``/health`` say about them."""

    def __init__(
        self,
        url: str,
        retention_days: int,
        queue_battles: int = QUEUE_BATTLES,
        backoff_max_s: float = BACKOFF_MAX_S,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        self.engine = open_engine(url, statement_timeout_s)
        self.url = redacted(url)  # the only form of it shown
        self._url = url  # for scrubbed() only
        self.retention = timedelta(days=retention_days)
        self.backoff_max_s = backoff_max_s
        self.queue = BattleQueue(queue_battles)
        self.written = 0
        self.dropped_database = 0
        self.error = ""  # why the last attempt failed; "" once one succeeds
        self._tables_ready = False
        self._processed = 0  # items written or dropped by the writer
        self._progress = threading.Condition()
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._first_attempt = threading.Event()
        self._retry_at = 0.0
        self._backoff = BACKOFF_S
        self._purged_at = -math.inf
        self._thread: threading.Thread | None = None

    # -- the request path --------------------------------------------------------------------
    def record(
        self, model_version: str, request_id: str | None, battles: Battles, p_a_wins: np.ndarray
    ) -> list[str]:
        """Queue a request's answered battles; their ids, for the answer (given even when the
        queue is full: the answer does not depend on the log)."""
        key = uuid.uuid4().hex
        item = Answered(datetime.now(UTC), key, request_id, model_version, battles, p_a_wins)
        self.queue.offer(item)
        return [battle_id(key, index) for index in range(len(item))]

    @property
    def status(self) -> Literal["ok", "failing"]:
        return "failing" if self.error else "ok"

    @property
    def dropped(self) -> dict[DropReason, int]:
        return {"queue_full": self.queue.dropped, "database": self.dropped_database}

    # -- the writer thread -------------------------------------------------------------------
    def start(self, first_attempt_s: float = 2 * CONNECT_TIMEOUT_S) -> InferenceLog:
        """Start the writer; wait (bounded) for its first attempt at the database, so the
        service's first line can say whether the log works."""
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()
        self._first_attempt.wait(first_attempt_s)
        return self

    def stop(self, timeout_s: float = FLUSH_WAIT_S) -> None:
        """Write what is queued (bounded), then stop the writer and close the connections."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.engine.dispose()

    def flush(self, timeout_s: float = FLUSH_WAIT_S) -> bool:
        """Wait until every battle queued before this call is written (or dropped)."""
        with self._progress:
            target = self.queue.accepted
            if self._processed >= target:
                return True
            self._wake.set()
            return self._progress.wait_for(lambda: self._processed >= target, timeout_s)

    def _run(self) -> None:
        self._work()
        self._first_attempt.set()
        while not self._stopping.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            self._work()
        self._work()  # what was queued before the stop

    def _work(self) -> None:
        """One round: write what is queued, enforce the retention when due. While backing off
        after a failure, what is queued is dropped (and counted) instead."""
        items = self.queue.take_all()
        written = False
        if time.monotonic() >= self._retry_at:
            written = self._attempt(lambda: self._insert(items))
            if written and time.monotonic() - self._purged_at >= RETENTION_CHECK_S:
                self._attempt(self._purge)
        battles = sum(map(len, items))
        with self._progress:
            if written:
                self.written += battles
            else:
                self.dropped_database += battles
            self._processed += len(items)
            self._progress.notify_all()

    def _attempt(self, action) -> bool:
        """Run one database action; on failure record why and back off (a bug in the writer
        must not end it either: it is counted and reported like an outage)."""
        try:
            if not self._tables_ready:
                create_tables(self.engine)
                self._tables_ready = True
            action()
        except Exception as error:
            self._failed(error)
            return False
        if self.error:
            self._say(f"inference log {self.url}: writing again")
        self.error, self._backoff = "", BACKOFF_S
        return True

    def _failed(self, error: Exception) -> None:
        line = self.scrubbed(first_line(error))
        if not self.error:
            self._say(
                f"inference log {self.url} failing: {line}; answered battles are dropped and "
                "counted until it is back"
            )
        self.error = line
        self.engine.dispose()  # the pool's connections may be dead: reconnect next time
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max_s)

    def _insert(self, items: Sequence[Answered]) -> None:
        """Insert the items' rows in one transaction; with none while failing, ask the database
        whether it is back (so /health recovers without traffic)."""
        rows = log_rows(items)
        if rows or self.error:
            with self.engine.begin() as connection:
                if rows:
                    connection.execute(insert(battles), rows)
                else:
                    connection.execute(select(1))

    def _purge(self) -> None:
        """Delete the battles older than the retention, and their outcomes."""
        cutoff = datetime.now(UTC) - self.retention
        old = select(battles.c.battle_id).where(battles.c.logged_at < cutoff)
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # the first purge in a while may be long
                connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(delete(outcomes).where(outcomes.c.battle_id.in_(old)))
            connection.execute(delete(battles).where(battles.c.logged_at < cutoff))
        self._purged_at = time.monotonic()

    # -- outcomes ----------------------------------------------------------------------------
    def record_outcomes(self, posted: Sequence[Outcome]) -> OutcomesResponse:
        """Record who won each battle: the queue is flushed first, so a battle answered just
        before is found. InferenceLogDown (one line) when the database does not answer."""
        self.flush()
        try:
            if not self._tables_ready:
                create_tables(self.engine)
                self._tables_ready = True
            try:
                return self._record_outcomes(posted)
            except IntegrityError:  # another predictor recorded one of them meanwhile
                return self._record_outcomes(posted)
        except SQLAlchemyError as error:
            raise InferenceLogDown(
                f"the inference log's database does not answer: {self.scrubbed(first_line(error))}"
            ) from None

    def _record_outcomes(self, posted: Sequence[Outcome]) -> OutcomesResponse:
        """One transaction: the first winner posted for an id counts; an id posted twice in one
        request counts like a second post (already recorded, or conflicting)."""
        wanted: dict[str, bool] = {}
        repeated: list[tuple[str, bool]] = []
        for outcome in posted:
            a_wins = outcome.winner == "a"
            if outcome.battle_id in wanted:
                repeated.append((outcome.battle_id, a_wins))
            else:
                wanted[outcome.battle_id] = a_wins
        with self.engine.begin() as connection:
            known = set(_found(connection, battles.c.battle_id, list(wanted)))
            before = dict(_found(connection, outcomes.c.battle_id, list(wanted), outcomes.c.a_wins))
            now = datetime.now(UTC)
            new = [
                {"battle_id": battle, "a_wins": a_wins, "recorded_at": now}
                for battle, a_wins in wanted.items()
                if battle in known and battle not in before
            ]
            if new:
                connection.execute(insert(outcomes), new)
        kept = before | {row["battle_id"]: row["a_wins"] for row in new}
        answers = [*((b, w) for b, w in wanted.items() if b in before), *repeated]
        return OutcomesResponse(
            recorded=len(new),
            already_recorded=sum(1 for b, w in answers if b in kept and kept[b] == w),
            unknown=[battle for battle in wanted if battle not in known],
            conflicting=[b for b, w in answers if b in kept and kept[b] != w],
        )

    def scrubbed(self, text: str) -> str:
        """``text`` with the URL's credentials replaced, should a driver's message quote them."""
        return scrubbed(text, self._url)

    @staticmethod
    def _say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _found(connection: Connection, key, ids: list[str], *also) -> Iterator:
    """The rows of ``key``'s table whose key is one of ``ids`` (the key, and ``also``)."""
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        query = select(key, *also).where(key.in_(chunk))
        yield from (row[0] if not also else tuple(row) for row in connection.execute(query))


def request_id(header: str | None) -> str | None:
    """The caller's X-Request-Id, cut to the column's length (None when not sent)."""
    return header[:REQUEST_ID_CHARS] if header else None

"""Recent battles from the inference log, for retraining: read, split, weighted.

``train --with-inference-log URL`` adds the battles the predictor answered *and* whose outcome
came back (an inner join of ``battles`` and ``outcomes``, logged within ``--since``) to the
simulated training battles. Two choices make the result judgeable:

- **A stable held-out part.** A battle belongs to the recent test set when a hash of its
  ``battle_id`` says so (``RECENT_TEST_SHARE`` of them), not by a random draw: a battle held out
  by one run is held out by every later run, so no model is scored on a logged battle that an
  earlier model (the champion re-scored by the gate) was trained on.
- **Weights: by default none.** Each logged battle weighs as much as a simulated one: measured
  in benchmarks/retraining.py (README, Benchmarks), raising the log's weight never helped the
  retrained model on recent battles and usually hurt it — a few hundred logged battles
  weighted up are learnt by heart (1,000 logged battles at a quarter of the weight or more:
  -0.005 to -0.009 accuracy on fresh recent battles), and with many the gain is the same as
  unweighted within noise. The battles of the recent traffic are drawn from a region the
  simulated ones already cover; what the log adds is *more* battles there, not other rules.
  ``--log-share S`` still lets the log carry exactly ``S`` of the training weight (the mean
  weight kept at 1, so the model's regularisation means what it did).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from machine_learning.contract.failures import BadInput, Unreachable, first_line
from machine_learning.datasets import LABEL, RAW_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.datasets import BattleData

RECENT_TEST_SHARE = 0.2  # of the logged battles with outcomes, held out as the recent test set
DEFAULT_SINCE = timedelta(days=30)
STATEMENT_TIMEOUT_S = 120
# The newest logged battles with outcomes read at most: a month of a busy log would not fit a
# runner's memory, and ten times the simulated training battles is plenty to learn from.
MAX_LOG_BATTLES = 200_000
MIN_RECENT_TEST = 20  # fewer held-out battles, or one outcome only: no recent-test metrics


class InferenceLogUnreachable(Unreachable):
    """The log database does not answer (exit 3)."""


@dataclass(frozen=True)
class RecentBattles:
    """The logged battles with outcomes in the window: a training part and a held-out part,
    both raw battle rows with the ``a_wins`` label, as the simulator's tables are."""

    train: pd.DataFrame
    test: pd.DataFrame

    @property
    def empty(self) -> bool:
        return len(self.train) + len(self.test) == 0

    @property
    def scored(self) -> bool:
        """True when the held-out part can be scored: enough battles, both outcomes."""
        return len(self.test) >= MIN_RECENT_TEST and self.test[LABEL].nunique() == 2


def read_recent(url: str, since: timedelta, now: datetime | None = None) -> RecentBattles:
    """The log's battles with outcomes logged within ``since`` of ``now``, split by battle id."""
    table = _query(url, (now or datetime.now(UTC)) - since)
    held_out = held_out_mask(table["battle_id"].tolist())
    rows = table.drop(columns=["battle_id"])
    return RecentBattles(
        train=rows[~held_out].reset_index(drop=True), test=rows[held_out].reset_index(drop=True)
    )


def held_out_mask(battle_ids: list[str]) -> np.ndarray:
    """Which battles belong to the recent test set: the first 8 bytes of SHA-256 of the id,
    below RECENT_TEST_SHARE of their range. Stable across runs, processes and databases."""
    cut = int(RECENT_TEST_SHARE * 2**64)
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha256(battle_id.encode()).digest()[:8], "big") < cut
            for battle_id in battle_ids
        ),
        dtype=bool,
        count=len(battle_ids),
    )


def log_weights(n_simulated: int, n_logged: int, share: float | None) -> np.ndarray | None:
    """Sample weights for ``n_simulated`` simulated then ``n_logged`` logged battles so the log
    carries ``share`` of the total weight, their mean 1; None (every battle weighs 1) without a
    share or without logged battles."""
    if share is None or n_logged == 0:
        return None
    total = n_simulated + n_logged
    return np.concatenate(
        [
            np.full(n_simulated, (1 - share) * total / n_simulated),
            np.full(n_logged, share * total / n_logged),
        ]
    )


def _query(url: str, start: datetime) -> pd.DataFrame:
    """The join, as raw battle rows with ``battle_id`` and the label; one line on failure."""
    import pandas as pd
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from machine_learning.contract.inference_log import battles, outcomes, redacted

    engine = _engine(url)
    query = (
        select(battles.c.battle_id, *(battles.c[name] for name in RAW_COLUMNS), outcomes.c.a_wins)
        .join(outcomes, outcomes.c.battle_id == battles.c.battle_id)
        .where(battles.c.logged_at >= start)
        .order_by(battles.c.logged_at.desc(), battles.c.battle_id)
        .limit(MAX_LOG_BATTLES)
    )
    try:
        with engine.connect() as connection:
            _require_tables(connection, redacted(url))
            table = pd.DataFrame(connection.execute(query).all(), columns=_columns())
    except DBAPIError as error:
        if _is_connection_error(error):
            raise _unreachable(url, error) from None
        raise _unreadable(url, error) from None
    except SQLAlchemyError as error:
        raise _unreadable(url, error) from None
    finally:
        engine.dispose()
    return _typed(table)


def _engine(url: str):
    """An engine for ``url``; a URL SQLAlchemy cannot use, or a SQLite file that does not
    exist (SQLite would create an empty one), is bad input."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from machine_learning.contract.inference_log import connect_args, redacted

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or not Path(database).is_file():
                raise BadInput(f"--with-inference-log {redacted(url)}: no such SQLite file")
        bounds = connect_args(parsed, STATEMENT_TIMEOUT_S, read_only=True)
        return create_engine(parsed, connect_args=bounds)
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise BadInput(
            f"--with-inference-log {redacted(url)}: not a database URL SQLAlchemy can use "
            f"({_clean(error, url)})"
        ) from None


def _require_tables(connection, shown: str) -> None:
    from sqlalchemy import inspect

    missing = {"battles", "outcomes"} - set(inspect(connection).get_table_names())
    if missing:
        raise BadInput(
            f"--with-inference-log {shown}: no {' or '.join(sorted(missing))} table: not an "
            "inference log (serve --inference-log creates one)"
        )


def _is_connection_error(error) -> bool:
    """A refused, timed-out or dropped connection (the server is down), not a bad query."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    text = str(error.orig).lower()
    return isinstance(error, InterfaceError) or (
        isinstance(error, OperationalError)
        and any(
            sign in text
            for sign in ("connection", "could not connect", "timeout", "server closed", "refused")
        )
        and "no such table" not in text
    )


def _unreachable(url: str, error) -> InferenceLogUnreachable:
    from machine_learning.contract.inference_log import redacted

    return InferenceLogUnreachable(
        f"the inference log {redacted(url)} does not answer: {_clean(error.orig, url)}"
    )


def _unreadable(url: str, error: BaseException) -> BadInput:
    from machine_learning.contract.inference_log import redacted

    return BadInput(f"--with-inference-log {redacted(url)}: cannot read it: {_clean(error, url)}")


def _clean(error: BaseException, url: str) -> str:
    """The driver's first line, with the URL's credentials cut out should the driver repeat
    them."""
    from machine_learning.contract.inference_log import scrubbed

    return scrubbed(first_line(error), url)


def _columns() -> list[str]:
    return ["battle_id", *RAW_COLUMNS, LABEL]


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """The simulator's column types: names and types as text (no second type is ""), stats
    and the label as 64-bit integers, so logged and simulated rows stack into one table."""
    for column in RAW_COLUMNS:
        if column.endswith(("_name", "_type1", "_type2")):
            table[column] = table[column].fillna("").astype(str)
        else:
            table[column] = table[column].astype(np.int64)
    table[LABEL] = table[LABEL].astype(np.int64)
    return table


def with_recent(data: BattleData, recent: RecentBattles, share: float | None) -> BattleData:
    """The simulated battles plus the log's training part (weighted to ``share`` when given),
    and its held-out part as the recent test set when it can be scored."""
    import pandas as pd

    train = pd.concat([data.train, recent.train], ignore_index=True)
    return replace(
        data,
        train=train,
        logged=len(recent.train),
        weights=log_weights(len(data.train), len(recent.train), share),
        recent_test=recent.test if recent.scored else None,
    )

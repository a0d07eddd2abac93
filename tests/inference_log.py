"""Filling an inference log directly, as the predictor and ``POST /v1/outcomes`` would: for the
tests and benchmarks of what reads the log (retraining)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from machine_learning.datasets import LABEL, RAW_COLUMNS


def create_log(url: str) -> None:
    """The log's two tables, empty."""
    from sqlalchemy import create_engine

    from machine_learning.contract.inference_log import metadata

    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()


def log_battles(
    url: str,
    table: pd.DataFrame,
    *,
    p_a_wins: Sequence[float] | None = None,
    logged_at: datetime | None = None,
    model_version: str = "1",
    outcomes: bool = True,
    request: str | None = None,
) -> list[str]:
    """One ``battles`` row per row of ``table`` (raw columns and ``a_wins``), in one request
    (``request``: its 32 hex digits, drawn when not given), and with ``outcomes`` its outcome
    (the table's label); returns the battle ids."""
    from sqlalchemy import create_engine, insert

    from machine_learning.contract.inference_log import battles
    from machine_learning.contract.inference_log import outcomes as outcomes_table

    request = request or uuid.uuid4().hex
    ids = [f"{request}-{index}" for index in range(len(table))]
    when = logged_at or datetime.now(UTC)
    probabilities = np.full(len(table), 0.5) if p_a_wins is None else np.asarray(p_a_wins)
    rows = table[list(RAW_COLUMNS)].to_dict("records")
    for row, battle_id, p in zip(rows, ids, probabilities, strict=True):
        row |= {
            "battle_id": battle_id,
            "logged_at": when,
            "request_id": request,
            "model_version": model_version,
            "p_a_wins": float(p),
            "a_type2": row["a_type2"] or None,  # the predictor stores no second type as NULL
            "b_type2": row["b_type2"] or None,
        }
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(battles), rows)
        if outcomes:
            connection.execute(
                insert(outcomes_table),
                [
                    {"battle_id": battle_id, "a_wins": bool(won), "recorded_at": when}
                    for battle_id, won in zip(ids, table[LABEL], strict=True)
                ],
            )
    engine.dispose()
    return ids

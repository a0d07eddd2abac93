"""Batch scoring: a CSV of battles (names a,b or the model's raw columns) to a CSV of
predictions, in chunks so memory stays flat whatever the input's size.

The output promises text cells a spreadsheet shows as text: a name or URI starting like a
formula (``=``, ``+``, ``-``, ``@``, a tab, a carriage return) is written with a leading ``'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from machine_learning.contract.failures import BadInput

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.serving.predict import Predictor

OUTPUT_COLUMNS = ("a", "b", "p_a_wins", "p_b_wins", "model_version", "model_uri")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 50_000  # battles per batch step: memory stays flat whatever the input's size


def score_csv(predictor: Predictor, source: Path, target: Path, chunk_rows: int) -> int:
    """Score a CSV in chunks, appending each to ``target`` as it is done: a bad row further
    down leaves every earlier chunk's predictions on disk."""
    import pandas as pd

    from machine_learning.serving.predict import PredictError, battle_rows

    done = 0
    try:
        reader = pd.read_csv(source, chunksize=chunk_rows, dtype=str, keep_default_na=False)
        with reader as chunks:  # closed on a bad row too, not left to the garbage collector
            for chunk in chunks:
                if chunk.empty:  # a header without battles
                    continue
                try:
                    rows = battle_rows(chunk.to_dict("records"))
                except PredictError as error:
                    raise PredictError(
                        f"{source}, rows {done + 1:,}-{done + len(chunk):,}: {error}; "
                        f"{target} holds the {done:,} rows before them"
                    ) from None
                write_chunk(scored_chunk(predictor, rows), target, first=done == 0)
                done += len(chunk)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PredictError(f"cannot read {source}: {str(error).splitlines()[0]}") from None
    if done == 0:  # a header and no battles: still a file with the columns
        write_chunk(pd.DataFrame(columns=OUTPUT_COLUMNS), target, first=True)
    print(f"{done:,} battles scored by {predictor.info.label} → {target}")
    return 0


def scored_chunk(predictor: Predictor, rows) -> pd.DataFrame:
    import pandas as pd

    from machine_learning.serving.predict import p_b_wins

    # As the API answers: rounding the model's float32 here gave another last digit than the
    # API for about 2% of battles.
    p = predictor.rounded(rows)
    values = (rows["a_name"], rows["b_name"], p, p_b_wins(p))
    scored = pd.DataFrame(dict(zip(OUTPUT_COLUMNS, values, strict=False)))
    scored = scored.assign(model_version=predictor.info.version, model_uri=predictor.info.uri)
    for column in ("a", "b", "model_uri"):
        scored[column] = spreadsheet_safe(scored[column])
    return scored


def spreadsheet_safe(cells: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula (OWASP's CSV injection: starting with
    = + - @, a tab or a carriage return) prefixed with ``'``, which shows them as text."""
    return cells.where(~cells.str.startswith(FORMULA_STARTS), "'" + cells)


def write_chunk(scored: pd.DataFrame, target: Path, first: bool) -> None:
    """Append (or start) the output; a failed write is named as such, not as a read error."""
    try:
        scored.to_csv(target, mode="w" if first else "a", header=first, index=False)
    except OSError as error:
        raise BadInput(f"cannot write {target}: {error.strerror or error}") from None

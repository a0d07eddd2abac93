"""Every battle by name, scored once per loaded version: the matchup table.

A battle by name is a pure function of the two Pokémon and the version, and the Pokédex is
closed (1,336 species and formes: 1.78 million ordered pairs, 14 MB of float64). So once a
version is loaded, the service scores every pair in the background and then answers battles by
name with one array lookup: 10,000 battles cost their validation, name lookup and response, not
features and trees (benchmarks/serving.py). The table holds exactly what the model answers (the
same raw rows through the same pipeline, rounded the same way); raw rows, and every request
before the table is ready, still go to the model.

The build runs on one core at the lowest priority the OS gives a thread, so it takes what the
answers leave: about 6 s of one core for train's XGBoost on a quiet machine (several times that
for a random forest of deep trees). A container's CPU quota is spent by it all the same: there,
``serve --no-matchup-table``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from machine_learning.serving.predict import Predictor, pokedex

if TYPE_CHECKING:
    import numpy as np

A_ROWS_PER_CHUNK = 32  # 42,752 battles a chunk: a few MB of features at a time
LOWEST_PRIORITY = 19


def matchup_table(
    predictor: Predictor, wanted: Callable[[], bool] = lambda: True
) -> np.ndarray | None:
    """P(a wins) for every (a, b) of the Pokédex, exactly as ``predictor`` answers it; None as
    soon as it is no longer ``wanted`` (another version replaced it meanwhile)."""
    import numpy as np

    single = Predictor(predictor.info, one_thread(predictor.pipeline))
    dex = pokedex()
    n = len(dex.names)
    table = np.empty((n, n))
    every_b = np.arange(n)
    for start in range(0, n, A_ROWS_PER_CHUNK):
        if not wanted():
            return None
        a_rows = np.arange(start, min(n, start + A_ROWS_PER_CHUNK))
        frame = dex.frame(np.repeat(a_rows, n), np.tile(every_b, len(a_rows)))
        table[a_rows] = single.rounded(frame).reshape(-1, n)
    table.setflags(write=False)
    return table


def one_thread(pipeline):
    """A copy of the pipeline whose final estimator uses one thread (the answers keep theirs):
    the same trees, so the same probabilities."""
    if "n_jobs" not in pipeline[-1].get_params():
        return pipeline
    single = copy.deepcopy(pipeline)
    single[-1].set_params(n_jobs=1)
    return single


def lowest_priority() -> None:
    """Lower the calling thread's priority (Linux schedules threads one by one); elsewhere the
    build simply runs at the service's priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)

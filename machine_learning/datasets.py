"""Battle datasets: raw battle tables labelled by the simulator, split and fingerprinted.

A raw battle row holds both sides' names, types and base stats; it is what the logged model takes,
so any battle table can be scored. The held-out test set comes from its own fixed seed, so runs
with different training seeds (or different code) are scored on the same battles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from machine_learning.data import STATS, load_pokedex
from machine_learning.mechanics import type_index
from machine_learning.simulator import Scenario, sample_pairs, simulate

if TYPE_CHECKING:
    import pandas as pd

TEST_SEED = 1_000_003
DEFAULT_TEST_BATTLES = 5_000
LABEL = "a_wins"
SIDE_COLUMNS = ("name", "type1", "type2", *STATS)
RAW_COLUMNS = tuple(f"{side}_{column}" for side in "ab" for column in SIDE_COLUMNS)


class DatasetVersion(StrEnum):
    """Feature sets: v1 base stats only; v2 adds type matchups, speed and expected damage."""

    V1 = "v1"
    V2 = "v2"


@dataclass(frozen=True)
class BattleData:
    """Training and held-out battles with the fingerprints that make runs comparable."""

    train: pd.DataFrame
    test: pd.DataFrame
    scenario: Scenario
    # With the inference log (machine_learning.recent_battles): how many of the training rows
    # (the last ones) are logged battles, their sample weights, and the recent test set.
    logged: int = 0
    weights: np.ndarray | None = field(default=None, repr=False)
    recent_test: pd.DataFrame | None = None

    @property
    def digest(self) -> str:
        """Fingerprint of every row, train and test, so two runs saw exactly the same battles."""
        return table_digest(self.train, self.test)

    @property
    def test_digest(self) -> str:
        """Fingerprint of the test rows only: what a champion must be re-scored on."""
        return table_digest(self.test)

    @property
    def recent_test_digest(self) -> str:
        """Fingerprint of the recent battles held out of the inference log, when there are."""
        return table_digest(self.recent_test) if self.recent_test is not None else ""


def battles(n: int, scenario: Scenario, seed: int) -> pd.DataFrame:
    """``n`` labelled battles drawn and simulated from ``seed``; the same seed, the same bytes."""
    import pandas as pd

    if n <= 0:
        raise ValueError(f"the number of battles must be positive, got {n}")
    dex = load_pokedex()
    rng = np.random.default_rng(seed)
    a, b = sample_pairs(dex["bst"].to_numpy(), n, scenario, rng)
    base = dex[list(STATS)].to_numpy()
    types = np.stack([type_index(dex["type1"]), type_index(dex["type2"])], axis=1)
    wins = simulate(base[a], base[b], types[a], types[b], rng)
    columns = {}
    for side, index in (("a", a), ("b", b)):
        for column in SIDE_COLUMNS:
            columns[f"{side}_{column}"] = dex[column].to_numpy()[index]
    columns[LABEL] = wins.astype(np.int64)
    return pd.DataFrame(columns)


def held_out_battles(n_test: int, scenario: Scenario) -> pd.DataFrame:
    """The held-out test set: from the fixed TEST_SEED, so every model of every run (and the
    gate re-scoring a champion) sees the same battles for the same size and scenario."""
    return battles(n_test, scenario, TEST_SEED)


def make_battle_data(
    n_battles: int, scenario: Scenario, seed: int, n_test: int = DEFAULT_TEST_BATTLES
) -> BattleData:
    """Training battles from ``seed``; the held-out test battles."""
    return BattleData(
        train=battles(n_battles, scenario, seed),
        test=held_out_battles(n_test, scenario),
        scenario=scenario,
    )


def table_digest(*tables: pd.DataFrame) -> str:
    """SHA-256 (16 hex digits) over all rows and column names of the tables.

    MLflow's own pandas digest only reads the first 10,000 rows, so two datasets differing
    further down would look identical to it.
    """
    import pandas as pd

    sha = hashlib.sha256()
    for table in tables:
        sha.update("\x1f".join(table.columns).encode())
        sha.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return sha.hexdigest()[:16]

"""The real Pokédex and type chart shipped with the package (see PROVENANCE.md)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DATA_DIR = Path(__file__).resolve().parent
STATS = ("hp", "atk", "def", "spa", "spd", "spe")


def load_pokedex() -> pd.DataFrame:
    """Every species and forme: national number, name, types, base stats, generation, flags."""
    import pandas as pd

    return pd.read_csv(DATA_DIR / "pokedex.csv", keep_default_na=False)


@cache
def load_type_chart() -> tuple[tuple[str, ...], np.ndarray]:
    """The 18 type names and the attacking x defending damage multiplier matrix."""
    rows = np.loadtxt(DATA_DIR / "type_chart.csv", delimiter=",", dtype=str)
    types = tuple(rows[0, 1:])
    if tuple(rows[1:, 0]) != types:
        raise ValueError("type_chart.csv: row and column types differ")
    return types, rows[1:, 1:].astype(np.float64)

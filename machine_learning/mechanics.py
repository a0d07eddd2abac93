"""Battle mechanics shared by the simulator (to label battles) and the features (to describe them).

Keeping one copy means the expected-damage features describe exactly the game being simulated.
All functions are vectorised over battles.
"""

from __future__ import annotations

import numpy as np

from machine_learning.data import load_type_chart

LEVEL = 50
STAB = 1.5
MOVE_POWER = 80.0
NO_TYPE = -1
SMALL_BATCH = 32  # rows below which a dict lookup per row beats factorising


def type_index(names) -> np.ndarray:
    """Map type names to chart indices; an empty name (mono-type second slot) maps to NO_TYPE.

    Factorising first means only the few distinct names are looked up, whatever the row count;
    a handful of rows (the prediction service's) skip it.
    """
    import pandas as pd

    types, _ = load_type_chart()
    lookup = {name: index for index, name in enumerate(types)} | {"": NO_TYPE}
    values = names.to_numpy() if hasattr(names, "to_numpy") else np.asarray(names, dtype=object)
    if len(values) <= SMALL_BATCH:
        codes, distinct = np.arange(len(values)), list(values)
    else:
        codes, distinct = pd.factorize(values, use_na_sentinel=False)
    distinct = ["" if pd.isna(name) else name for name in distinct]
    unknown = [name for name in distinct if name not in lookup]
    if unknown:
        raise ValueError(f"unknown Pokémon type {unknown[0]!r}; expected one of {', '.join(types)}")
    return np.array([lookup[name] for name in distinct], dtype=np.int64)[codes]


def effectiveness(
    attacking: np.ndarray, defending1: np.ndarray, defending2: np.ndarray
) -> np.ndarray:
    """Multiplier of an attacking type against a one- or two-typed defender (NO_TYPE = absent)."""
    _, chart = load_type_chart()
    padded = np.ones((chart.shape[0] + 1, chart.shape[1] + 1))
    padded[:-1, :-1] = chart  # index -1 is the neutral "no type" row and column
    return padded[attacking, defending1] * padded[attacking, defending2]


def best_stab_effectiveness(
    attacker1: np.ndarray, attacker2: np.ndarray, defender1: np.ndarray, defender2: np.ndarray
) -> np.ndarray:
    """Effectiveness of the attacker's better own-type (STAB) move against the defender."""
    first = effectiveness(attacker1, defender1, defender2)
    second = np.where(attacker2 == NO_TYPE, 0.0, effectiveness(attacker2, defender1, defender2))
    return np.maximum(first, second)


def battle_stats(base: np.ndarray) -> np.ndarray:
    """Level-50 stats from base stats (columns hp, atk, def, spa, spd, spe), 31 IVs, no EVs."""
    return np.floor((2.0 * base + 31.0) * (LEVEL / 100.0)) + _STAT_OFFSETS  # float: int // is slow


_STAT_OFFSETS = np.array([LEVEL + 10, 5, 5, 5, 5, 5])


def offense_defense(attacker: np.ndarray, defender: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Attack and defence stats of the attacker's better category (physical or special)."""
    physical = attacker[..., 1] >= attacker[..., 3]
    attack = np.where(physical, attacker[..., 1], attacker[..., 3])
    defence = np.where(physical, defender[..., 2], defender[..., 4])
    return attack, defence


def base_damage(attack: np.ndarray, defence: np.ndarray, power: float = MOVE_POWER) -> np.ndarray:
    """The main-series damage formula before modifiers (STAB, type, roll, critical hit)."""
    return (2 * LEVEL / 5 + 2) * power * attack / defence / 50 + 2

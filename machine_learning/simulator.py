"""A seeded, vectorised 1-vs-1 battle simulator that labels who wins.

Each side knows two 80-power moves: one of its own types (with STAB) and one coverage move of a
random type, and uses whichever hurts the defender more, in its better category (physical or
special). The faster side moves first (speed ties are a coin flip); every hit rolls the usual
0.85-1.00 damage roll and a 1/24 critical hit. Battles are simulated turn by turn for all
battles at once, so a million battles take seconds, and the same seed gives the same battles.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from machine_learning.data import load_type_chart
from machine_learning.mechanics import (
    STAB,
    base_damage,
    battle_stats,
    best_stab_effectiveness,
    effectiveness,
    offense_defense,
)

CRIT_CHANCE = 1 / 24
CRIT_MULTIPLIER = 1.5
MAX_TURNS = 50
BALANCED_WINDOW = 25  # opponents within this many places in base-stat-total order


class Scenario(StrEnum):
    """How the two sides of a battle are drawn from the Pokédex."""

    RANDOM = "random"  # any two different entries
    BALANCED = "balanced"  # two entries with similar base-stat totals


def sample_pairs(
    bst: np.ndarray, n: int, scenario: Scenario, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of side A and side B for ``n`` battles, never a Pokémon against itself."""
    size = len(bst)
    if scenario is Scenario.RANDOM:
        a = rng.integers(0, size, n)
        return a, (a + rng.integers(1, size, n)) % size
    order = np.argsort(bst, kind="stable")
    rank_a = rng.integers(0, size, n)
    offset = rng.integers(1, BALANCED_WINDOW + 1, n) * rng.choice((-1, 1), n)
    rank_b = rank_a + offset
    rank_b = np.where((rank_b < 0) | (rank_b >= size), rank_a - offset, rank_b)
    return order[rank_a], order[rank_b]


def move_multiplier(
    attacker_types: np.ndarray, defender_types: np.ndarray, coverage: np.ndarray
) -> np.ndarray:
    """Type and STAB multiplier of the better of the STAB move and the coverage move."""
    stab = STAB * best_stab_effectiveness(
        attacker_types[:, 0], attacker_types[:, 1], defender_types[:, 0], defender_types[:, 1]
    )
    return np.maximum(stab, effectiveness(coverage, defender_types[:, 0], defender_types[:, 1]))


def simulate(
    a_base: np.ndarray,
    b_base: np.ndarray,
    a_types: np.ndarray,
    b_types: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Whether side A wins each battle. Stats are (n, 6) base stats, types (n, 2) chart indices."""
    n = len(a_base)
    a_stats, b_stats = battle_stats(a_base), battle_stats(b_base)
    n_types = len(load_type_chart()[0])
    a_hit = base_damage(*offense_defense(a_stats, b_stats)) * move_multiplier(
        a_types, b_types, rng.integers(0, n_types, n)
    )
    b_hit = base_damage(*offense_defense(b_stats, a_stats)) * move_multiplier(
        b_types, a_types, rng.integers(0, n_types, n)
    )
    a_first = (a_stats[:, 5] > b_stats[:, 5]) | (
        (a_stats[:, 5] == b_stats[:, 5]) & (rng.random(n) < 0.5)
    )
    # Arrange every battle as (first mover, second mover) so one loop body serves both orders.
    first_hp = np.where(a_first, a_stats[:, 0], b_stats[:, 0])
    second_hp = np.where(a_first, b_stats[:, 0], a_stats[:, 0])
    first_hit = np.where(a_first, a_hit, b_hit)
    second_hit = np.where(a_first, b_hit, a_hit)
    first_hp, second_hp = _fight(first_hp, second_hp, first_hit, second_hit, rng)
    first_wins = first_hp / np.where(a_first, a_stats[:, 0], b_stats[:, 0]) >= (
        second_hp / np.where(a_first, b_stats[:, 0], a_stats[:, 0])
    )
    return np.where(a_first, first_wins, ~first_wins)


def _fight(
    first_hp: np.ndarray,
    second_hp: np.ndarray,
    first_hit: np.ndarray,
    second_hit: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Play turns until one side of every battle faints (or MAX_TURNS); return remaining HP."""
    first_hp, second_hp = first_hp.astype(float), second_hp.astype(float)  # copies
    active = np.flatnonzero((first_hit > 0) | (second_hit > 0))
    for _ in range(MAX_TURNS):
        if active.size == 0:
            break
        second_hp[active] -= _roll(first_hit[active], rng)
        alive = active[second_hp[active] > 0]
        first_hp[alive] -= _roll(second_hit[alive], rng)
        active = alive[first_hp[alive] > 0]
    return np.maximum(first_hp, 0), np.maximum(second_hp, 0)


def _roll(hit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Damage of one hit each: the random roll and the chance of a critical hit."""
    roll = rng.uniform(0.85, 1.0, hit.size)
    crit = np.where(rng.random(hit.size) < CRIT_CHANCE, CRIT_MULTIPLIER, 1.0)
    return np.floor(hit * roll * crit) * (hit > 0) + (hit > 0)

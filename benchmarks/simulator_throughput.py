"""Simulator + featurisation throughput: 1,000,000 battles, beside a plain per-battle Python loop.

    uv run python benchmarks/simulator_throughput.py [--n 1000000] [--loop-n 20000]

The loop plays the same battles (same mechanics, one battle at a time with Python's `random`);
it runs on --loop-n battles and its rate is scaled to --n, since a million would take minutes.
Target: simulate and featurise 1,000,000 battles in <= 5 s on this machine.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np

from machine_learning.data import STATS, load_pokedex, load_type_chart
from machine_learning.datasets import LABEL, battles
from machine_learning.features import BattleFeatures
from machine_learning.mechanics import LEVEL, MOVE_POWER, STAB
from machine_learning.simulator import CRIT_CHANCE, CRIT_MULTIPLIER, MAX_TURNS, Scenario


def loop_battle(a: dict, b: dict, types: tuple, chart: np.ndarray, rng: random.Random) -> bool:
    """One battle, the way a straightforward per-battle implementation would write it."""

    def stats(p):
        scaled = [math.floor((2 * p[s] + 31) * LEVEL / 100) for s in STATS]
        return [scaled[0] + LEVEL + 10] + [v + 5 for v in scaled[1:]]

    def eff(attacking, defender):
        value = chart[types.index(attacking), types.index(defender["type1"])]
        if defender["type2"]:
            value *= chart[types.index(attacking), types.index(defender["type2"])]
        return value

    def hit(attacker, defender, att, dfn):
        physical = att[1] >= att[3]
        attack, defence = (att[1], dfn[2]) if physical else (att[3], dfn[4])
        own = [t for t in (attacker["type1"], attacker["type2"]) if t]
        mult = max(STAB * max(eff(t, defender) for t in own), eff(rng.choice(types), defender))
        return ((2 * LEVEL / 5 + 2) * MOVE_POWER * attack / defence / 50 + 2) * mult

    sa, sb = stats(a), stats(b)
    hp = {"a": sa[0], "b": sb[0]}
    damage = {"a": hit(a, b, sa, sb), "b": hit(b, a, sb, sa)}
    order = ["a", "b"] if sa[5] > sb[5] or (sa[5] == sb[5] and rng.random() < 0.5) else ["b", "a"]
    for _ in range(MAX_TURNS):
        for side in order:
            other = "b" if side == "a" else "a"
            if damage[side] > 0:
                crit = CRIT_MULTIPLIER if rng.random() < CRIT_CHANCE else 1.0
                hp[other] -= math.floor(damage[side] * rng.uniform(0.85, 1.0) * crit) + 1
            if hp[other] <= 0:
                return other == "b"
    return hp["a"] / sa[0] >= hp["b"] / sb[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--loop-n", type=int, default=20_000)
    args = parser.parse_args()
    battles(1_000, Scenario.RANDOM, 0)  # warm the Pokédex and type chart caches

    start = time.perf_counter()
    table = battles(args.n, Scenario.RANDOM, seed=1)
    simulated = time.perf_counter()
    features = BattleFeatures("v2").fit(table).transform(table.drop(columns=[LABEL]))
    done = time.perf_counter()
    vectorised = done - start

    dex = load_pokedex().to_dict("records")
    types, chart = load_type_chart()
    rng = random.Random(1)
    loop_start = time.perf_counter()
    for _ in range(args.loop_n):
        a, b = rng.sample(dex, 2)
        loop_battle(a, b, types, chart, rng)
    loop_rate = args.loop_n / (time.perf_counter() - loop_start)
    loop_estimate = args.n / loop_rate

    print(f"battles: {args.n:,}, features: {features.shape[1]}")
    print(
        f"vectorised: simulate {simulated - start:.2f} s + featurise {done - simulated:.2f} s "
        f"= {vectorised:.2f} s ({args.n / vectorised:,.0f} battles/s)"
    )
    print(
        f"per-battle loop (simulation only, measured on {args.loop_n:,}): "
        f"{loop_rate:,.0f} battles/s -> {loop_estimate:.1f} s for {args.n:,}"
    )
    print(
        f"speed-up, simulation alone: {loop_estimate / (simulated - start):.1f}x; "
        f"vectorised simulation + features vs the loop's simulation alone: "
        f"{loop_estimate / vectorised:.1f}x"
    )
    print(f"target <= 5 s for simulation + features: {'met' if vectorised <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()

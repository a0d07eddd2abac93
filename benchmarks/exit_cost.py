"""What a command's exit costs: the shipped entry point (`python -m …`, which freezes the heap
before exiting) beside the same `main` exited the default way, run alternately in one go.

    uv run python benchmarks/exit_cost.py [--rounds 5]

A process that imported MLflow, scikit-learn and XGBoost spends its last second in the
interpreter's final garbage collection, walking objects the OS frees anyway; both entry points
exit through `machine_learning.contract.failures.exit_process`, whose `gc.freeze()` skips that walk.
Measured on a training run on the embedded SQLite store (the quick start) and a prediction from
its saved model folder, each in a fresh working folder; the medians are wall time and CPU time
of the whole process.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = {"train": "machine_learning", "predict": "machine_learning"}
BATTLE = ["pikachu", "charizard"]
# The same `main` without the entry point's freeze: what every command paid before.
DEFAULT_EXIT = "import sys; from {package}.cli import main; sys.exit(main())"
REPO = Path(__file__).resolve().parents[1]


def command(kind: str, shipped: bool, workdir: Path) -> list[str]:
    args = {
        "train": ["train", "--output-dir", str(workdir / "outputs")],
        "predict": ["predict", "--model-uri", str(workdir / "outputs" / "model"), *BATTLE],
    }[kind]
    package = PACKAGE[kind]
    entry = ["-m", package] if shipped else ["-c", DEFAULT_EXIT.format(package=package)]
    return [sys.executable, *entry, *args]


def timed(argv: list[str], workdir: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv`` in ``workdir``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = os.environ | {"PYTHONPATH": str(REPO)}
    subprocess.run(argv, cwd=workdir, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="exit-cost-") as folder:
        workdir = Path(folder)
        subprocess.run(
            command("train", True, workdir), cwd=workdir, check=True, capture_output=True
        )
        for kind in ("train", "predict"):
            results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for _ in range(rounds):
                for shipped in (False, True):  # alternately, so drift hits both alike
                    results[shipped].append(timed(command(kind, shipped, workdir), workdir))
            _print(kind, rounds, results)


def _print(kind: str, rounds: int, results: dict[bool, list[tuple[float, float]]]) -> None:
    def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)

    (old_wall, old_cpu), (new_wall, new_cpu) = medians(results[False]), medians(results[True])
    print(
        f"{kind:8} median of {rounds}: default exit {old_wall:.2f} s wall / {old_cpu:.2f} s CPU; "
        f"frozen exit {new_wall:.2f} s / {new_cpu:.2f} s; saved {old_wall - new_wall:.2f} s "
        f"wall ({(old_wall - new_wall) / old_wall:.0%})"
    )


if __name__ == "__main__":
    main()

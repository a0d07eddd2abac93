"""Cold start of `python -m ci comment --help` (a new interpreter each time), and what it imports.

    uv run python benchmarks/comment_cold_start.py [--runs 10]

The comment step runs in a privileged job with a minimal install; it must start fast and never
load mlflow, xgboost or pandas. `python -c pass` is timed beside it as the interpreter's floor.
Target: <= 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    floor = timed(["-c", "pass"], args.runs)
    comment = timed(["-m", "ci", "comment", "--help"], args.runs)
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ci", "comment", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = [
        m
        for m in ("mlflow", "xgboost", "pandas", "numpy")
        if f" {m}\n" in probe.stderr or f"| {m}\n" in probe.stderr
    ]
    print(
        f"median of {args.runs}: python -c pass {floor:.3f} s; "
        f"python -m ci comment --help {comment:.3f} s"
    )
    print(
        f"heavy modules imported: {loaded or 'none'}; target <= 0.5 s: "
        f"{'met' if comment <= 0.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

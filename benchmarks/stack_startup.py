"""Native stack: time from launch to a healthy server, and its memory, default vs lean settings.

    uv run python benchmarks/stack_startup.py [--rounds 3]

Each round creates a database, runs the one-shot migration, starts `mlflow server` with the
compose file's flags and waits for /health, exactly as the test fixture does. "default" is
MLflow's own defaults (4 workers, job execution on), "lean" the compose file's defaults
(1 worker, job execution off). Memory is the resident set of the server's whole process group
once healthy. Migration and server start are timed separately.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.native_stack import NativeStack

SETTINGS = {
    "default": {"MLFLOW_WORKERS": "4", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"},
    "lean": {"MLFLOW_WORKERS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
}


def group_memory(pgid: int) -> tuple[int, float]:
    """(processes, resident MiB) of every process in the group."""
    count, kib = 0, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        count += 1
        kib += int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        )
    return count, kib / 1024


def one_round(name: str) -> dict[str, float]:
    stack = NativeStack(Path(tempfile.mkdtemp(prefix=f"bench-{name}-")), env=SETTINGS[name])
    try:
        stack.create_database()
        start = time.perf_counter()
        stack.migrate()
        migrated = time.perf_counter()
        stack.start_server()
        healthy = time.perf_counter()
        time.sleep(2)  # let workers finish importing before reading their memory
        processes, mib = group_memory(stack.server_pid)
        return {
            "migrate": migrated - start,
            "server": healthy - migrated,
            "processes": processes,
            "mib": mib,
        }
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name in SETTINGS:  # interleaved, so drift on the machine hits both alike
            results[name].append(one_round(name))
    print(
        f"{args.rounds} rounds each, median; migration = `mlflow db upgrade` on an empty database"
    )
    print("settings | migrate s | server start to healthy s | processes | resident MiB")
    for name, rounds in results.items():
        median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        print(
            f"{name:8} | {median['migrate']:9.2f} | {median['server']:25.2f} | "
            f"{median['processes']:9.0f} | {median['mib']:12.0f}"
        )


if __name__ == "__main__":
    main()

"""`ci gate` + `ci report` in-process cost as the tracking server fills up, ours vs naive.

    uv run python benchmarks/gate_at_scale.py [--small 1000] [--large 10000] [--versions 50]

A native PostgreSQL-backed server gets one real candidate run (xgboost, 20,000 battles), 50
registered versions with a champion, then filler runs spread over 100 pull requests, first up
to --small runs, then up to --large. At each size (warm, median of 3) it times:
- ours: evaluate_gate + record_verdict + branch_history (one filtered query, max 20) + render;
- naive: the same gate, but the history from `mlflow.search_runs` over the whole experiment
  into pandas (its default pages through every run), then filtered in pandas.
Interpreter start and imports are excluded. Targets: ours <= 2 s at --large and
growing <= 1.5x from --small to --large. Filling 10,000 runs takes a few minutes.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ci.gate import evaluate_gate, load_candidate, record_verdict
from ci.registry import ensure_registered_model, register_version
from ci.report import branch_history, render
from machine_learning.contract.mlflow_names import (
    CHAMPION,
    PARAM_MODEL,
    PREVIOUS_CHAMPION,
    REGISTERED_MODEL,
    TAG_BRANCH,
    TAG_GIT_SHA,
    TAG_PR_NUMBER,
)
from machine_learning.contract.run_record import RunRecord
from tests.native_stack import NativeStack

PR = "7"
MODEL = REGISTERED_MODEL


def fill(backend_uri: str, experiment_id: str, start: int, stop: int) -> None:
    """Runs ``start``..``stop`` shaped like training runs, written straight to the database."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    def write(chunk: range) -> None:
        client = MlflowClient(backend_uri)
        for i in chunk:
            pr = PR if i % 100 == 0 else str(1000 + i % 100)
            run = client.create_run(experiment_id, run_name=f"filler-{i}")
            client.log_batch(
                run.info.run_id,
                metrics=[
                    Metric(name, 0.9 + (i % 7) / 1000, 0, 0)
                    for name in ("test_f1", "test_accuracy", "test_roc_auc")
                ],
                params=[Param(PARAM_MODEL, "xgboost"), Param("seed", str(i))],
                tags=[
                    RunTag(TAG_PR_NUMBER, pr),
                    RunTag(TAG_BRANCH, f"feature-{pr}"),
                    RunTag(TAG_GIT_SHA, f"{i:040x}"),
                ],
            )
            client.set_terminated(run.info.run_id)

    size = max((stop - start) // 4, 1)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, [range(a, min(a + size, stop)) for a in range(start, stop, size)]))


def measure(client, candidate_json: Path, naive: bool) -> float:
    import mlflow

    start = time.perf_counter()
    record = RunRecord.read(candidate_json)
    candidate = load_candidate(client, record.run_id, record)
    result = evaluate_gate(client, candidate, MODEL)
    record_verdict(client, candidate.run_id, result)
    if naive:
        frame = mlflow.search_runs(experiment_ids=[candidate.experiment_id])
        mine = frame[frame["tags.ci.pr_number"] == PR].sort_values("start_time", ascending=False)
        history = [
            {
                "run_id": row["run_id"],
                "sha": str(row["tags.ci.git_sha"])[:7],
                "time": str(row["start_time"])[:16],
                "verdict": "",
                "test_f1": row["metrics.test_f1"],
                "test_accuracy": row["metrics.test_accuracy"],
                "test_roc_auc": row["metrics.test_roc_auc"],
            }
            for _, row in mine.head(20).iterrows()
        ]
    else:
        history = branch_history(client, result)
    render(result, history)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    stack = NativeStack(workdir / "stack").up()
    try:
        import mlflow

        from machine_learning.tracking import TrackingTarget
        from machine_learning.train import TrainConfig, run_train

        os.environ.update(
            GITHUB_ACTIONS="true",
            GITHUB_SHA="c" * 40,
            GITHUB_EVENT_NAME="push",
            GITHUB_REF=f"refs/pull/{PR}/merge",
            GITHUB_REF_NAME="feature-7",
        )
        os.chdir(workdir)
        record = run_train(
            TrainConfig(output_dir=workdir / "out"), TrackingTarget(stack.tracking_uri, "benchmark")
        )
        mlflow.set_tracking_uri(stack.tracking_uri)
        client = mlflow.MlflowClient(stack.tracking_uri)
        ensure_registered_model(client, MODEL)
        for _ in range(args.versions):
            version = register_version(client, MODEL, record["model_uri"], record["run_id"], {})
        client.set_registered_model_alias(MODEL, PREVIOUS_CHAMPION, str(int(version.version) - 1))
        client.set_registered_model_alias(MODEL, CHAMPION, version.version)
        results = {}
        filled = 1
        for size in (args.small, args.large):
            started = time.perf_counter()
            fill(stack.backend_uri, record["experiment_id"], filled, size)
            filled = size
            print(f"filled to {size:,} runs in {time.perf_counter() - started:.0f} s", flush=True)
            measure(client, workdir / "out" / "run.json", naive=False)  # warm caches
            for naive in (False, True):
                times = [measure(client, workdir / "out" / "run.json", naive) for _ in range(3)]
                results[(size, naive)] = statistics.median(times)
        print(f"{args.versions} model versions; gate + report in-process, median of 3 (s)")
        print(f"{'runs':>7} | {'ours':>6} | {'naive':>6}")
        for size in (args.small, args.large):
            print(f"{size:>7,} | {results[(size, False)]:6.3f} | {results[(size, True)]:6.3f}")
        growth = results[(args.large, False)] / results[(args.small, False)]
        naive_growth = results[(args.large, True)] / results[(args.small, True)]
        print(
            f"growth {args.small:,} -> {args.large:,}: ours {growth:.2f}x, naive "
            f"{naive_growth:.2f}x; at {args.large:,} naive/ours = "
            f"{results[(args.large, True)] / results[(args.large, False)]:.1f}x"
        )
        print(
            f"targets: <= 2 s: {'met' if results[(args.large, False)] <= 2 else 'MISSED'}, "
            f"growth <= 1.5x: {'met' if growth <= 1.5 else 'MISSED'}"
        )
    finally:
        stack.down()


if __name__ == "__main__":
    main()

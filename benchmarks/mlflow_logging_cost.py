"""MLflow cost per training run against a native PostgreSQL-backed server, ours vs a naive logger.

    uv run python benchmarks/mlflow_logging_cost.py [--runs 5]

Both loggers record the same trained pipeline, parameters, metrics and plots to the same server
(started from docker-compose.yml's flags, one worker). The clock runs from the end of fit to the
end of the run, i.e. only the tracking work: evaluation is shared and not counted.
- ours: machine_learning.tracking.log_training_run (batched params/metrics, dataset inputs,
  model logged before the metrics with explicit pip requirements);
- naive (the seed project's style): one call per param and per metric, then
  ``log_model(artifact_path=...)`` inferring requirements, run outside a uv project as the
  seed's pip-installed pipeline was; also shown run inside this uv project, where MLflow
  reads the requirements from ``uv export`` instead of inferring them.
Target: ours <= 1.0 s per run and >= 5x less than the naive logger.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from machine_learning.datasets import LABEL
from machine_learning.tracking import TrackingTarget, log_training_run
from machine_learning.train import TrainConfig, fit, load_data, run_tags
from tests.native_stack import NativeStack

REPO_ROOT = Path(__file__).resolve().parent.parent


def naive_log(uri: str, experiment: str, trained, params: dict, tags: dict) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(tags=tags):
        for key, value in params.items():
            mlflow.log_param(key, value)
        for key, value in trained.metrics.items():
            mlflow.log_metric(key, value)
        mlflow.sklearn.log_model(
            trained.pipeline, artifact_path="model", serialization_format="cloudpickle"
        )
        for path in trained.plots:
            mlflow.log_artifact(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="bench-logging-"))
    # Outside this uv project, as the seed's pip-installed pipeline ran: MLflow then infers the
    # naive logger's requirements in a subprocess instead of asking `uv export`.
    os.chdir(workdir)
    stack = NativeStack(workdir).up()
    try:
        config = TrainConfig(output_dir=workdir / "out")
        data = load_data(config)
        trained = fit(config.model, config, data, workdir / "plots")
        params = config.params() | {"model": str(config.model)} | trained.hyperparams
        tags = run_tags(config, data, config.model)
        target = TrackingTarget(stack.tracking_uri, "benchmark")
        (workdir / "out").mkdir()
        metrics_file = workdir / "out" / "metrics.json"
        metrics_file.write_text("{}")
        timings: dict[str, list[float]] = {"ours": [], "naive": [], "naive-uv": []}
        for i in range(args.runs + 1):  # the first round warms imports and creates experiments
            for name in timings:
                os.chdir(REPO_ROOT if name == "naive-uv" else workdir)
                start = time.perf_counter()
                if name == "ours":
                    log_training_run(
                        target,
                        experiment="bench-ours",
                        run_name=f"ours-{i}",
                        pipeline=trained.pipeline,
                        data=data,
                        params=params,
                        metrics=trained.metrics,
                        tags=tags,
                        artifacts=[*trained.plots, metrics_file],
                    )
                else:
                    naive_log(stack.tracking_uri, "bench-naive", trained, params, tags)
                if i:
                    timings[name].append(time.perf_counter() - start)
        ours, naive, naive_uv = (statistics.median(t) for t in timings.values())
        print(
            f"rows: {len(data.train):,} train / {len(data.test):,} test; "
            f"{len(params)} params, {len(trained.metrics)} metrics, "
            f"{len(trained.plots)} plots; {args.runs} runs each, median"
        )
        print(
            f"ours : {ours:.3f} s per run  (min {min(timings['ours']):.3f}, "
            f"max {max(timings['ours']):.3f})"
        )
        print(
            f"naive: {naive:.3f} s per run  (min {min(timings['naive']):.3f}, "
            f"max {max(timings['naive']):.3f})"
        )
        print(
            "naive, run inside a uv project (MLflow asks `uv export` instead of inferring): "
            f"{naive_uv:.3f} s per run, {naive_uv / ours:.1f}x ours"
        )
        print(
            f"ratio: {naive / ours:.1f}x less with ours; targets <= 1.0 s: "
            f"{'met' if ours <= 1.0 else 'MISSED'}, >= 5x: "
            f"{'met' if naive / ours >= 5 else 'MISSED'}"
        )
        assert LABEL in data.test
    finally:
        stack.down()


if __name__ == "__main__":
    main()

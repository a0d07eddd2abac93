"""Everything that talks to MLflow: where to log, and logging a training run cheaply.

Cost matters because every push logs a run: params and metrics go in batched calls,
the model is logged before the metrics (``log_model`` re-reads every metric already logged, one
request per key) and with explicit pip requirements (inferring them costs ~2 s).
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machine_learning.contract.failures import OUTAGE_TOLERANCE_S, Unreachable

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.pipeline import Pipeline

    from machine_learning.datasets import BattleData

EMBEDDED_URI = "sqlite:///mlflow.db"
COMPOSE_URI = "http://mlflow:5000"
LOCAL_SERVER_URI = "http://localhost:5000"
MODEL_NAME = "model"
PROBE_TIMEOUT_S = 1.0
HEALTH_POLL_S = 0.5
SCHEMA_SAMPLE_ROWS = 1_000
# Types skops (MLflow's default sklearn format) must be told to trust when loading our models.
SKOPS_TRUSTED_TYPES = [
    "machine_learning.features.BattleFeatures",
    "sklearn.tree._tree.Tree",  # random forest node storage; the files are our own
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
]
# Distributions the logged pipeline needs to load; versions are read from this environment.
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "xgboost-cpu", "pandas", "numpy", "scipy")


class TrackingUnavailable(Unreachable):
    """The configured tracking server does not answer and falling back is not allowed."""


class RunInterrupted(RuntimeError):
    """Logging failed after the run was created: its id, so run.json can still name it.

    Outside the failure hierarchy: training's tracking guard turns it into TrackingFailed, so
    it never leaves the command."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"logging run {run_id} failed")
        self.run_id = run_id


@dataclass(frozen=True)
class TrackingTarget:
    """The tracking URI chosen and why, so the choice can be printed once."""

    uri: str
    source: str

    @property
    def browsable(self) -> bool:
        return self.uri.startswith(("http://", "https://"))


@dataclass(frozen=True)
class LoggedRun:
    """Identifiers of a logged run, written to run.json."""

    run_id: str
    experiment_id: str
    model_uri: str
    run_url: str


def server_is_healthy(uri: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``<uri>/health`` answers 200; the health endpoint needs no credentials."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def resolve_tracking_uri(
    cli_uri: str | None,
    env: Mapping[str, str],
    probe: Callable[[str], bool] = server_is_healthy,
    allow_fallback: bool = True,
) -> TrackingTarget:
    """First hit wins: --tracking-uri, MLFLOW_TRACKING_URI, the compose server, a local server,
    the embedded SQLite store. A configured server that does not answer is an error under
    ``CI=true`` (a silent fallback would hide the run from the team) or when the caller changes
    state (``allow_fallback=False``: it would change the wrong store), a warning elsewhere.
    """
    configured = [
        (cli_uri, "--tracking-uri"),
        (env.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI"),
    ]
    for uri, source in configured:
        if not uri:
            continue
        if not uri.startswith(("http://", "https://")) or probe(uri):
            return TrackingTarget(uri, source)
        shown = redact_uri(uri)
        if not allow_fallback or env.get("CI", "").lower() == "true":
            raise TrackingUnavailable(
                f"tracking server {shown} (from {source}) does not answer on /health; "
                "start it or point --tracking-uri at a running server"
            )
        print(
            f"warning: tracking server {shown} (from {source}) does not answer; "
            f"falling back to the embedded store {EMBEDDED_URI}",
            file=sys.stderr,
        )
        return TrackingTarget(EMBEDDED_URI, f"fallback, {shown} unreachable")
    for uri, source in ((COMPOSE_URI, "compose service"), (LOCAL_SERVER_URI, "local server")):
        if probe(uri):
            return TrackingTarget(uri, source)
    return TrackingTarget(EMBEDDED_URI, "embedded default")


def command_target(cli_uri: str | None, allow_fallback: bool = True) -> TrackingTarget:
    """The store a command uses, said once on stderr; a configured server that cannot be used
    is TrackingUnavailable (exit 3)."""
    import os

    target = resolve_tracking_uri(cli_uri, os.environ, allow_fallback=allow_fallback)
    print(f"MLflow tracking URI: {redact_uri(target.uri)} ({target.source})", file=sys.stderr)
    return target


def command_client(cli_uri: str | None, allow_fallback: bool = True) -> MlflowClient:
    """An MLflow client (and the fluent API) on the command's store (see command_target)."""
    import mlflow

    target = command_target(cli_uri, allow_fallback)
    mlflow.set_tracking_uri(target.uri)
    return mlflow.MlflowClient(target.uri)


def serving_client(cli_uri: str | None) -> MlflowClient:
    """The registry a long-running service follows. A configured server that does not answer
    yet is kept rather than swapped for the embedded store, which would never hold the
    champion: the service asks the server again every poll and serves once it is back."""
    import os

    import mlflow

    try:
        target = resolve_tracking_uri(cli_uri, os.environ, allow_fallback=False)
    except TrackingUnavailable:
        uri = cli_uri or os.environ["MLFLOW_TRACKING_URI"]
        target = TrackingTarget(uri, "configured; not answering yet, asked again every poll")
    print(f"MLflow tracking URI: {redact_uri(target.uri)} ({target.source})", file=sys.stderr)
    mlflow.set_tracking_uri(target.uri)
    return mlflow.MlflowClient(target.uri)


def model_requirements() -> list[str]:
    """Pinned requirements of the logged model, from the versions installed here."""
    return [f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def log_training_run(
    target: TrackingTarget,
    *,
    experiment: str,
    run_name: str,
    pipeline: Pipeline,
    data: BattleData,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: list[Path],
    parent_run_id: str | None = None,
) -> LoggedRun:
    """Log one trained pipeline as an MLflow run with its data, model, metrics and files."""
    import mlflow

    mlflow.set_tracking_uri(target.uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    run = mlflow.start_run(
        run_name=run_name, tags=tags, nested=parent_run_id is not None, parent_run_id=parent_run_id
    )
    try:
        with quiet_schema_hints():
            model_info = _log_run_contents(pipeline, data, params, metrics, artifacts)
        mlflow.end_run()
    except Exception as exc:
        end_run_failed(target)
        raise RunInterrupted(run.info.run_id) from exc
    run_id = run.info.run_id
    return LoggedRun(
        run_id, experiment_id, model_info.model_uri, run_url(target, experiment_id, run_id)
    )


def _log_run_contents(
    pipeline: Pipeline,
    data: BattleData,
    params: dict[str, Any],
    metrics: dict[str, float],
    artifacts: list[Path],
):
    """Everything a training run holds, logged into the active run; returns the model's info."""
    import mlflow

    mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})
    train_set, test_set, *recent = _datasets(data)
    mlflow.log_inputs(
        [train_set, test_set, *recent],
        contexts=["training", "testing", *(["testing-recent"] if recent else [])],
        tags_list=[None] * (2 + len(recent)),
    )
    model_info = _log_model(pipeline, data.test)
    train_metrics = {k: v for k, v in metrics.items() if k.startswith("train_")}
    mlflow.log_metrics(train_metrics, model_id=model_info.model_id, dataset=train_set)
    mlflow.log_metrics(
        {k: v for k, v in metrics.items() if k not in train_metrics},
        model_id=model_info.model_id,
        dataset=test_set,
    )
    for path in artifacts:
        mlflow.log_artifact(str(path))
    return model_info


def end_run_failed(target: TrackingTarget, wait_s: float = OUTAGE_TOLERANCE_S) -> None:
    """Mark the active run FAILED as soon as the server answers again, so it is not left RUNNING.

    The error being reported is often the server's absence: when /health does not answer, wait
    for it (at most ``wait_s``, said on stderr), then send the one update with MLflow's short
    retries — the server just answered, and a half-dead one (health up, API failing) must not
    hold the exit for another minute. Still best effort: a server that stays away cannot be
    told anything, and the caller keeps the run id in run.json.
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return
    if target.browsable and not server_is_healthy(target.uri):
        print(
            f"warning: {redact_uri(target.uri)} does not answer; waiting up to {wait_s:.0f} s "
            f"for it to mark run {run.info.run_id} FAILED",
            file=sys.stderr,
            flush=True,
        )
        wait_until_healthy(target.uri, wait_s)
    try:
        with short_retries():
            mlflow.end_run(status="FAILED")  # pops the run first: nothing ends it again at exit
    except Exception as exc:  # the original error is the one worth reporting
        print(
            f"warning: could not mark run {run.info.run_id} FAILED ({type(exc).__name__}); "
            "it stays RUNNING",
            file=sys.stderr,
        )


def wait_until_healthy(uri: str, timeout_s: float, poll_s: float = HEALTH_POLL_S) -> bool:
    """Poll ``<uri>/health`` until it answers (True) or ``timeout_s`` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not server_is_healthy(uri):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


@contextmanager
def short_retries() -> Iterator[None]:
    """MLflow's HTTP retries as every command ships them (MLFLOW_DEFAULTS) for the calls inside,
    the variables restored after: MLflow reads them on every request."""
    import os

    from machine_learning.contract.failures import MLFLOW_DEFAULTS

    names = [name for name in MLFLOW_DEFAULTS if name.startswith("MLFLOW_HTTP_")]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: MLFLOW_DEFAULTS[name] for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_parent_run(
    target: TrackingTarget,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, Any],
) -> tuple[str, str]:
    """Open the parent run of a comparison; returns (run id, experiment id)."""
    import mlflow

    mlflow.set_tracking_uri(target.uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    run = mlflow.start_run(run_name=run_name, tags=tags)
    try:
        mlflow.log_params({key: str(value) for key, value in params.items()})
    except Exception as exc:
        end_run_failed(target)
        raise RunInterrupted(run.info.run_id) from exc
    return run.info.run_id, experiment_id


def finish_parent_run(
    metrics: dict[str, float], tags: dict[str, str], artifacts: list[Path]
) -> None:
    """Record the winner on the active parent run and close it."""
    import mlflow

    mlflow.log_metrics(metrics)
    mlflow.set_tags(tags)
    for path in artifacts:
        mlflow.log_artifact(str(path))
    mlflow.end_run()


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def run_url(target: TrackingTarget, experiment_id: str, run_id: str) -> str:
    """A link to the run in the MLflow UI, when the store is served over HTTP."""
    if not target.browsable:
        return ""
    return f"{target.uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _datasets(data: BattleData) -> list:
    """Training and test sets, and the recent battles held out of the inference log."""
    datasets = [
        _dataset(data.train, f"battles-{data.scenario}-train", data.digest),
        _dataset(data.test, f"battles-{data.scenario}-test", data.test_digest),
    ]
    if data.recent_test is not None:
        datasets.append(
            _dataset(data.recent_test, "battles-inference-log-test", data.recent_test_digest)
        )
    return datasets


def _dataset(table: pd.DataFrame, name: str, digest: str):
    """A pandas dataset with our whole-table digest and a schema read from its first rows.

    MLflow would infer the schema by scanning every row (~0.4 s per 20,000 battles); every
    column has a single dtype, so the first rows say the same. ``schema`` is a cached property:
    filling it in first is what stops the scan.
    """
    import mlflow.data
    from mlflow.models import infer_signature

    from machine_learning.datasets import LABEL

    dataset = mlflow.data.from_pandas(table, targets=LABEL, digest=digest, name=name)
    dataset.__dict__["schema"] = infer_signature(table.head(SCHEMA_SAMPLE_ROWS)).inputs
    return dataset


def model_files_kwargs(pipeline: Pipeline, test: pd.DataFrame) -> dict[str, Any]:
    """What both the local copy and the logged model are saved with, so they cannot differ."""
    from mlflow.models import infer_signature

    import machine_learning
    from machine_learning.datasets import LABEL

    example = test.drop(columns=[LABEL]).head(5)
    with quiet_schema_hints():
        signature = infer_signature(example, pipeline.predict_proba(example))
    return {
        "sk_model": pipeline,
        "signature": signature,
        "input_example": example,
        "pip_requirements": model_requirements(),
        "pyfunc_predict_fn": "predict_proba",
        # skops (MLflow's default format) refuses types it does not know; these are ours.
        "skops_trusted_types": SKOPS_TRUSTED_TYPES,
        # The feature step is our code: ship it so the model loads outside this repository.
        "code_paths": [str(Path(machine_learning.__file__).parent)],
    }


def save_model_copy(pipeline: Pipeline, test: pd.DataFrame, path: Path) -> None:
    """Write the model in MLflow format to ``path`` (replacing an older copy)."""
    import shutil

    import mlflow.sklearn

    shutil.rmtree(path, ignore_errors=True)
    with quiet_schema_hints():
        mlflow.sklearn.save_model(path=str(path), **model_files_kwargs(pipeline, test))


def _log_model(pipeline: Pipeline, test: pd.DataFrame):
    import mlflow.sklearn

    with quiet_schema_hints():
        return mlflow.sklearn.log_model(name=MODEL_NAME, **model_files_kwargs(pipeline, test))


@contextmanager
def quiet_schema_hints() -> Iterator[None]:
    """Base stats are integers that are never missing: MLflow's hint about NaN in ints is moot."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        yield


def redact_uri(uri: str) -> str:
    """The URI without any ``user:password@`` part, safe to print and to write to files."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.username and not parts.password:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))

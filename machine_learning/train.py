"""The training job: simulate battles, fit, evaluate, write local outputs, then track.

Local outputs (metrics.json, run.json, the model, plots) are written before MLflow is touched,
so a tracking failure never loses what was computed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machine_learning.contract.arguments import describe_window
from machine_learning.contract.failures import Unreachable
from machine_learning.contract.metric_names import MAIN_METRIC
from machine_learning.contract.mlflow_names import (
    PARAM_INFERENCE_LOG_BATTLES,
    PARAM_INFERENCE_LOG_SHARE,
    PARAM_INFERENCE_LOG_SINCE,
    PARAM_INFERENCE_LOG_TEST_BATTLES,
    RECENT_TEST_ARTIFACT,
    TAG_DATASET_DIGEST,
    TAG_DATASET_VERSION,
    TAG_INFERENCE_LOG_URL,
    TAG_MODEL,
    TAG_RECENT_TEST_DIGEST,
    TAG_TEST_DIGEST,
    TAG_WINNER,
    TAG_WINNER_RUN_ID,
    experiment_name,
)
from machine_learning.contract.records import write_json_atomic
from machine_learning.contract.run_record import LOGGED, NOT_LOGGED, TRACKING_FAILED, RunRecord
from machine_learning.datasets import DEFAULT_TEST_BATTLES, LABEL, DatasetVersion
from machine_learning.models import ModelName
from machine_learning.recent_battles import DEFAULT_SINCE
from machine_learning.simulator import Scenario

# Logged battles enough to stand for the traffic as a model's reference (the monitor judges a
# window on no fewer than 200 battles either; see write_profile).
REFERENCE_FROM_LOG = 200

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

    from machine_learning.datasets import BattleData
    from machine_learning.tracking import LoggedRun, TrackingTarget


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; logged as the run's params."""

    model: ModelName = ModelName.XGBOOST
    dataset_version: DatasetVersion = DatasetVersion.V2
    scenario_type: Scenario = Scenario.RANDOM
    n_battles: int = 20_000
    n_test: int = DEFAULT_TEST_BATTLES
    seed: int = 42
    tune: bool = False
    n_trials: int = 10
    version: str = "dev"
    experiment: str | None = None
    output_dir: Path = field(default=Path("outputs"))
    # --with-inference-log: the log's URL (never logged as is: it may hold a password), the
    # window read, the share of the training weight its battles carry (None: each weighs 1).
    inference_log: str | None = None
    since: timedelta = DEFAULT_SINCE
    log_share: float | None = None

    def params(self) -> dict[str, Any]:
        """The options as run parameters; the inference log's are data_params' (they need
        the battles read)."""
        unlogged = ("experiment", "output_dir", "inference_log", "since", "log_share")
        return {key: str(value) for key, value in asdict(self).items() if key not in unlogged}

    def data_params(self, data: BattleData) -> dict[str, str]:
        """What the inference log added, when one was read: the window, the logged battles
        trained on and held out, their share of the training weight."""
        if self.inference_log is None:
            return {}
        held_out = len(data.recent_test) if data.recent_test is not None else 0
        return {
            PARAM_INFERENCE_LOG_SINCE: describe_window(self.since),
            PARAM_INFERENCE_LOG_BATTLES: str(data.logged),
            PARAM_INFERENCE_LOG_TEST_BATTLES: str(held_out),
            PARAM_INFERENCE_LOG_SHARE: "unweighted"
            if self.log_share is None
            else str(self.log_share),
        }


@dataclass
class TrainedModel:
    """A fitted pipeline with its metrics and the files written for it."""

    model: ModelName
    pipeline: Pipeline
    metrics: dict[str, float]
    hyperparams: dict[str, Any]
    profile: Path  # profile.json: what the monitor compares this version's live battles with
    plots: list[Path] = field(default_factory=list)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Print a progress line on stderr before a long step and its duration after."""
    print(f"• {message} …", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def load_data(config: TrainConfig) -> BattleData:
    """The simulated battles, plus the inference log's when asked (read first: a log that
    cannot be read fails the command before any work)."""
    from machine_learning.datasets import make_battle_data

    recent = read_log(config) if config.inference_log else None
    with step(
        f"simulating {config.n_battles:,} training and {config.n_test:,} test battles "
        f"({config.scenario_type}, seed {config.seed})"
    ):
        data = make_battle_data(config.n_battles, config.scenario_type, config.seed, config.n_test)
    if recent is None or recent.empty:
        return data
    from machine_learning.recent_battles import with_recent

    return with_recent(data, recent, config.log_share)


def read_log(config: TrainConfig):
    """The logged battles with outcomes in the window, said in one line either way."""
    from machine_learning.contract.inference_log import redacted
    from machine_learning.recent_battles import read_recent

    shown, window = redacted(config.inference_log or ""), describe_window(config.since)
    with step(f"reading the inference log {shown} (battles with outcomes, last {window})"):
        recent = read_recent(config.inference_log or "", config.since)
    if recent.empty:
        print(
            f"  the inference log has no battles with outcomes in the last {window}: "
            "training on simulated battles only",
            file=sys.stderr,
        )
    else:
        kept = "" if recent.scored else " (too few, or one outcome only: not scored)"
        weighted = (
            "each weighing as a simulated battle"
            if config.log_share is None
            else f"weighted to {config.log_share:.0%} of the training weight"
        )
        print(
            f"  {len(recent.train):,} logged battles added to training ({weighted}), "
            f"{len(recent.test):,} held out as the recent test set{kept}",
            file=sys.stderr,
        )
    return recent


def fit(model: ModelName, config: TrainConfig, data: BattleData, plots_dir: Path) -> TrainedModel:
    """Fit one model (with a randomised search when ``tune``), evaluate it, write its plots and
    its reference profile (what ``ci monitor`` compares this version's live battles with)."""
    from machine_learning.evaluate import evaluate, win_probability
    from machine_learning.models import build_pipeline, feature_importance, model_params
    from machine_learning.plots import write_plots

    pipeline = build_pipeline(model, config.dataset_version, config.seed)
    x, y = data.train.drop(columns=[LABEL]), data.train[LABEL]
    weights = {} if data.weights is None else {"model__sample_weight": data.weights}
    if config.tune:
        pipeline = _tune(pipeline, model, config, x, y, weights)
    else:
        with step(f"fitting {model} on {config.dataset_version} features"):
            pipeline.fit(x, y, **weights)
    with step("evaluating on the held-out test battles"):
        metrics = evaluate(pipeline, data.train, data.test, data.recent_test)
        test_probabilities = win_probability(pipeline, data.test)
        plots = write_plots(
            data.test[LABEL].to_numpy(), test_probabilities, feature_importance(pipeline), plots_dir
        )
        recent = None if data.recent_test is None else win_probability(pipeline, data.recent_test)
        profile = write_profile(config, data, test_probabilities, recent, plots_dir)
    return TrainedModel(model, pipeline, metrics, model_params(pipeline), profile, plots)


def write_profile(
    config: TrainConfig,
    data: BattleData,
    test_probabilities: np.ndarray,
    recent_probabilities: np.ndarray | None,
    out_dir: Path,
) -> Path:
    """profile.json beside the plots: bins, shares and a small sample per feature of the
    training battles, and of the predicted probability on the test battles; never raw rows.

    A model trained on at least REFERENCE_FROM_LOG logged battles (with a recent test set) was
    adapted to the traffic that came in: its reference is that traffic (the logged battles, its
    predictions on the recent test set), so the monitor asks whether the world moved again
    since. Against the simulated battles it would still see the drift it was retrained for,
    and ask for a retraining every pass."""
    from machine_learning.monitoring.profile import PROFILE_FILE, build_profile

    battles, probabilities = data.train, test_probabilities
    if data.logged >= REFERENCE_FROM_LOG and recent_probabilities is not None:
        battles, probabilities = data.train.tail(data.logged), recent_probabilities
    profile = build_profile(battles, probabilities, config.dataset_version, seed=config.seed)
    path = out_dir / PROFILE_FILE
    profile.write(path)
    return path


def _tune(
    pipeline: Pipeline, model: ModelName, config: TrainConfig, x, y, weights: dict[str, Any]
) -> Pipeline:
    from sklearn.model_selection import RandomizedSearchCV

    from machine_learning.models import MODELS

    folds = 3
    search = RandomizedSearchCV(
        pipeline,
        MODELS[model].search_space(),
        n_iter=config.n_trials,
        scoring=FoldProgress(config.n_trials * folds, sys.stderr),
        cv=folds,
        random_state=config.seed,
        n_jobs=1,
        refit=True,
    )
    with step(f"tuning {model}: {config.n_trials} trials x {folds} folds"):
        search.fit(x, y, **weights)
    return search.best_estimator_


@dataclass
class FoldProgress:
    """The search's f1 scorer, counting the folds scored on a terminal (``\\r``-updated line);
    silent otherwise, so CI logs keep only the step lines."""

    total: int
    stream: Any
    done: int = 0

    def __call__(self, estimator, x, y) -> float:
        from sklearn.metrics import f1_score

        score = float(f1_score(y, estimator.predict(x), zero_division=0))
        self.done += 1
        if self.stream.isatty():
            end = "\n" if self.done == self.total else ""
            print(f"\r  fold {self.done}/{self.total}: f1 {score:.4f}", end=end, file=self.stream)
            self.stream.flush()
        return score


def run_record(
    config: TrainConfig,
    data: BattleData,
    target: TrackingTarget,
    winner: TrainedModel,
    logged: LoggedRun | None,
    error: str = "",
    run_id: str | None = None,
) -> RunRecord:
    """The content of run.json: how to find this run and its model again."""
    from machine_learning.tracking import redact_uri

    status = LOGGED if logged else (TRACKING_FAILED if error else NOT_LOGGED)
    return RunRecord(
        status=status,
        error=error,
        run_id=logged.run_id if logged else run_id,
        experiment_id=logged.experiment_id if logged else None,
        experiment=config.experiment or experiment_name(config.dataset_version),
        model_uri=logged.model_uri if logged else None,
        run_url=logged.run_url if logged else "",
        tracking_uri=redact_uri(target.uri),
        model=str(winner.model),
        dataset_version=str(config.dataset_version),
        scenario_type=str(config.scenario_type),
        seed=config.seed,
        dataset_digest=data.digest,
        test_digest=data.test_digest,
        local_model=str(config.output_dir / "model"),
    )


class TrackingFailed(Unreachable):
    """Logging to MLflow failed after the local outputs were written (exit 3); the line says
    where they are."""


def save_local(
    config: TrainConfig,
    data: BattleData,
    target: TrackingTarget,
    winner: TrainedModel,
    metrics: dict[str, Any],
) -> None:
    """metrics.json, the model and a provisional run.json, before MLflow is touched."""
    from machine_learning.tracking import save_model_copy

    write_json_atomic(config.output_dir / "metrics.json", metrics)
    recent_test = config.output_dir / RECENT_TEST_ARTIFACT
    recent_test.unlink(missing_ok=True)  # an earlier run's must not be logged with this one
    if data.recent_test is not None:
        data.recent_test.to_parquet(recent_test, index=False)
    with step(f"saving the model to {config.output_dir / 'model'}"):
        save_model_copy(winner.pipeline, data.test, config.output_dir / "model")
    run_record(config, data, target, winner, None).write(config.output_dir / "run.json")


def run_tags(config: TrainConfig, data: BattleData, model: ModelName) -> dict[str, str]:
    from machine_learning.contract.inference_log import redacted
    from machine_learning.contract.provenance import build_context

    tags = build_context(os.environ).as_tags() | {
        TAG_DATASET_DIGEST: data.digest,
        TAG_TEST_DIGEST: data.test_digest,
        TAG_DATASET_VERSION: str(config.dataset_version),
        TAG_MODEL: str(model),
    }
    if config.inference_log is not None:
        tags[TAG_INFERENCE_LOG_URL] = redacted(config.inference_log)
    if data.recent_test is not None:
        tags[TAG_RECENT_TEST_DIGEST] = data.recent_test_digest
    return tags


def run_artifacts(config: TrainConfig, data: BattleData) -> list[Path]:
    """The files every run of this training logs beside its model (a model's plots aside)."""
    recent = [config.output_dir / RECENT_TEST_ARTIFACT] if data.recent_test is not None else []
    return [config.output_dir / "metrics.json", *recent]


def run_name(config: TrainConfig, model: ModelName) -> str:
    """Readable and unique: what was trained, and when (two runs of one commit and seed, tuned
    or not, are told apart in the UI)."""
    tuned = "-tuned" if config.tune else ""
    started = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{model}-{config.dataset_version}-{config.version}-seed{config.seed}{tuned}-{started}"


@contextmanager
def tracking_guard(
    config: TrainConfig, data: BattleData, target: TrackingTarget, winner: TrainedModel
) -> Iterator[None]:
    """Turn any tracking error into TrackingFailed after recording it (and the id of the run,
    when one was created) in run.json."""
    from machine_learning.tracking import RunInterrupted

    try:
        yield
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, RunInterrupted) and exc.__cause__ else exc
        message = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
        run_id = exc.run_id if isinstance(exc, RunInterrupted) else None
        record = run_record(config, data, target, winner, None, error=message, run_id=run_id)
        record.write(config.output_dir / "run.json")
        raise TrackingFailed(
            f"tracking failed: {message}; local outputs kept in {config.output_dir}"
        ) from exc


def log_one(
    config: TrainConfig,
    data: BattleData,
    target: TrackingTarget,
    trained: TrainedModel,
    parent_run_id: str | None = None,
) -> LoggedRun:
    from machine_learning.tracking import log_training_run

    return log_training_run(
        target,
        experiment=config.experiment or experiment_name(config.dataset_version),
        run_name=run_name(config, trained.model),
        pipeline=trained.pipeline,
        data=data,
        params=config.params()
        | config.data_params(data)
        | {"model": str(trained.model)}
        | trained.hyperparams,
        metrics=trained.metrics,
        tags=run_tags(config, data, trained.model),
        artifacts=[*trained.plots, trained.profile, *run_artifacts(config, data)],
        parent_run_id=parent_run_id,
    )


def run_train(config: TrainConfig, target: TrackingTarget) -> dict[str, Any]:
    """The ``train`` command: one model, one run. Returns run.json's content and the metrics."""
    data = load_data(config)
    trained = fit(config.model, config, data, config.output_dir / "plots")
    save_local(config, data, target, trained, trained.metrics)
    with tracking_guard(config, data, target, trained), step("logging the run to MLflow"):
        logged = log_one(config, data, target, trained)
    record = run_record(config, data, target, trained, logged)
    record.write(config.output_dir / "run.json")
    return record.to_dict() | {"metrics": trained.metrics}


def run_compare(config: TrainConfig, target: TrackingTarget) -> dict[str, Any]:
    """The ``compare`` command: every model on the same battles, the best by test f1 wins.

    Recorded as one parent run with a nested run per model; the winner is tagged on both.
    """
    from machine_learning import tracking

    data = load_data(config)
    trained = [fit(model, config, data, config.output_dir / "plots" / model) for model in ModelName]
    winner = max(trained, key=lambda t: t.metrics[MAIN_METRIC])
    comparison = {str(t.model): t.metrics for t in trained}
    save_local(
        config,
        data,
        target,
        winner,
        winner.metrics | {"winner": str(winner.model), "comparison": comparison},
    )
    experiment = config.experiment or experiment_name(config.dataset_version)
    with tracking_guard(config, data, target, winner), step("logging the comparison to MLflow"):
        parent_id, _ = tracking.start_parent_run(
            target,
            experiment,
            f"compare-{config.dataset_version}-{config.version}",
            run_tags(config, data, winner.model),
            config.params() | config.data_params(data),
        )
        try:
            runs = {t.model: log_one(config, data, target, t, parent_id) for t in trained}
        except BaseException:
            # The nested run's failure has waited for the server already (end_run_failed).
            tracking.end_run_failed(target, wait_s=0)
            raise
        tracking.tag_run(runs[winner.model].run_id, {TAG_WINNER: "true"})
        tracking.finish_parent_run(
            {f"{model}_{MAIN_METRIC}": m[MAIN_METRIC] for model, m in comparison.items()},
            {TAG_WINNER: str(winner.model), TAG_WINNER_RUN_ID: runs[winner.model].run_id},
            run_artifacts(config, data),
        )
    logged = runs[winner.model]
    record = replace(run_record(config, data, target, winner, logged), parent_run_id=parent_id)
    record.write(config.output_dir / "run.json")
    return record.to_dict() | {"metrics": winner.metrics, "comparison": comparison}

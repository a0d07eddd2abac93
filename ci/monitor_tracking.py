"""A monitoring pass as an MLflow run: the history of the champion's health, beside its training.

One run per pass in the experiment ``<model>-monitoring``: tagged with the versions it judged,
its decision and why, and where it ran (the ``ci.*`` provenance tags training sets too); the
latest window's figures as metrics, ``v<version>/<metric>`` (a version of the registry is a
number, so the key is one MLflow accepts); monitor.json (and the summary) as artifacts.
Metrics go in batched calls (one request per 1,000), as training's do.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from typing import TYPE_CHECKING

from ci.monitor_record import MONITOR_FILE, MonitorRecord, WindowRecord
from machine_learning.contract.mlflow_names import (
    DECISION_KEEP,
    DECISION_RETRAIN,
    TAG_MONITOR_DECISION,
    TAG_MONITOR_LATEST_STATUS,
    TAG_MONITOR_REASON,
    TAG_MONITOR_VERSIONS,
    monitored_metric,
    monitoring_experiment,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

SUMMARY_FILE = "summary.md"
BATCH = 1_000  # MLflow's limit of metrics per log_batch call
TAG_LIMIT = 5_000  # characters MLflow keeps of a tag value (8,000 on recent servers)


def judged_versions(record: MonitorRecord) -> list[str]:
    """Every version judged in any window, in the registry's order."""
    versions = {v.judgement.version for w in record.windows for v in w.versions}
    return sorted(versions, key=lambda v: (len(v), v))


def pass_tags(record: MonitorRecord) -> dict[str, str]:
    """What the run is about: the versions, the decision, why, the latest window's status."""
    from machine_learning.contract.provenance import build_context

    latest = record.windows[-1].status if record.windows else "none"
    return build_context(os.environ).as_tags() | {
        TAG_MONITOR_VERSIONS: ",".join(judged_versions(record))[:TAG_LIMIT],
        TAG_MONITOR_DECISION: DECISION_RETRAIN if record.decision.retrain else DECISION_KEEP,
        TAG_MONITOR_REASON: record.decision.reason[:TAG_LIMIT],
        TAG_MONITOR_LATEST_STATUS: str(latest),
    }


def latest_metrics(window: WindowRecord) -> dict[str, float]:
    """The latest window's figures per version, keyed ``v<version>/<metric>``."""
    values: dict[str, float] = {}
    for entry in window.versions:
        measured = entry.measurement
        figures = measured.metrics() | {
            "n_rows": measured.n_rows,
            "logged_rows": window.logged_rows.get(measured.version, measured.n_rows),
            "n_outcomes": measured.quality.n_outcomes if measured.quality else 0,
            "outcome_share": measured.quality.outcome_share if measured.quality else 0.0,
            "breaches": len(entry.judgement.breaches),
        }
        values |= {monitored_metric(measured.version, k): float(v) for k, v in figures.items()}
    return values


def log_pass(client: MlflowClient, record: MonitorRecord, record_text: str, summary: str) -> str:
    """Log the pass as a finished run (FAILED if logging broke half-way); its run id."""
    from mlflow.entities import Metric

    experiment_id = _experiment_id(client, monitoring_experiment(record.model_name))
    at = int(datetime.fromisoformat(record.generated_at).timestamp() * 1000)
    run = client.create_run(
        experiment_id, start_time=at, tags=pass_tags(record), run_name=f"monitor-{at}"
    )
    run_id = run.info.run_id
    try:
        figures = latest_metrics(record.windows[-1]) if record.windows else {}
        figures["breaching_windows"] = float(record.decision.breaching_windows)
        metrics = [Metric(key, value, at, 0) for key, value in sorted(figures.items())]
        for first in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[first : first + BATCH])
        client.log_text(run_id, record_text, MONITOR_FILE)
        client.log_text(run_id, summary, SUMMARY_FILE)
    except BaseException:
        _end_failed(client, run_id)
        raise
    client.set_terminated(run_id)
    return run_id


def _experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created on first use (or by a concurrent pass meanwhile)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _end_failed(client: MlflowClient, run_id: str) -> None:
    """Best effort: the error being raised is the one worth reporting."""
    with contextlib.suppress(Exception):  # the server that just failed may still be failing
        client.set_terminated(run_id, "FAILED")

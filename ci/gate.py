"""The metric gate: the candidate against the thresholds and against the champion, fairly.

The champion is re-scored on exactly the candidate's test battles (rebuilt from the fixed test
seed and checked against the digest the candidate logged), so code or data changes between the
two never make the comparison unfair. Differences come with a paired bootstrap 95% interval.

A run trained with the inference log also logged its second test set, the recent battles held
out of the log (``RECENT_TEST_ARTIFACT``, checked against its digest tag): both models are
scored on it too, as ``recent_test_*`` rows. Those rows are judged only when a threshold names
them (``gate.recent_test_f1``); otherwise they are ``reported``, shown and never failing: the
gate's floors are on the simulated test set, which every run shares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ci import bootstrap
from ci.registry import load_thresholds, version_by_alias
from ci.verdict import judge, overall
from machine_learning.contract.failures import BadInput, first_line
from machine_learning.contract.gate_record import (
    CandidateSummary,
    ChampionSummary,
    GateRecord,
    MetricRow,
    Verdict,
)
from machine_learning.contract.metric_names import MAIN_METRIC, METRIC_NAMES, RECENT_TEST_PREFIX
from machine_learning.contract.mlflow_names import (
    CHAMPION,
    GATE_PREFIX,
    PARAM_DATASET_VERSION,
    PARAM_MODEL,
    PARAM_N_BATTLES,
    PARAM_N_TEST,
    PARAM_SCENARIO_TYPE,
    RECENT_TEST_ARTIFACT,
    TAG_BRANCH,
    TAG_DATASET_DIGEST,
    TAG_GATE_CHAMPION_VERSION,
    TAG_GATE_VERDICT,
    TAG_GIT_SHA,
    TAG_PR_NUMBER,
    TAG_RECENT_TEST_DIGEST,
    TAG_RUN_URL,
    TAG_TEST_DIGEST,
)
from machine_learning.datasets import LABEL

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from ci.bootstrap import Comparison
    from ci.thresholds import Threshold
    from machine_learning.contract.run_record import RunRecord

    Scorer = Callable[[pd.DataFrame], np.ndarray]


class GateError(BadInput):
    """The gate could not be evaluated (as opposed to a candidate that fails it)."""


@dataclass(frozen=True)
class Candidate:
    """The run under test, as read from MLflow (and its local model copy, when present)."""

    run_id: str
    model_uri: str
    local_model: Path | None
    params: dict[str, str]
    tags: dict[str, str]
    experiment_id: str = ""
    run_url: str = ""


def load_candidate(client: MlflowClient, run_id: str, record: RunRecord | None) -> Candidate:
    """The candidate run, with what the training job's ``run.json`` adds when there is one."""
    run = _get_run(client, run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    model_uri = (record and record.model_uri) or (
        f"models:/{outputs[0].model_id}" if outputs else ""
    )
    if not model_uri:
        raise GateError(f"run {run_id} has no logged model")
    local = Path(record.local_model) if record and record.local_model else None
    return Candidate(
        run_id=run_id,
        model_uri=model_uri,
        local_model=local if local and local.is_dir() else None,
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        experiment_id=run.info.experiment_id,
        run_url=record.run_url if record else "",
    )


def _get_run(client: MlflowClient, run_id: str):
    """The run, or GateError when the server says there is no such (active) run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise GateError(f"run {run_id} does not exist on the tracking server") from None
        raise
    if run.info.lifecycle_stage != "active":
        raise GateError(f"run {run_id} is deleted; train again or restore it")
    return run


def test_battles(candidate: Candidate) -> pd.DataFrame:
    """The candidate's held-out battles, rebuilt and checked against its logged digest."""
    from machine_learning.datasets import held_out_battles, table_digest
    from machine_learning.simulator import Scenario

    params = candidate.params
    try:
        table = held_out_battles(int(params[PARAM_N_TEST]), Scenario(params[PARAM_SCENARIO_TYPE]))
    except (KeyError, ValueError) as exc:
        message = f"run {candidate.run_id} lacks the params to rebuild its test set: {exc}"
        raise GateError(message) from None
    expected, rebuilt = candidate.tags.get(TAG_TEST_DIGEST), table_digest(table)
    if rebuilt != expected:
        raise GateError(
            f"the rebuilt test set has digest {rebuilt}, the run logged "
            f"{expected}: the simulator changed since that run"
        )
    return table


def recent_battles(client: MlflowClient, candidate: Candidate) -> pd.DataFrame | None:
    """The recent battles held out of the inference log, as the candidate logged them (checked
    against its digest tag); None for a run trained without the log."""
    import tempfile

    import pandas as pd
    from mlflow.exceptions import MlflowException

    from machine_learning.datasets import table_digest

    expected = candidate.tags.get(TAG_RECENT_TEST_DIGEST)
    if not expected:
        return None
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(candidate.run_id, RECENT_TEST_ARTIFACT, folder)
            table = pd.read_parquet(path)
        except (MlflowException, OSError, ValueError) as exc:
            raise GateError(
                f"run {candidate.run_id} names a recent test set but its "
                f"{RECENT_TEST_ARTIFACT} cannot be read: {first_line(exc)}"
            ) from None
    if table_digest(table) != expected:
        raise GateError(
            f"run {candidate.run_id}'s {RECENT_TEST_ARTIFACT} has digest {table_digest(table)}, "
            f"the run logged {expected}: the artifact was changed"
        )
    return table


def scorer(model_uri: str) -> Scorer:
    """The model behind ``model_uri``, loaded once: P(side A wins) for any battle table."""
    import mlflow.pyfunc
    import numpy as np

    model = mlflow.pyfunc.load_model(model_uri)
    return lambda table: np.asarray(model.predict(table.drop(columns=[LABEL])))[:, 1]


def win_probability(model_uri: str, table: pd.DataFrame) -> np.ndarray:
    return scorer(model_uri)(table)


def evaluate_gate(
    client: MlflowClient,
    candidate: Candidate,
    model_name: str,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
) -> GateRecord:
    """Everything gate.json holds: per-metric values, intervals, thresholds and verdicts."""
    thresholds, source = load_thresholds(client, model_name)
    table, recent = test_battles(candidate), recent_battles(client, candidate)
    ours = scorer(str(candidate.local_model or candidate.model_uri))
    champion = version_by_alias(client, model_name, CHAMPION)
    theirs = scorer(f"models:/{model_name}@{CHAMPION}") if champion is not None else None
    simulated = [rule for rule in thresholds if not rule.metric.startswith(RECENT_TEST_PREFIX)]
    rows = _scored_rows(simulated, "test_", table, ours, theirs, resamples)
    if recent is not None:
        rules = _recent_rules([rule for rule in thresholds if rule not in simulated])
        rows += _scored_rows(rules, RECENT_TEST_PREFIX, recent, ours, theirs, resamples)
    return GateRecord(
        verdict=overall([row.verdict for row in rows]),
        thresholds_source=source,
        resamples=resamples if champion else 0,
        candidate=_candidate_summary(candidate, len(table), 0 if recent is None else len(recent)),
        champion=_champion_summary(client, champion) if champion else None,
        metrics=rows,
    )


def _scored_rows(
    rules: list[Threshold | str],
    prefix: str,
    table: pd.DataFrame,
    ours: Scorer,
    theirs: Scorer | None,
    resamples: int,
) -> list[MetricRow]:
    """One row per rule (a metric name alone: reported, not judged), both models scored on
    ``table``, main metric first."""
    y, probabilities = table[LABEL].to_numpy(), ours(table)
    comparisons = None
    if theirs is not None:
        comparisons = bootstrap.compare(y, probabilities, theirs(table), resamples)
    points = bootstrap.point_metrics(y, probabilities)
    main = f"{prefix}{MAIN_METRIC.removeprefix('test_')}"
    rules = sorted(rules, key=lambda rule: (_metric_of(rule) != main, _metric_of(rule)))
    return [_metric_row(rule, points, comparisons, prefix) for rule in rules]


def _recent_rules(named: list[Threshold]) -> list[Threshold | str]:
    """Every recent-test metric: its threshold when one names it, else its name (reported)."""
    by_metric = {rule.metric: rule for rule in named}
    metrics = [f"{RECENT_TEST_PREFIX}{name}" for name in METRIC_NAMES]
    return [by_metric.get(metric, metric) for metric in metrics]


def _metric_of(rule: Threshold | str) -> str:
    return rule if isinstance(rule, str) else rule.metric


def _metric_row(
    rule: Threshold | str,
    points: dict[str, float],
    comparisons: dict[str, Comparison] | None,
    prefix: str = "test_",
) -> MetricRow:
    name = _metric_of(rule).removeprefix(prefix)
    if name not in points:
        raise GateError(
            f"threshold gate.{_metric_of(rule)}: the gate knows no metric {name!r}; "
            f"use one of {', '.join(prefix + m for m in points)}"
        )
    c = comparisons[name] if comparisons else None
    if isinstance(rule, str):
        return _reported_row(rule, points[name], c)
    verdict = judge(rule, points[name], c.champion if c else None, c.interval if c else None)
    return MetricRow(
        metric=rule.metric,
        candidate=points[name],
        champion=c.champion if c else None,
        delta=c.delta if c else None,
        interval=c.interval if c else None,
        threshold=rule.describe(),
        spec=json.loads(rule.to_json()),
        verdict=verdict.verdict,
        reason=verdict.reason,
    )


def _reported_row(metric: str, value: float, c: Comparison | None) -> MetricRow:
    """A recent-test metric no threshold names: its values beside the champion's, no verdict."""
    return MetricRow(
        metric=metric,
        candidate=value,
        champion=c.champion if c else None,
        delta=c.delta if c else None,
        interval=c.interval if c else None,
        threshold="none (reported only)",
        verdict=Verdict.REPORTED,
        reason="no threshold names it: shown, not judged",
    )


def _candidate_summary(candidate: Candidate, n_test: int, n_recent_test: int) -> CandidateSummary:
    tags, params = candidate.tags, candidate.params
    return CandidateSummary(
        run_id=candidate.run_id,
        experiment_id=candidate.experiment_id,
        model_uri=candidate.model_uri,
        run_url=candidate.run_url,
        git_sha=tags.get(TAG_GIT_SHA, ""),
        branch=tags.get(TAG_BRANCH, ""),
        pr_number=tags.get(TAG_PR_NUMBER, ""),
        workflow_run_url=tags.get(TAG_RUN_URL, ""),
        model=params.get(PARAM_MODEL, ""),
        dataset_version=params.get(PARAM_DATASET_VERSION, ""),
        dataset_digest=tags.get(TAG_DATASET_DIGEST, ""),
        test_digest=tags.get(TAG_TEST_DIGEST, ""),
        n_train=params.get(PARAM_N_BATTLES, ""),
        n_test=n_test,
        n_recent_test=n_recent_test,
        params=params,
    )


def _champion_summary(client: MlflowClient, version) -> ChampionSummary:
    run = client.get_run(version.run_id) if version.run_id else None
    return ChampionSummary(
        version=str(version.version),
        run_id=version.run_id or "",
        git_sha=(run.data.tags.get(TAG_GIT_SHA, "") if run else ""),
        params=dict(run.data.params) if run else {},
    )


def record_verdict(client: MlflowClient, run_id: str, result: GateRecord) -> None:
    """Log the verdict on the candidate run: tags for verdicts, metrics for champion and deltas.

    Called before gate.json is written: a verdict MLflow did not record is never acted on.
    """
    from mlflow.entities import Metric, RunTag

    tags = [RunTag(TAG_GATE_VERDICT, str(result.verdict))]
    tags += [RunTag(f"{GATE_PREFIX}{row.metric}", str(row.verdict)) for row in result.metrics]
    if result.champion:
        tags.append(RunTag(TAG_GATE_CHAMPION_VERSION, result.champion.version))
    metrics = []
    for row in result.metrics:
        if row.champion is not None and row.delta is not None:
            metrics.append(Metric(f"champion_{row.metric}", row.champion, 0, 0))
            metrics.append(Metric(f"delta_{row.metric}", row.delta, 0, 0))
    client.log_batch(run_id, metrics=metrics, tags=tags)


def annotations(result: GateRecord) -> list[str]:
    """GitHub workflow commands: an error per failed metric, a notice with the verdict."""
    lines = [
        f"::error title=Gate: {row.metric}::{row.reason}"
        for row in result.metrics
        if row.verdict == Verdict.FAIL
    ]
    versus = (
        f"champion v{result.champion.version}"
        if result.champion
        else "no champion yet (thresholds only)"
    )
    lines.append(f"::notice title=Gate {result.verdict}::against {versus}")
    return lines

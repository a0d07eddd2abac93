"""The report, rendered from fixed gate results and compared with reviewed golden files.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 uv run pytest tests/unit/test_report.py``
and review the diff of tests/golden/ like code.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

import pytest

from ci.report import COMMENT_LIMIT, history_section, render
from ci.verdict import overall
from machine_learning.contract.gate_record import (
    CandidateSummary,
    ChampionSummary,
    GateRecord,
    MetricRow,
    Verdict,
)
from tests.conftest import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden"
PARAMS = {
    "model": "xgboost",
    "dataset_version": "v2",
    "scenario_type": "random",
    "n_battles": "20000",
    "n_test": "5000",
    "seed": "42",
    "n_estimators": "200",
    "max_depth": "6",
    "learning_rate": "0.1",
}
RULES = [
    ("test_f1", "≥ 0.85, tolerance 0.005"),
    ("test_accuracy", "≥ 0.85, tolerance 0.005"),
    ("test_log_loss", "≤ 0.35, tolerance 5%"),
    ("test_roc_auc", "≥ 0.9, tolerance 0.003"),
]


def gate(values, champion=None, verdicts=None, reasons=None, interval=0.004, pr="12"):
    rows = []
    for (metric, threshold), value in zip(RULES, values, strict=True):
        theirs = champion[metric] if champion else None
        delta = None if theirs is None else value - theirs
        rows.append(
            MetricRow(
                metric=metric,
                candidate=value,
                champion=theirs,
                delta=delta,
                interval=None if delta is None else (delta - interval, delta + interval),
                threshold=threshold,
                verdict=Verdict((verdicts or {}).get(metric, "pass")),
                reason=(reasons or {}).get(metric, "meets the threshold"),
            )
        )
    return GateRecord(
        verdict=overall([row.verdict for row in rows]),
        thresholds_source="registered model pokemon-battle tags",
        resamples=1000 if champion else 0,
        candidate=CandidateSummary(
            run_id="4f1c0ffee0d64b8f9d0e5a7a2b3c4d5e",
            model_uri="models:/m-1",
            run_url="https://mlflow.example.com/#/experiments/1/runs/4f1c0ffee0d6",
            experiment_id="1",
            git_sha="9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807",
            branch="feature/type-chart",
            pr_number=pr,
            workflow_run_url="https://github.com/octo/battles/actions/runs/777",
            model="xgboost",
            dataset_version="v2",
            dataset_digest="f70d0cd487c2bc52",
            test_digest="15e45f6e8f20ff9e",
            n_train="20000",
            n_test=5000,
            params=PARAMS,
        ),
        champion=None
        if champion is None
        else ChampionSummary(
            version="3",
            run_id="0123456789abcdef0123456789abcdef",
            git_sha="1111111111111111111111111111111111111111",
            params=PARAMS | {"n_battles": "10000", "max_depth": "4"},
        ),
        metrics=rows,
    )


HISTORY = [
    {
        "run_id": "4f1c0ffee0d64b8f9d0e5a7a2b3c4d5e",
        "sha": "9e8d7c6",
        "model": "xgboost",
        "dataset": "v2",
        "time": "2026-11-26 12:40",
        "verdict": "",
        "test_f1": 0.9266,
        "test_accuracy": 0.9268,
        "test_roc_auc": 0.9809,
    },
    {
        "run_id": "aaaa1111bbbb2222cccc3333dddd4444",
        "sha": "9e8d7c6",  # a re-run of the same commit (another model): rows must differ
        "model": "random_forest",
        "dataset": "v2",
        "time": "2026-11-26 11:02",
        "verdict": "pass",
        "test_f1": 0.9231,
        "test_accuracy": 0.9230,
        "test_roc_auc": 0.9790,
    },
    {
        "run_id": "bbbb5555cccc6666dddd7777eeee8888",
        "sha": "0a1b2c3",
        "model": "xgboost",
        "dataset": "v1",
        "time": "2026-11-25 17:45",
        "verdict": "fail",
        "test_f1": 0.8146,
        "test_accuracy": 0.8136,
        "test_roc_auc": 0.8984,
    },
]
CHAMPION = {
    "test_f1": 0.9190,
    "test_accuracy": 0.9188,
    "test_log_loss": 0.2010,
    "test_roc_auc": 0.9770,
}

SCENARIOS = {
    "first_run": (gate([0.9266, 0.9268, 0.1794, 0.9809], pr=""), []),
    "better": (
        gate(
            [0.9266, 0.9268, 0.1794, 0.9809],
            CHAMPION,
            verdicts={"test_roc_auc": "within noise"},
            reasons={m: "better than the champion" for m, _ in RULES},
        ),
        HISTORY,
    ),
    "worse": (
        gate(
            [0.8951, 0.8950, 0.2550, 0.9601],
            CHAMPION,
            verdicts={
                "test_f1": "fail",
                "test_accuracy": "fail",
                "test_log_loss": "fail",
                "test_roc_auc": "fail",
            },
            reasons={
                "test_f1": "worse than the champion by 0.0239 (tolerance 0.0050); "
                "the 95% interval excludes 0"
            },
        ),
        HISTORY,
    ),
    "noisy": (
        gate(
            [0.9195, 0.9190, 0.2004, 0.9772],
            CHAMPION,
            interval=0.006,
            verdicts={m: "within noise" for m, _ in RULES},
        ),
        HISTORY[:2],
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_report_matches_its_golden_file(scenario):
    text = render(*SCENARIOS[scenario])
    path = GOLDEN / f"report_{scenario}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_the_verdict_line_says_pass_or_fail_and_what_was_compared():
    assert render(*SCENARIOS["better"]).startswith(
        "### ✅ Gate passed: `9e8d7c6` · xgboost · dataset v2 against champion v3"
    )
    assert render(*SCENARIOS["worse"]).startswith("### ❌ Gate failed")
    assert "no champion yet" in render(*SCENARIOS["first_run"]).splitlines()[0]


def test_an_oversized_report_trims_history_first_then_details():
    big = SCENARIOS["better"][0]
    history = [dict(HISTORY[1], run_id=f"r{i}", sha=f"{i:07d}") for i in range(1000)]
    full = render(big, history, limit=10**9)
    assert len(full) > COMMENT_LIMIT
    trimmed = render(big, history)
    assert len(trimmed) <= COMMENT_LIMIT
    assert "<details><summary>Parameters" in trimmed  # details kept, history cut
    assert "earlier runs left out" in trimmed

    params = {f"p{i}": "x" * 400 for i in range(200)}
    big = replace(big, candidate=replace(big.candidate, params=params))
    trimmed = render(big, history)
    assert len(trimmed) <= COMMENT_LIMIT
    assert "<details>" not in trimmed and "the details (parameters, dataset, links)" in trimmed
    assert trimmed.startswith("### ✅ Gate passed")


def test_local_mlflow_links_are_left_out():
    better = SCENARIOS["better"][0]
    url = "http://127.0.0.1:5000/#/experiments/1/runs/x"
    local = replace(better, candidate=replace(better.candidate, run_url=url))
    assert "[MLflow run]" not in render(local, [])
    assert "[MLflow run](https://mlflow.example.com" in render(*SCENARIOS["better"])


def test_gate_json_round_trips_through_its_record(tmp_path):
    for record, _ in SCENARIOS.values():
        record.write(tmp_path / "gate.json")
        assert GateRecord.read(tmp_path / "gate.json") == record


def test_runs_of_one_commit_are_told_apart_in_the_table_and_the_chart():
    text = history_section(gate([0.9266, 0.9268, 0.1794, 0.9809]), HISTORY)
    same_commit = [line for line in text.splitlines() if "`9e8d7c6`" in line]
    assert len(same_commit) == 2 and len(set(same_commit)) == 2
    assert "`aaaa1111`" in same_commit[1] and "random_forest" in same_commit[1]
    labels = re.search(r"x-axis \[(.*)\]", text).group(1).split(", ")
    assert len(set(labels)) == len(labels) == 3
    assert labels[0] == '"#1 0a1b2c3"'  # oldest first

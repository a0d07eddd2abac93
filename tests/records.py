"""Valid records of every boundary format, built with the dataclasses their writers use."""

from __future__ import annotations

from machine_learning.contract.gate_record import (
    CandidateSummary,
    ChampionSummary,
    GateRecord,
    MetricRow,
    Verdict,
)
from machine_learning.contract.run_record import RunRecord

SHA = "c" * 40
RUN_ID = "0123456789abcdef0123456789abcdef"


def sample_gate(run_id: str = RUN_ID, champion: str | None = None, verdict: str = "pass"):
    """A gate.json of ``run_id`` judged against ``champion`` (a version, or none yet)."""
    return GateRecord(
        verdict=Verdict(verdict),
        thresholds_source="test",
        resamples=0,
        candidate=CandidateSummary(
            run_id=run_id,
            model_uri=f"runs:/{run_id}/model",
            n_test=100,
            git_sha=SHA,
            branch="main",
            experiment_id="0",
        ),
        champion=ChampionSummary(version=champion) if champion else None,
        metrics=[
            MetricRow(
                metric="test_f1",
                candidate=0.9,
                verdict=Verdict(verdict),
                reason="test",
                threshold="≥ 0.85",
            )
        ],
    )


def sample_run(run_id: str | None = RUN_ID) -> RunRecord:
    """A run.json as the training CLI writes it after logging ``run_id``."""
    return RunRecord(
        status="logged" if run_id else "tracking failed",
        model="xgboost",
        dataset_version="v2",
        scenario_type="random",
        seed=1,
        dataset_digest="d",
        test_digest="t",
        local_model="outputs/model",
        tracking_uri="http://127.0.0.1:5000",
        experiment="pokemon-battle-v2",
        run_id=run_id,
    )

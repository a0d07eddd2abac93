"""``gate.json``: the gate's verdict, written by ``ci gate`` and read by ``report`` and ``promote``.

The verdict is recorded on the MLflow run before this file is written, so a ``pass`` here is
always one MLflow knows about; ``champion.version`` is the champion the candidate was judged
against, which promotion compares with the registry before it moves anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from machine_learning.contract.records import JsonRecord
from machine_learning.contract.run_record import is_run_id


class Verdict(StrEnum):
    """A metric's verdict (``ci.verdict.judge``), and the gate's (pass or fail only)."""

    PASS = "pass"
    FAIL = "fail"
    NOISE = "within noise"
    REPORTED = "reported"  # a recent-log metric no threshold names: shown, never judged


@dataclass(frozen=True)
class MetricRow(JsonRecord):
    """One metric: the candidate's value, the champion's on the same battles, the verdict."""

    metric: str
    candidate: float
    verdict: Verdict
    reason: str
    threshold: str
    champion: float | None = None
    delta: float | None = None
    interval: tuple[float, float] | None = None
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateSummary(JsonRecord):
    """The run under test, with what the report shows and promotion tags the version with."""

    run_id: str
    model_uri: str
    n_test: int
    experiment_id: str = ""
    run_url: str = ""
    git_sha: str = ""
    branch: str = ""
    pr_number: str = ""
    workflow_run_url: str = ""
    model: str = ""
    dataset_version: str = ""
    dataset_digest: str = ""
    test_digest: str = ""
    n_train: str = ""
    n_recent_test: int = 0  # recent battles held out of the inference log, when trained with it
    params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_run_id(self.run_id):
            raise ValueError(f"candidate.run_id {self.run_id[:40]!r} is not an MLflow run id")
        if self.pr_number and not self.pr_number.isdigit():
            raise ValueError(f"candidate.pr_number {self.pr_number[:20]!r} is not a number")


@dataclass(frozen=True)
class ChampionSummary(JsonRecord):
    """The champion version the candidate was judged against."""

    version: str
    run_id: str = ""
    git_sha: str = ""
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateRecord(JsonRecord):
    verdict: Verdict
    thresholds_source: str
    resamples: int
    candidate: CandidateSummary
    metrics: list[MetricRow]
    champion: ChampionSummary | None = None

    def __post_init__(self) -> None:
        if self.verdict not in (Verdict.PASS, Verdict.FAIL):
            raise ValueError(f"verdict must be pass or fail, got {self.verdict!r}")
        if not self.metrics:
            raise ValueError("metrics is empty: a gate with no thresholds decides nothing")
        failed = any(row.verdict == Verdict.FAIL for row in self.metrics)
        if failed != (self.verdict == Verdict.FAIL):
            raise ValueError(f"verdict {self.verdict} contradicts the per-metric verdicts")

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.PASS

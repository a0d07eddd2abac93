"""``run.json``: how the gate and promotion find a training run and its model again."""

from __future__ import annotations

from dataclasses import dataclass

from machine_learning.contract.records import JsonRecord

LOGGED, NOT_LOGGED, TRACKING_FAILED = "logged", "not logged yet", "tracking failed"


@dataclass(frozen=True)
class RunRecord(JsonRecord):
    """Written by ``train``/``compare`` (first before MLflow is contacted, then after), read by
    ``ci gate`` and ``ci promote``. ``run_id`` is kept even when logging failed half-way."""

    status: str
    model: str
    dataset_version: str
    scenario_type: str
    seed: int
    dataset_digest: str
    test_digest: str
    local_model: str
    tracking_uri: str
    experiment: str
    error: str = ""
    run_id: str | None = None
    experiment_id: str | None = None
    model_uri: str | None = None
    run_url: str = ""
    parent_run_id: str | None = None

    def __post_init__(self) -> None:
        if self.status not in (LOGGED, NOT_LOGGED, TRACKING_FAILED):
            raise ValueError(f"status {self.status!r} is not one the training CLI writes")
        if self.run_id is not None and not is_run_id(self.run_id):
            raise ValueError(f"run_id {self.run_id[:40]!r} is not an MLflow run id")


def is_run_id(text: str) -> bool:
    """MLflow run ids are 32 lowercase hex digits; anything else is refused before a query."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)

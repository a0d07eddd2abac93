"""``manifest.json``: what an MLflow state snapshot holds, written by ``ci state save`` and read
back (validated) by ``ci state restore`` before anything is restored.

The snapshot travels between workflow runs in the Actions cache (or an artifact), so the next
run reads a file another run wrote: through this record's loader only.
"""

from __future__ import annotations

from dataclasses import dataclass

from machine_learning.contract.records import JsonRecord
from machine_learning.contract.run_record import is_run_id

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest(JsonRecord):
    """What a snapshot holds; read back (validated) before anything is restored."""

    saved_at: str
    branch: str
    mlflow_version: str
    kept_runs: list[str]
    deleted_runs: int
    artifact_files: int

    def __post_init__(self) -> None:
        bad = [run for run in self.kept_runs if not is_run_id(run)]
        if bad:
            raise ValueError(f"kept_runs holds {bad[0][:40]!r}, not an MLflow run id")

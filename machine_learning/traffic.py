"""The traffic generator: battles drawn as training draws them, asked of a running predictor,
and with outcomes fought by the simulator and reported back, so the inference log fills as it
would in production (for demos, the monitor's tests, retraining).

Battles are drawn and labelled by ``datasets.battles`` (the same scenario drawing and simulator
as the training labels), sent as raw rows ``REQUEST_BATTLES`` at a time, and the outcomes are
posted only once every battle was asked: the predictor writes its log off the request path, so
an outcome posted at once could arrive before its battle. Outcomes the log does not know yet are
posted again a few times (``UNKNOWN_RETRIES``) before they are counted as unknown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from machine_learning.contract.failures import BadInput, Unreachable
from machine_learning.contract.prediction import OUTCOMES_TOKEN_VARIABLE
from machine_learning.datasets import LABEL, RAW_COLUMNS, battles
from machine_learning.serving.client import PredictorClient

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.simulator import Scenario

# Battles per request: a client batching what it has (the service takes up to MAX_BATTLES; a
# request of 500 is scored in ~10 ms, so the generator is not what a benchmark measures).
REQUEST_BATTLES = 500
UNKNOWN_RETRIES = 5
RETRY_PAUSE_S = 1.0


class PredictorFailed(Unreachable):
    """The predictor does not answer, or answers with a server error (exit 3)."""


@dataclass
class TrafficSummary:
    """What was asked, and what became of the outcomes posted."""

    url: str
    asked: int = 0
    versions: set[str] = field(default_factory=set)
    posted: int = 0
    recorded: int = 0
    already_recorded: int = 0
    unknown: list[str] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)

    def line(self, outcomes: bool) -> str:
        """The one-line summary the command prints."""
        versions = ", ".join(sorted(self.versions)) or "unregistered"
        asked = f"{self.asked:,} battles asked of {self.url} (model version {versions})"
        if not outcomes:
            return f"{asked}; no outcomes posted"
        return (
            f"{asked}; {self.posted:,} outcomes posted: {self.recorded:,} recorded, "
            f"{self.already_recorded:,} already recorded, {len(self.unknown):,} unknown, "
            f"{len(self.conflicting):,} conflicting"
        )


def run_traffic(
    url: str,
    n: int,
    scenario: Scenario,
    seed: int,
    outcomes: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> TrafficSummary:
    """Ask the predictor about ``n`` battles; with ``outcomes``, report who won each."""
    service = PredictorClient(url, outcomes_token=os.environ.get(OUTCOMES_TOKEN_VARIABLE) or None)
    table = battles(n, scenario, seed)
    summary = TrafficSummary(url)
    ids: list[str] = []
    for chunk in _chunks(table, REQUEST_BATTLES):
        answer = ask(service, chunk)
        summary.asked += len(chunk)
        summary.versions.add(answer.model_version or "")
        summary.versions.discard("")
        if outcomes:
            ids += battle_ids(answer, url)
    if outcomes:
        winners = ["a" if won else "b" for won in table[LABEL]]
        report(service, list(zip(ids, winners, strict=True)), summary, sleep)
    return summary


def ask(service: PredictorClient, chunk: pd.DataFrame):
    """``POST /v1/predict`` of raw battle rows; the validated answer."""
    from pydantic import ValidationError

    from machine_learning.contract.prediction import PredictResponse

    rows = chunk[list(RAW_COLUMNS)].to_dict("records")
    body = _answered(service, "/predict", {"battles": rows})
    try:
        return PredictResponse.model_validate(body)
    except ValidationError as error:
        raise PredictorFailed(
            f"the predictor at {service.url} answered something that is not a prediction: "
            f"{error.errors()[0]['msg']}"
        ) from None


def battle_ids(answer, url: str) -> list[str]:
    """The ids the predictor's log gave the battles; none means it keeps no log."""
    ids = [prediction.get("battle_id") for prediction in answer.predictions]
    if not all(ids):
        raise BadInput(
            f"the predictor at {url} keeps no inference log (its answers carry no battle_id), "
            "so outcomes cannot be posted: start it with serve --inference-log URL"
        )
    return ids  # type: ignore[return-value]


def report(
    service: PredictorClient,
    results: list[tuple[str, str]],
    summary: TrafficSummary,
    sleep: Callable[[float], None],
) -> None:
    """``POST /v1/outcomes``, REQUEST_BATTLES at a time; ids the log does not know yet (its
    writes trail the answers) are posted again after a pause, up to UNKNOWN_RETRIES times."""
    pending = results
    summary.posted = len(results)
    for attempt in range(UNKNOWN_RETRIES + 1):
        unknown: list[str] = []
        for chunk in _chunks(pending, REQUEST_BATTLES):
            answer = _post_outcomes(service, chunk)
            summary.recorded += answer.recorded
            summary.already_recorded += answer.already_recorded
            summary.conflicting += answer.conflicting
            unknown += answer.unknown
        if not unknown or attempt == UNKNOWN_RETRIES:
            summary.unknown = unknown
            return
        still = set(unknown)
        pending = [result for result in pending if result[0] in still]
        sleep(RETRY_PAUSE_S)


def _post_outcomes(service: PredictorClient, chunk: list[tuple[str, str]]):
    from pydantic import ValidationError

    from machine_learning.contract.inference_log import OutcomesRequest, OutcomesResponse

    request = OutcomesRequest.model_validate(
        {"outcomes": [{"battle_id": i, "winner": winner} for i, winner in chunk]}
    )
    body = _answered(service, "/outcomes", request.model_dump())
    try:
        return OutcomesResponse.model_validate(body)
    except ValidationError as error:
        raise PredictorFailed(
            f"the predictor at {service.url} answered /v1/outcomes with something that is not "
            f"an outcomes answer: {error.errors()[0]['msg']}"
        ) from None


def _answered(service: PredictorClient, path: str, payload: Any) -> Any:
    """The JSON body of a 2xx answer; one line and the exit code otherwise."""
    status, body, _ = service.post(path, payload)
    error = body.get("error") if isinstance(body, dict) else None
    if status == 0:
        raise PredictorFailed(f"the predictor at {service.url} does not answer: {error}")
    if status == 404 and path == "/outcomes":
        raise BadInput(
            f"the predictor at {service.url} has no /v1/outcomes route: run a version that "
            "takes outcomes, started with serve --inference-log URL"
        )
    if 400 <= status < 500:
        raise BadInput(f"the predictor at {service.url} refused {path} (HTTP {status}): {error}")
    if not 200 <= status < 300:
        raise PredictorFailed(
            f"the predictor at {service.url} failed {path} (HTTP {status}): {error}"
        )
    return body


def _chunks(items, size: int) -> Iterator:
    """Consecutive slices of at most ``size`` (of a table's rows or a list)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]

"""After promotion: the predictor serves the new champion, answers, and still scores.

A promotion is only trusted once the served model proves it: ``verify`` waits (bounded) until
the predictor's ``/v1/version`` is the promoted version, sends smoke battles, then re-scores the
served model over HTTP on a canary set — fresh battles from a seed of their own, neither the
training seed nor the test set's — against the gate's floors. What fails is named; the caller
rolls back.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import ValidationError

from ci.thresholds import Threshold
from ci.verdict import judge
from machine_learning.contract.failures import Refused
from machine_learning.contract.gate_record import Verdict
from machine_learning.contract.prediction import Health, PredictResponse, ServedModel
from machine_learning.serving.client import PredictorClient

CANARY_SEED = 2_000_029  # not TEST_SEED (1,000,003), not a default training seed
CANARY_BATTLES = 2_000
BATCH = 5_000  # battles per request, under the service's limit
SMOKE = (("pikachu", "charizard"), ("mewtwo", "magikarp"), ("snorlax", "snorlax"))
POLL_S = 1.0
HEALTH_S = 1.0  # after the wait: how long /health may take to say why


class VerifyFailed(Refused):
    """The served model is not the promoted one, does not answer, or misses a floor."""


def wait_for_version(service: PredictorClient, expected: str, timeout_s: float) -> None:
    """Until ``/version`` says ``expected``; VerifyFailed with what it serves after the wait.
    Every call is given what is left of ``timeout_s``, and /health one more second to say
    why: a predictor that accepts and never answers cannot hold verify past the bound."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        status, body, _ = service.get("/version", timeout_s=left)
        if status == 200 and _version(body) == expected:
            return
        if status:  # it answers: ask whether the version failed to load
            _fail_if_unloadable(service, expected, deadline - time.monotonic())
        if time.monotonic() >= deadline:
            _, health, _ = service.get("/health", timeout_s=HEALTH_S)
            raise VerifyFailed(
                f"the predictor at {service.url} still serves "
                f"{_served(status, body)} {timeout_s:.0f} s after v{expected} was promoted "
                f"(health: {json.dumps(health)[:300]})"
            )
        service.sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))


def _fail_if_unloadable(service: PredictorClient, expected: str, left_s: float) -> None:
    """Stop waiting when the predictor says ``expected`` failed to load: it would fail the same
    way at every poll, and the rollback should not wait for the timeout."""
    _, body, _ = service.get("/health", timeout_s=min(HEALTH_S, left_s))
    try:
        health = Health.model_validate(body)
    except ValidationError:
        return
    if health.failed_version == expected:
        raise VerifyFailed(
            f"the predictor at {service.url} cannot load v{expected}: {health.error}"
        )


def _version(body: Any) -> str | None:
    """The version a /version answer names, None when it is not the contract's ServedModel."""
    try:
        return ServedModel.model_validate(body).version
    except ValidationError:
        return None


def smoke(service: PredictorClient, expected: str) -> None:
    """A few battles by name: answered by the expected version, with probabilities that add up."""
    status, body, version = service.predict([{"a": a, "b": b} for a, b in SMOKE])
    if status != 200:
        raise VerifyFailed(f"smoke battles: the predictor answered {status}: {body}")
    if version != expected:
        raise VerifyFailed(f"smoke battles were answered by v{version}, not v{expected}")
    for (a, b), (p, q) in zip(SMOKE, probabilities(body, len(SMOKE), "smoke"), strict=True):
        if abs(p + q - 1) >= 1e-6:
            raise VerifyFailed(f"smoke battle {a} vs {b}: p={p}, q={q} do not add up to 1")


def canary_scores(
    service: PredictorClient, expected: str, scenario: str, n: int = CANARY_BATTLES
) -> dict[str, float]:
    """The served model's test-style metrics on fresh battles, asked over HTTP in batches."""
    import numpy as np

    from machine_learning.datasets import LABEL, RAW_COLUMNS, battles
    from machine_learning.evaluate import classification_metrics
    from machine_learning.simulator import Scenario

    table = battles(n, Scenario(scenario), CANARY_SEED)
    rows = table[list(RAW_COLUMNS)].to_dict("records")  # pandas gives plain ints and strs
    p: list[float] = []
    for start in range(0, n, BATCH):
        batch = rows[start : start + BATCH]
        status, body, version = service.predict(batch)
        if status != 200 or version != expected:
            raise VerifyFailed(f"canary battles: answered {status} by v{version}: {body}")
        p += [p_a for p_a, _ in probabilities(body, len(batch), "canary")]
    return classification_metrics(table[LABEL].to_numpy(), np.asarray(p), "test")


def judge_canary(scores: dict[str, float], rules: list[Threshold]) -> list[str]:
    """One line per floor; VerifyFailed naming every metric that misses its floor."""
    lines, failed = [], []
    for rule in rules:
        if rule.metric not in scores:
            continue
        judgement = judge(rule, scores[rule.metric])
        lines.append(f"canary {rule.metric} {scores[rule.metric]:.4f}: {judgement.reason}")
        if judgement.verdict == Verdict.FAIL:
            failed.append(f"{rule.metric} {judgement.reason}")
    if failed:
        raise VerifyFailed("the canary battles miss the floor: " + "; ".join(failed))
    return lines


def probabilities(body: Any, count: int, what: str) -> list[tuple[float, float]]:
    """(p_a_wins, p_b_wins) of each of ``count`` answered battles, read with the contract's
    response model; VerifyFailed when the answer is not that (a predictor that answers 200
    with anything else is broken, not trusted)."""
    try:
        answer = PredictResponse.model_validate(body)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        where = ".".join(map(str, problem["loc"])) or "the body"
        raise VerifyFailed(
            f"{what} battles: the answer is not the predictor's response "
            f"({where}: {problem['msg']})"
        ) from None
    if len(answer.predictions) != count:
        raise VerifyFailed(
            f"{what} battles: {count} asked, {len(answer.predictions)} predictions answered"
        )
    return [(battle["p_a_wins"], battle["p_b_wins"]) for battle in answer.predictions]


def _served(status: int, body: Any) -> str:
    if status == 200 and isinstance(body, dict) and _version(body) is not None:
        return f"v{body.get('version') or body.get('uri')}"
    return f"nothing it can name ({status or 'no answer'}: {body})"

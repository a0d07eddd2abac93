"""After promotion: the predictor serves the new champion, answers, and still scores.

A promotion is only trusted once the served model proves it: ``verify`` waits (bounded) until
the predictor's ``/version`` is the promoted version, sends smoke battles, then re-scores the
served model over HTTP on a canary set — fresh battles from a seed of their own, neither the
training seed nor the test set's — against the gate's floors. What fails is named; the caller
rolls back.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ci.thresholds import Threshold
from ci.verdict import Verdict, judge

CANARY_SEED = 2_000_029  # not TEST_SEED (1,000,003), not a default training seed
CANARY_BATTLES = 2_000
BATCH = 5_000  # battles per request, under the service's limit
SMOKE = (("pikachu", "charizard"), ("mewtwo", "magikarp"), ("snorlax", "snorlax"))
POLL_S = 1.0


class VerifyFailed(RuntimeError):
    """The served model is not the promoted one, does not answer, or misses a floor."""


@dataclass
class PredictorClient:
    """The prediction service's HTTP API (standard library)."""

    url: str
    timeout_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def get(self, path: str) -> tuple[int, Any, str]:
        return self._call(urllib.request.Request(self.url.rstrip("/") + path))

    def predict(self, battles: list[dict]) -> tuple[int, Any, str]:
        body = json.dumps({"battles": battles}).encode()
        request = urllib.request.Request(
            self.url.rstrip("/") + "/predict", data=body, method="POST"
        )
        request.add_header("Content-Type", "application/json")
        return self._call(request)

    def _call(self, request: urllib.request.Request) -> tuple[int, Any, str]:
        """(status, JSON body, X-Model-Version); status 0 when nothing answered."""
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return (
                    answer.status,
                    json.loads(answer.read()),
                    answer.headers.get("X-Model-Version", ""),
                )
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read())
            except ValueError:
                body = None
            return error.code, body, error.headers.get("X-Model-Version", "")
        except (OSError, ValueError) as error:  # URLError is an OSError
            return 0, {"error": str(getattr(error, "reason", error))}, ""


def wait_for_version(service: PredictorClient, expected: str, timeout_s: float) -> None:
    """Until ``/version`` says ``expected``; VerifyFailed with what it serves after the wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body, _ = service.get("/version")
        if status == 200 and isinstance(body, dict) and str(body.get("version")) == expected:
            return
        if time.monotonic() >= deadline:
            _, health, _ = service.get("/health")
            raise VerifyFailed(
                f"the predictor at {service.url} still serves "
                f"{_served(status, body)} {timeout_s:.0f} s after v{expected} was promoted "
                f"(health: {json.dumps(health)[:300]})"
            )
        service.sleep(POLL_S)


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
    """(p_a_wins, p_b_wins) of each of ``count`` answered battles; VerifyFailed when the answer
    is not that (a predictor that answers 200 with anything else is broken, not trusted)."""
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != count:
        raise VerifyFailed(f"{what} battles: {count} asked, the answer is not {count} predictions")
    pairs = []
    for battle in predictions:
        pair = _probability_pair(battle)
        if pair is None:
            shown = json.dumps(battle)[:200]
            raise VerifyFailed(f"{what} battles: a prediction is not two probabilities: {shown}")
        pairs.append(pair)
    return pairs


def _probability_pair(battle: Any) -> tuple[float, float] | None:
    if not isinstance(battle, dict):
        return None
    values = battle.get("p_a_wins"), battle.get("p_b_wins")
    if not all(_is_probability(value) for value in values):
        return None
    return float(values[0]), float(values[1])


def _is_probability(value: Any) -> bool:
    """A JSON number in [0, 1] (not a boolean; nan compares false)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _served(status: int, body: Any) -> str:
    if status == 200 and isinstance(body, dict):
        return f"v{body.get('version') or body.get('uri')}"
    return f"nothing it can name ({status or 'no answer'}: {body})"

"""The verdict rules of the gate, as pure functions (property-tested).

Per metric: **fail** when the candidate misses the absolute floor, or when it regresses against
the champion by more than the tolerance *and* the paired bootstrap 95% interval of the difference
excludes zero; **within noise** when that interval includes zero (a difference the test set
cannot tell from chance); **pass** otherwise. The gate fails when any metric fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci.thresholds import Threshold
from machine_learning.contract.gate_record import Verdict


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def judge(
    rule: Threshold,
    candidate: float,
    champion: float | None = None,
    interval: tuple[float, float] | None = None,
) -> Judgement:
    """Judge one metric. ``interval`` bounds candidate - champion (95%, paired bootstrap)."""
    sign = 1.0 if rule.greater_is_better else -1.0
    if rule.threshold is not None and sign * (candidate - rule.threshold) < 0:
        side = "below the floor" if rule.greater_is_better else "above the ceiling"
        return Judgement(Verdict.FAIL, f"{candidate:.4f} is {side} {rule.threshold:g}")
    if champion is None or interval is None:
        return Judgement(Verdict.PASS, "meets the threshold; no champion to compare with")
    gain = sign * (candidate - champion)  # > 0: better than the champion
    low, high = sorted((sign * interval[0], sign * interval[1]))
    allowed = rule.allowed_regression(champion)
    if gain < -allowed and high < 0:
        return Judgement(
            Verdict.FAIL,
            f"worse than the champion by {-gain:.4f} "
            f"(tolerance {allowed:.4f}); the 95% interval excludes 0",
        )
    if low <= 0 <= high:
        return Judgement(Verdict.NOISE, "the 95% interval of the difference includes 0")
    if gain < 0:
        return Judgement(Verdict.PASS, f"worse by {-gain:.4f}, within the tolerance {allowed:.4f}")
    return Judgement(Verdict.PASS, f"better than the champion by {gain:.4f}")


def overall(verdicts: list[Verdict]) -> Verdict:
    """The gate's verdict: fail when any metric fails."""
    return Verdict.FAIL if Verdict.FAIL in verdicts else Verdict.PASS

"""The monitor's rules, as pure functions: a window's verdict, then whether to retrain.

Per version in a window: **not enough data** below ``min_rows`` battles, never a breach;
otherwise a **breach** when any threshold is crossed. A threshold whose metric was not measured
(a feature the version's profile lacks) or rests on fewer than ``min_rows`` values (too few
outcomes for accuracy, say) is listed as unmeasured, not judged. A window breaches when any
version with enough battles in it breaches (the traffic moved, whoever answered it); it has not
enough data when no version has.

The decision, as databricks/mlops-stacks: **retrain when at least ``min_breaches`` (K) of the
last ``n_windows`` (N) windows breach and the latest does.** The latest must breach so a drift
that has passed does not retrain; K ≥ 2 so a single noisy window never does.

Defaults, and why:
- ``MIN_ROWS`` = 200 battles: with 10 bins, PSI from sampling noise alone is about chi-square
  with 9 degrees of freedom over n (0.045 ± 0.02 at 200), so the 0.2 line is ~7 standard
  deviations away, and accuracy's standard error is 1.8 points; at 100 battles the same
  approximation puts PSI noise over 0.2 about 2% of the time per feature. The benchmark
  (benchmarks/monitor_decisions.py) measures it at 200.
- N = 5, K = 2: if a window breaches by chance with probability p, a pass fires with about
  p · (1 - (1 - p)^4) ≈ 4p², so 5% of false alarms allows p up to 11%, while drift that breaches
  every window fires on its second window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ci.monitor_thresholds import MonitorThreshold
from machine_learning.contract.records import JsonRecord
from machine_learning.monitoring.window import WindowMeasurement

MIN_ROWS = 200
MAX_MIN_ROWS = 1_000
DEFAULT_WINDOWS = 5
DEFAULT_MIN_BREACHES = 2
MAX_WINDOWS = 365


class WindowStatus(StrEnum):
    HEALTHY = "healthy"
    BREACH = "breach"
    NOT_ENOUGH_DATA = "not enough data"


@dataclass(frozen=True)
class Breach(JsonRecord):
    """A threshold a window crossed."""

    metric: str
    value: float
    threshold: float
    greater_is_better: bool

    def describe(self) -> str:
        side = "<" if self.greater_is_better else ">"
        return f"{self.metric} {self.value:.4g} {side} {self.threshold:g}"


@dataclass(frozen=True)
class VersionJudgement(JsonRecord):
    """One version's battles in one window, judged."""

    version: str
    status: WindowStatus
    breaches: list[Breach] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.status is WindowStatus.BREACH) != bool(self.breaches):
            raise ValueError(f"version {self.version[:20]!r}: status {self.status} vs breaches")


@dataclass(frozen=True)
class Decision(JsonRecord):
    """Whether to retrain, and the counts that say why."""

    retrain: bool
    reason: str
    breaching_windows: int
    windows_considered: int
    min_breaches: int = DEFAULT_MIN_BREACHES
    n_windows: int = DEFAULT_WINDOWS

    def __post_init__(self) -> None:
        check_decision_rule(self.min_breaches, self.n_windows)
        if not 0 <= self.breaching_windows <= self.windows_considered <= self.n_windows:
            raise ValueError("decision: needs 0 <= breaching_windows <= windows_considered <= N")


def check_min_rows(min_rows: int) -> None:
    """The minimum a window needs to be judged: 1 to MAX_MIN_ROWS battles."""
    if not 1 <= min_rows <= MAX_MIN_ROWS:
        raise ValueError(f"min_rows must be 1 to {MAX_MIN_ROWS:,}, got {min_rows}")


def check_decision_rule(min_breaches: int, n_windows: int) -> None:
    """K of N needs 1 ≤ K ≤ N ≤ MAX_WINDOWS."""
    if not 1 <= n_windows <= MAX_WINDOWS:
        raise ValueError(f"the number of windows must be 1 to {MAX_WINDOWS}, got {n_windows}")
    if not 1 <= min_breaches <= n_windows:
        raise ValueError(
            f"min_breaches must be 1 to the number of windows ({n_windows}), got {min_breaches}"
        )


def judge_measurement(
    measurement: WindowMeasurement, thresholds: Sequence[MonitorThreshold], min_rows: int = MIN_ROWS
) -> VersionJudgement:
    """One version's window against the thresholds (see the module's rules)."""
    check_min_rows(min_rows)
    if not thresholds:
        raise ValueError("no thresholds: a monitor without any would call every window healthy")
    version = measurement.version
    if measurement.n_rows < min_rows:
        unmeasured = [rule.metric for rule in thresholds]
        return VersionJudgement(version, WindowStatus.NOT_ENOUGH_DATA, [], unmeasured)
    values = measurement.metrics()
    breaches, unmeasured = [], []
    for rule in thresholds:
        value = values.get(rule.metric)
        if value is None or measurement.sample_size(rule.metric) < min_rows:
            unmeasured.append(rule.metric)
        elif rule.crossed(value):
            breaches.append(Breach(rule.metric, value, rule.threshold, rule.greater_is_better))
    status = WindowStatus.BREACH if breaches else WindowStatus.HEALTHY
    return VersionJudgement(version, status, breaches, unmeasured)


def window_status(judgements: Sequence[VersionJudgement]) -> WindowStatus:
    """A window's status from its versions': a breach anywhere; else healthy if any version
    had enough battles; else not enough data (also for a window with no battles at all)."""
    statuses = {judgement.status for judgement in judgements}
    if WindowStatus.BREACH in statuses:
        return WindowStatus.BREACH
    if WindowStatus.HEALTHY in statuses:
        return WindowStatus.HEALTHY
    return WindowStatus.NOT_ENOUGH_DATA


def decide(
    statuses: Sequence[WindowStatus],
    min_breaches: int = DEFAULT_MIN_BREACHES,
    n_windows: int = DEFAULT_WINDOWS,
) -> Decision:
    """Retrain when at least K of the last N windows (oldest first) breach and the latest does.

    Fewer than N windows (a monitor just started) are judged as they are: K still applies.
    """
    check_decision_rule(min_breaches, n_windows)
    recent = list(statuses)[-n_windows:]
    breaching = sum(status is WindowStatus.BREACH for status in recent)
    counts = dict(breaching_windows=breaching, windows_considered=len(recent))
    rule = dict(min_breaches=min_breaches, n_windows=n_windows)
    if not recent:
        return Decision(False, "no windows to judge", **counts, **rule)
    latest = recent[-1]
    of = f"{breaching} of the last {len(recent)} windows breach"
    if latest is not WindowStatus.BREACH:
        reason = f"the latest window is {latest}; {of}"
        return Decision(False, reason, **counts, **rule)
    if breaching < min_breaches:
        return Decision(False, f"{of}, fewer than {min_breaches}", **counts, **rule)
    return Decision(True, f"{of} (at least {min_breaches}), the latest included", **counts, **rule)

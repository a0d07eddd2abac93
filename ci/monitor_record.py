"""``monitor.json``: one monitoring pass, written by ``ci monitor`` and read by the report,
the dashboard and the workflow that dispatches retraining.

It holds what was measured (per window and version), the thresholds it was judged with, the
judgements and the decision. The loader re-judges every measurement and re-takes the decision
from the recorded thresholds and rules, and refuses a file whose verdicts do not follow: a
hand-edited or truncated ``"retrain": true`` cannot dispatch a training.

It stays in ``ci`` rather than the contract: only the CI side writes and reads it, and its loader
judges with ``ci.monitor_decision`` and ``ci.monitor_thresholds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ci.monitor_decision import (
    MIN_ROWS,
    Decision,
    VersionJudgement,
    WindowStatus,
    check_min_rows,
    decide,
    judge_measurement,
    window_status,
)
from ci.monitor_thresholds import MonitorThreshold, parse_spec
from machine_learning.contract.records import JsonRecord
from machine_learning.monitoring.window import WindowMeasurement

MONITOR_FILE = "monitor.json"


@dataclass(frozen=True)
class ThresholdRow(JsonRecord):
    """A threshold as it was applied (validated like a ``monitor.*`` tag)."""

    metric: str
    threshold: float
    greater_is_better: bool

    def __post_init__(self) -> None:
        self.rule()  # a ThresholdError is a ValueError: the loader names the file

    def rule(self) -> MonitorThreshold:
        spec = {"threshold": self.threshold, "greater_is_better": self.greater_is_better}
        return parse_spec(self.metric, spec, f"threshold {self.metric[:60]}")

    @classmethod
    def of(cls, rule: MonitorThreshold) -> ThresholdRow:
        return cls(rule.metric, rule.threshold, rule.greater_is_better)


@dataclass(frozen=True)
class VersionWindow(JsonRecord):
    """One version's battles in one window: the figures and their judgement."""

    measurement: WindowMeasurement
    judgement: VersionJudgement

    def __post_init__(self) -> None:
        if self.measurement.version != self.judgement.version:
            raise ValueError("a window's measurement and judgement name different versions")


@dataclass(frozen=True)
class WindowRecord(JsonRecord):
    """A time window ``[start, end)`` (ISO 8601 with a time zone) and every version in it.

    ``unprofiled_rows`` counts, per version, logged battles that could not be judged because
    the version has no reference profile (unregistered, or trained before profiles existed):
    said, never silently dropped, and never a breach. ``logged_rows`` counts, per measured
    version, the battles logged; more than its measurement's ``n_rows`` when the window held
    more than the monitor measures (a sample of them was measured).
    """

    start: str
    end: str
    status: WindowStatus
    versions: list[VersionWindow] = field(default_factory=list)
    unprofiled_rows: dict[str, int] = field(default_factory=dict)
    logged_rows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if _instant(self.start, "start") >= _instant(self.end, "end"):
            raise ValueError(f"window {self.start[:40]}: start must come before end")
        names = [v.measurement.version for v in self.versions]
        if len(set(names)) != len(names) or set(names) & set(self.unprofiled_rows):
            raise ValueError(f"window {self.start[:40]}: a version is listed twice")
        if any(count < 1 for count in self.unprofiled_rows.values()):
            raise ValueError(f"window {self.start[:40]}: unprofiled_rows must be positive")
        for entry in self.versions:
            logged = self.logged_rows.get(entry.measurement.version, entry.measurement.n_rows)
            if logged < entry.measurement.n_rows:
                raise ValueError(f"window {self.start[:40]}: fewer battles logged than measured")
        if self.status is not window_status([v.judgement for v in self.versions]):
            raise ValueError(f"window {self.start[:40]}: status {self.status} does not follow")


@dataclass(frozen=True)
class MonitorRecord(JsonRecord):
    """A monitoring pass: windows oldest first, the thresholds, the decision.

    ``unprofiled_versions`` says why each version counted in a window's ``unprofiled_rows``
    could not be judged (not a version of the model, no profile.json in its run, ...).

    ``champion`` is the version behind the alias when the pass ran ("" when none could be
    read). The decision is about it: a window counts as breached when the champion breached
    in it, so a version it replaced (whose battles linger in the windows after a promotion)
    cannot call for a retraining of the model that replaced it. A window's ``status`` still
    says whether any version breached in it, for the reader.
    """

    model_name: str
    generated_at: str
    window_seconds: int
    thresholds: list[ThresholdRow]
    windows: list[WindowRecord]
    decision: Decision
    min_rows: int = MIN_ROWS
    thresholds_source: str = ""
    unprofiled_versions: dict[str, str] = field(default_factory=dict)
    champion: str = ""

    def __post_init__(self) -> None:
        _instant(self.generated_at, "generated_at")
        check_min_rows(self.min_rows)
        if self.window_seconds < 1:
            raise ValueError(f"window_seconds must be positive, got {self.window_seconds}")
        if not self.thresholds:
            raise ValueError("thresholds: a pass judged with none would call everything healthy")
        self._check_order()
        self._check_verdicts()

    def _check_order(self) -> None:
        starts = [_instant(w.start, "start") for w in self.windows]
        ends = [_instant(w.end, "end") for w in self.windows]
        if any(b < a for a, b in zip(ends, starts[1:], strict=False)):
            raise ValueError("windows must be oldest first and must not overlap")

    def _check_verdicts(self) -> None:
        rules = [row.rule() for row in self.thresholds]
        for window in self.windows:
            for entry in window.versions:
                if judge_measurement(entry.measurement, rules, self.min_rows) != entry.judgement:
                    raise ValueError(
                        f"window {window.start[:40]}, version {entry.judgement.version[:20]}: "
                        "the judgement does not follow from the measurement and thresholds"
                    )
        rule = (self.decision.min_breaches, self.decision.n_windows)
        if decide(decision_statuses(self.windows, self.champion), *rule) != self.decision:
            raise ValueError("the decision does not follow from the windows' statuses")

    @property
    def exit_code(self) -> int:
        """The command's contract: 0 healthy, 1 retraining needed."""
        return 1 if self.decision.retrain else 0


@dataclass(frozen=True)
class MeasuredWindow:
    """What the monitor command hands over per window: its bounds, one measurement per version
    with a profile, and the row counts of versions without one."""

    start: str
    end: str
    measurements: list[WindowMeasurement]
    unprofiled_rows: dict[str, int] = field(default_factory=dict)
    logged_rows: dict[str, int] = field(default_factory=dict)


def build_record(
    model_name: str,
    generated_at: str,
    window_seconds: int,
    thresholds: list[MonitorThreshold],
    windows: list[MeasuredWindow],
    *,
    min_rows: int = MIN_ROWS,
    min_breaches: int,
    n_windows: int,
    thresholds_source: str = "",
    unprofiled_versions: dict[str, str] | None = None,
    champion: str = "",
) -> MonitorRecord:
    """Judge measured windows (oldest first) and decide; ``unprofiled_versions`` says why
    each version without a measurement could not be judged."""
    records = []
    for window in windows:
        entries = [
            VersionWindow(m, judge_measurement(m, thresholds, min_rows))
            for m in window.measurements
        ]
        status = window_status([entry.judgement for entry in entries])
        records.append(
            WindowRecord(
                window.start,
                window.end,
                status,
                entries,
                dict(window.unprofiled_rows),
                dict(window.logged_rows),
            )
        )
    decision = decide(decision_statuses(records, champion), min_breaches, n_windows)
    return MonitorRecord(
        model_name=model_name,
        generated_at=generated_at,
        window_seconds=window_seconds,
        thresholds=[ThresholdRow.of(rule) for rule in thresholds],
        windows=records,
        decision=decision,
        min_rows=min_rows,
        thresholds_source=thresholds_source,
        unprofiled_versions=dict(unprofiled_versions or {}),
        champion=champion,
    )


def decision_statuses(windows: list[WindowRecord], champion: str) -> list[WindowStatus]:
    """What the decision counts per window: the champion's own status there (not enough data
    where it did not serve), or, with no champion known, the window's."""
    if not champion:
        return [window.status for window in windows]
    return [
        next(
            (v.judgement.status for v in window.versions if v.measurement.version == champion),
            WindowStatus.NOT_ENOUGH_DATA,
        )
        for window in windows
    ]


def _instant(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} {text[:40]!r} has no time zone")
    return moment

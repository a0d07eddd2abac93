"""One monitoring pass: the last N windows of the inference log, judged, then the decision.

For each window (oldest first, the last ending now) and each version that answered in it: the
version's battles measured against its reference profile (``measure_window``: row count, drift
of every profiled feature and of the predicted probability, live quality on the battles whose
outcome came back), judged against the ``monitor.*`` thresholds, then K of N decided
(``ci.monitor_decision``) and recorded (``ci.monitor_record``). Versions without a profile are
counted and explained, never judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ci.monitor_log import MAX_WINDOW_ROWS, LogReader
from ci.monitor_record import MeasuredWindow, MonitorRecord, WindowRecord, build_record
from machine_learning.monitoring.window import measure_window

if TYPE_CHECKING:
    from ci.monitor_profiles import ReferenceProfiles
    from ci.monitor_thresholds import MonitorThreshold


@dataclass(frozen=True)
class PassRules:
    """How a pass cuts and judges the log: window length, N, K, and the rows a window needs."""

    window_seconds: int
    n_windows: int
    min_breaches: int
    min_rows: int


def window_bounds(now: datetime, seconds: int, count: int) -> list[tuple[datetime, datetime]]:
    """``count`` adjacent windows ``[start, end)`` of ``seconds`` each, oldest first, the last
    ending at ``now``."""
    width = timedelta(seconds=seconds)
    return [(now - (count - i) * width, now - (count - i - 1) * width) for i in range(count)]


def measure(
    log: LogReader, profiles: ReferenceProfiles, start: datetime, end: datetime
) -> MeasuredWindow:
    """One window: every version that answered in it, measured against its own profile."""
    measurements, unprofiled, logged = [], {}, {}
    for version, count in sorted(log.versions(start, end).items()):
        profile = profiles.get(version)
        if profile is None:
            unprofiled[version] = count
            continue
        rows = log.rows(version, start, end, MAX_WINDOW_ROWS)
        measurements.append(
            measure_window(profile, version, rows.battles, rows.p_a_wins, rows.a_wins)
        )
        logged[version] = count
    return MeasuredWindow(start.isoformat(), end.isoformat(), measurements, unprofiled, logged)


def monitoring_pass(
    log: LogReader,
    profiles: ReferenceProfiles,
    thresholds: list[MonitorThreshold],
    rules: PassRules,
    now: datetime,
    thresholds_source: str = "",
    champion: str = "",
) -> MonitorRecord:
    """Measure the last ``rules.n_windows`` windows up to ``now``, judge them and decide about
    ``champion`` (the version serving now; see MonitorRecord)."""
    windows = [
        measure(log, profiles, start, end)
        for start, end in window_bounds(now, rules.window_seconds, rules.n_windows)
    ]
    return build_record(
        profiles.model_name,
        now.isoformat(),
        rules.window_seconds,
        thresholds,
        windows,
        min_rows=rules.min_rows,
        min_breaches=rules.min_breaches,
        n_windows=rules.n_windows,
        thresholds_source=thresholds_source,
        unprofiled_versions=dict(profiles.reasons),
        champion=champion,
    )


def shown(version: str) -> str:
    """A logged version as a terminal or an Actions log may print it: ``v3``, else quoted with
    control characters escaped (a newline could start a workflow command)."""
    if version.isascii() and version.isdigit():
        return f"v{version}"
    return repr(version) if version else "(no version)"


def describe(record: MonitorRecord) -> list[str]:
    """What the pass found, for the console: a line per window, the versions not judged and
    why, the decision."""
    lines = [_window_line(window) for window in record.windows]
    lines += [
        f"not judged: {shown(version)}: {reason}"
        for version, reason in sorted(record.unprofiled_versions.items())
    ]
    verdict = "retrain" if record.decision.retrain else "keep the champion"
    about = f" ({shown(record.champion)}, the champion)" if record.champion else ""
    return [*lines, f"decision{about}: {verdict}: {record.decision.reason}"]


def _window_line(window: WindowRecord) -> str:
    parts = []
    for entry in window.versions:
        measured, judgement = entry.measurement, entry.judgement
        text = f"{shown(measured.version)} {measured.n_rows:,} battles"
        if measured.quality:
            text += f", accuracy {measured.quality.accuracy:.3f}"
        text += f": {judgement.status}"
        if judgement.breaches:
            text += f" ({'; '.join(b.describe() for b in judgement.breaches)})"
        parts.append(text)
    parts += [
        f"{shown(version)} {count:,} battles: not judged"
        for version, count in sorted(window.unprofiled_rows.items())
    ]
    found = " | ".join(parts) or "no battles"
    return f"{window.start[:16]} → {window.end[:16]}  {window.status}: {found}"

"""The job summary of a monitoring pass: a table per window and version, a chart, the decision.

Markdown appended to ``$GITHUB_STEP_SUMMARY`` (and logged with the run). Every value that comes
from the inference log or the registry (a version string, a reason naming a run, the model's
name) is escaped cell by cell: ``&``, ``<``, ``>`` and quotes become HTML entities, every other
ASCII punctuation mark is backslash-escaped, and control characters (a newline would end the
table row) become spaces. The chart is a Mermaid ``xychart-beta``, which GitHub renders in job
summaries; its labels and numbers are made here, never taken from the log.
"""

from __future__ import annotations

import math
import string
from datetime import datetime

from ci.monitor_decision import WindowStatus
from ci.monitor_record import MonitorRecord, VersionWindow, WindowRecord

ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
STATUS_MARK = {
    WindowStatus.HEALTHY: "✅ healthy",
    WindowStatus.BREACH: "❌ breach",
    WindowStatus.NOT_ENOUGH_DATA: "⚪ not enough data",
}
NO_VALUE = "—"
COLUMNS = ("Window (UTC)", "Version", "Battles", "Outcomes", "Accuracy", "Worst drift", "Status")


def escape(text: str) -> str:
    """Text safe in a Markdown table cell: no markup, no HTML, one line."""
    out = []
    for char in text:
        if char in ENTITIES:
            out.append(ENTITIES[char])
        elif char in string.punctuation:
            out.append(f"\\{char}")
        elif not char.isprintable():
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def render(record: MonitorRecord) -> str:
    """The whole summary: heading, decision, table, chart, versions not judged."""
    return (
        "\n".join(
            [
                heading(record),
                "",
                decision_line(record),
                "",
                *table(record),
                "",
                *accuracy_chart(record),
                *unprofiled_lines(record),
            ]
        ).rstrip()
        + "\n"
    )


def heading(record: MonitorRecord) -> str:
    verdict = "🔁 retraining needed" if record.decision.retrain else "✅ no retraining needed"
    return f"### Monitoring {escape(record.model_name)}: {verdict}"


def decision_line(record: MonitorRecord) -> str:
    """The decision in one line: what, and why (K of the last N windows)."""
    decision = record.decision
    what = "retrain" if decision.retrain else "keep the champion"
    rule = f"rule: at least {decision.min_breaches} of the last {decision.n_windows} windows"
    return (
        f"**Decision: {what}**: {escape(decision.reason)} ({rule} breach, the latest included; "
        f"a window needs {record.min_rows:,} battles)"
    )


def table(record: MonitorRecord) -> list[str]:
    """One row per window and version (a window with no battles: one row saying so)."""
    lines = [f"| {' | '.join(COLUMNS)} |", f"|{'---|' * len(COLUMNS)}"]
    for window in record.windows:
        label = window_label(window)
        rows = [_measured_row(window, entry, record.min_rows) for entry in window.versions]
        rows += [
            [
                escape(version_label(v)),
                f"{n:,}",
                NO_VALUE,
                NO_VALUE,
                NO_VALUE,
                "⚪ not judged (no profile)",
            ]
            for v, n in sorted(window.unprofiled_rows.items())
        ]
        if not rows:
            rows = [[NO_VALUE, "0", NO_VALUE, NO_VALUE, NO_VALUE, STATUS_MARK[window.status]]]
        lines += [f"| {label} | {' | '.join(row)} |" for row in rows]
    return lines


def version_label(version: str) -> str:
    """``v3``; a log row without a version (a model outside the registry) as such. Not escaped:
    the caller escapes for where it goes."""
    return f"v{version}" if version else "(no version)"


def window_label(window: WindowRecord) -> str:
    return f"{_short(window.start)} → {_short(window.end)}"


def _measured_row(window: WindowRecord, entry: VersionWindow, min_rows: int) -> list[str]:
    measured, judgement = entry.measurement, entry.judgement
    logged = window.logged_rows.get(measured.version, measured.n_rows)
    rows = f"{logged:,}" if logged == measured.n_rows else f"{logged:,} ({measured.n_rows:,} read)"
    quality = measured.quality
    status = STATUS_MARK[judgement.status]
    if judgement.breaches:
        status += ": " + "; ".join(escape(b.describe()) for b in judgement.breaches)
    elif judgement.status is WindowStatus.NOT_ENOUGH_DATA:
        status += f" (fewer than {min_rows:,} battles)"
    return [
        escape(version_label(measured.version)),
        rows,
        f"{quality.outcome_share:.0%}" if quality else NO_VALUE,
        f"{quality.accuracy:.3f}" if quality else NO_VALUE,
        _worst_drift(entry),
        status,
    ]


def _worst_drift(entry: VersionWindow) -> str:
    measured = [d for d in entry.measurement.drift if d.psi is not None]
    if not measured:
        return NO_VALUE
    worst = max(measured, key=lambda d: d.psi or 0.0)
    return f"{escape(worst.feature)} PSI {worst.psi:.3f}"


def pooled_accuracy(window: WindowRecord) -> float | None:
    """Accuracy over every battle with an outcome in the window, whichever version answered
    (each version's accuracy weighted by its outcomes: accuracy is a mean)."""
    scored = [v.measurement.quality for v in window.versions if v.measurement.quality]
    outcomes = sum(q.n_outcomes for q in scored)
    if not outcomes:
        return None
    return sum(q.accuracy * q.n_outcomes for q in scored) / outcomes


def accuracy_chart(record: MonitorRecord) -> list[str]:
    """A Mermaid line chart of live accuracy per window with outcomes, and its floor."""
    points = [(_short(w.end), pooled_accuracy(w)) for w in record.windows]
    points = [(label, value) for label, value in points if value is not None]
    if not points:
        return ["_No battle has an outcome yet: no live accuracy to chart._", ""]
    floor = next((t.threshold for t in record.thresholds if t.metric == "accuracy"), None)
    values = [value for _, value in points]
    low = math.floor(min([*values, floor or 1.0]) * 10) / 10
    lines = [
        "```mermaid",
        "xychart-beta",
        '    title "Live accuracy per window, by its end (UTC); flat line: the floor"'
        if floor is not None
        else '    title "Live accuracy per window, by its end (UTC)"',
        f"    x-axis [{', '.join(_quoted(label) for label, _ in points)}]",
        f'    y-axis "accuracy" {max(low - 0.1, 0.0):.1f} --> 1',
        f"    line [{', '.join(f'{v:.4f}' for v in values)}]",
    ]
    if floor is not None:
        lines.append(f"    line [{', '.join(f'{floor:.4f}' for _ in values)}]")
    return [*lines, "```", ""]


def unprofiled_lines(record: MonitorRecord) -> list[str]:
    """Why each version shown as "not judged" was not."""
    if not record.unprofiled_versions:
        return []
    lines = ["Not judged (battles counted, never a breach):", ""]
    for version, reason in sorted(record.unprofiled_versions.items()):
        lines.append(f"- {escape(version_label(version))}: {escape(reason)}")
    return lines


def _short(instant: str) -> str:
    return datetime.fromisoformat(instant).strftime("%m-%d %H:%M")


def _quoted(label: str) -> str:
    """A Mermaid string: ours (dates and arrows), never holding a quote."""
    return '"' + label.replace('"', "") + '"'

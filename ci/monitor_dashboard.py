"""The monitoring dashboard: one self-contained HTML page of a monitoring pass, in pictures.

Live accuracy per version over the windows, with the moments a version started serving marked
(a promotion, or a rollback when an older version came back); the traffic per version; the
drift of every profiled feature in the latest window against its threshold. Written by
``ci monitor --dashboard`` beside monitor.json and uploaded with it by monitor.yml.

The charts are inline SVG drawn by matplotlib, with their text kept as text: the page loads
nothing from anywhere (an artifact is opened offline, a closed network has no CDN), and every
value from the log or the registry (versions above all: any string up to 40 characters) is
escaped for HTML and for matplotlib's mathtext.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ci.monitor_decision import WindowStatus
from machine_learning.monitoring.names import drift_metric

if TYPE_CHECKING:
    from ci.monitor_log import LogReader
    from ci.monitor_record import MonitorRecord

SVG_METADATA = ("Creator", "Date", "Format", "Type")  # left out: the page is the same each pass
MAX_CHANGES = 200  # change points read from the log: a flapping swap is shown, not scanned
SETTLE_S = 60.0  # changes closer than this are one swap (predictor processes swap in turn)
STATUS_COLOURS = {
    WindowStatus.HEALTHY: "#2e7d32",
    WindowStatus.BREACH: "#c62828",
    WindowStatus.NOT_ENOUGH_DATA: "#757575",
}


@dataclass(frozen=True)
class ServedChange:
    """The moment ``version`` began answering in place of ``previous``."""

    at: datetime
    version: str
    previous: str

    @property
    def is_rollback(self) -> bool:
        """An older registered version came back (versions are numbers; others never are)."""
        if self.version.isdigit() and self.previous.isdigit():
            return int(self.version) < int(self.previous)
        return False

    def label(self) -> str:
        verb = "rolled back to" if self.is_rollback else "promoted"
        return f"{verb} v{self.version}" if self.is_rollback else f"v{self.version} {verb}"


def served_changes(log: LogReader, start: datetime, end: datetime) -> list[ServedChange]:
    """When the answering version changed in ``[start, end)``, one change per swap."""
    changes = log.version_changes(start, end, MAX_CHANGES)
    return settled([ServedChange(at, new, old) for at, new, old in changes])


def settled(changes: list[ServedChange]) -> list[ServedChange]:
    """One change per swap: while several predictor processes move to the new version, the log
    alternates between the two for a moment. Changes less than SETTLE_S apart are one swap,
    from where the first began to where the last settled (none if that is where it began)."""
    kept: list[ServedChange] = []
    burst: list[ServedChange] = []
    for change in [*changes, None]:
        if change and burst and (change.at - burst[-1].at).total_seconds() < SETTLE_S:
            burst.append(change)
            continue
        if burst and burst[-1].version != burst[0].previous:
            kept.append(ServedChange(burst[0].at, burst[-1].version, burst[0].previous))
        burst = [change] if change else []
    return kept


def render(record: MonitorRecord, changes: list[ServedChange]) -> str:
    """The page: the decision, the three charts and the table of windows."""
    decision = record.decision
    colour = "#c62828" if decision.retrain else "#2e7d32"
    title = f"{record.model_name}: monitoring"
    sections = [
        f'<p id="decision" style="border-left:6px solid {colour};padding:6px 10px">'
        f"<strong>{'Retrain' if decision.retrain else 'Healthy'}</strong>: "
        f"{_text(decision.reason)}</p>",
        _figure("accuracy", "Live accuracy per version", _accuracy_svg(record, changes)),
        _figure("traffic", "Battles answered per version", _traffic_svg(record)),
        _figure("drift", "Drift in the latest window (PSI)", _drift_svg(record)),
        _table(record),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:1em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "figure{margin:1em 0}svg{max-width:100%;height:auto}</style></head><body>"
        f"<h1>{_text(title)}</h1><p>Generated {_text(record.generated_at)}; windows of "
        f"{record.window_seconds:,} s; thresholds from "
        f"{_text(record.thresholds_source or 'the registered model')}.</p>"
        + "".join(sections)
        + "</body></html>"
    )


def write(path: Path, record: MonitorRecord, changes: list[ServedChange]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(record, changes), encoding="utf-8")
    return path


def _figure(ident: str, caption: str, svg: str) -> str:
    return f'<figure id="{ident}"><figcaption><h2>{_text(caption)}</h2></figcaption>{svg}</figure>'


def _table(record: MonitorRecord) -> str:
    rows = []
    for window in record.windows:
        for entry in window.versions or [None]:
            version = entry.measurement.version if entry else "—"
            n_rows = entry.measurement.n_rows if entry else 0
            quality = entry.measurement.quality if entry else None
            breaches = "; ".join(b.describe() for b in entry.judgement.breaches) if entry else ""
            cells = [
                window.end,
                f"v{version}" if entry else version,
                f"{n_rows:,}",
                f"{quality.outcome_share:.0%}" if quality else "—",
                f"{quality.accuracy:.3f}" if quality else "—",
                str(entry.judgement.status if entry else window.status),
                breaches,
            ]
            rows.append("<tr>" + "".join(f"<td>{_text(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("window end", "version", "battles", "outcomes", "accuracy", "status", "breaches")
    )
    return (
        f'<table id="windows"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _accuracy_svg(record: MonitorRecord, changes: list[ServedChange]) -> str:
    fig, ax = _axes()
    ends = [datetime.fromisoformat(w.end) for w in record.windows]
    for version in _versions(record):
        points = [
            (end, entry.measurement.quality.accuracy)
            for end, window in zip(ends, record.windows, strict=True)
            for entry in window.versions
            if entry.measurement.version == version and entry.measurement.quality
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=_mathtext_safe(f"v{version}"))
    for threshold in record.thresholds:
        if threshold.metric == "accuracy":
            ax.axhline(threshold.threshold, color="#c62828", linestyle=":", label="threshold")
    for change in changes:
        ax.axvline(change.at, color="#c62828" if change.is_rollback else "#1565c0", alpha=0.6)
        ax.annotate(
            _mathtext_safe(change.label()),
            (change.at, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            fontsize=8,
        )
    ax.set_ylabel("accuracy on battles with outcomes")
    return _svg(fig, ax)


def _traffic_svg(record: MonitorRecord) -> str:
    fig, ax = _axes()
    labels = [w.end[:16].replace("T", " ") for w in record.windows]
    bottom = [0] * len(record.windows)
    for version in _versions(record):
        counts = [
            sum(e.measurement.n_rows for e in w.versions if e.measurement.version == version)
            for w in record.windows
        ]
        ax.bar(labels, counts, bottom=bottom, label=_mathtext_safe(f"v{version}"))
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    ax.set_ylabel("battles")
    return _svg(fig, ax)


def _drift_svg(record: MonitorRecord) -> str:
    fig, ax = _axes()
    latest = record.windows[-1].versions if record.windows else []
    limits = {t.metric: t.threshold for t in record.thresholds}
    height = 0.8 / max(len(latest), 1)
    for index, entry in enumerate(latest):
        drifts = [d for d in entry.measurement.drift if d.psi is not None]
        positions = [i + index * height for i in range(len(drifts))]
        ax.barh(
            positions,
            [d.psi for d in drifts],
            height=height,
            label=_mathtext_safe(f"v{entry.measurement.version}"),
        )
        if index == 0:
            ax.set_yticks(positions, [_mathtext_safe(d.feature) for d in drifts], fontsize=7)
            for position, drift in zip(positions, drifts, strict=True):
                limit = limits.get(drift_metric(drift.feature, "psi"))
                if limit is not None:
                    ax.plot([limit, limit], [position - 0.4, position + 0.4], color="#c62828")
    ax.set_xlabel("PSI against the version's training profile (red: threshold)")
    return _svg(fig, ax)


def _versions(record: MonitorRecord) -> list[str]:
    seen = {e.measurement.version for w in record.windows for e in w.versions}
    return sorted(seen, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(9, 3.6), dpi=96)


def _svg(fig, ax) -> str:
    """The figure as inline SVG, text kept as text (searchable, and escaped by matplotlib)."""
    import matplotlib.pyplot as plt

    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dashboard"}):
        fig.savefig(buffer, format="svg", metadata=dict.fromkeys(SVG_METADATA))
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _mathtext_safe(text: str) -> str:
    """A label matplotlib draws as written: ``$`` would start mathtext (and a malformed one
    raises), so it is escaped."""
    return text.replace("$", r"\$")


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)

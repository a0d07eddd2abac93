"""The run-comparison report: GitHub-flavoured markdown for the PR comment and job summary.

Rendering is a pure function of gate.json and the branch's history, so it is tested against
golden files; only ``branch_history`` talks to MLflow. A report never exceeds GitHub's comment
limit: history is trimmed first, then the details, and the report says what was left out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tabulate import tabulate

from ci.search_filters import tag_filter
from machine_learning.contract.gate_record import GateRecord, Verdict
from machine_learning.contract.metric_names import MAIN_METRIC
from machine_learning.contract.mlflow_names import (
    PARAM_INFERENCE_LOG_BATTLES,
    PARAM_INFERENCE_LOG_SHARE,
    PARAM_INFERENCE_LOG_SINCE,
    TAG_BRANCH,
    TAG_DATASET_VERSION,
    TAG_GATE_VERDICT,
    TAG_GIT_SHA,
    TAG_MODEL,
    TAG_PR_NUMBER,
    TAG_WINNER_RUN_ID,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

COMMENT_LIMIT = 65_536
HISTORY_METRICS = ("test_f1", "test_accuracy", "test_roc_auc")
ICONS = {
    Verdict.PASS: "✅ pass",
    Verdict.FAIL: "❌ fail",
    Verdict.NOISE: "〰️ within noise",
    Verdict.REPORTED: "📋 reported",
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "mlflow", "::1"}


def branch_history(client: MlflowClient, gate: GateRecord, limit: int = 20) -> list[dict]:
    """This PR's (or branch's) runs, newest first, one row per run, from one bounded query.
    A ``compare`` parent run is left out: its models have rows of their own."""
    candidate = gate.candidate
    if candidate.pr_number:
        key, value = TAG_PR_NUMBER, candidate.pr_number
    elif candidate.branch:
        key, value = TAG_BRANCH, candidate.branch
    else:
        return []
    runs = client.search_runs(
        [candidate.experiment_id],
        filter_string=f"{tag_filter(key, value)} and params.model != ''",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return [
        {
            "run_id": run.info.run_id,
            "sha": run.data.tags.get(TAG_GIT_SHA, "")[:7],
            "model": run.data.tags.get(TAG_MODEL, ""),
            "dataset": run.data.tags.get(TAG_DATASET_VERSION, ""),
            "time": datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime(
                "%Y-%m-%d %H:%M"
            ),
            "verdict": run.data.tags.get(TAG_GATE_VERDICT, ""),
            **{name: run.data.metrics.get(name) for name in HISTORY_METRICS},
        }
        for run in runs
        if TAG_WINNER_RUN_ID not in run.data.tags
    ]


def render(gate: GateRecord, history: list[dict], limit: int = COMMENT_LIMIT) -> str:
    """The whole report, within ``limit`` characters: history is cut first, then the details."""
    for details in (True, False):
        text = _longest_fitting(gate, history, details, limit)
        if text is not None:
            return text
    raise ValueError(f"even the shortest report exceeds {limit} characters")


def _longest_fitting(
    gate: GateRecord, history: list[dict], details: bool, limit: int
) -> str | None:
    """The report with the most history rows that fits (binary search), or None."""
    best, low, high = None, 0, len(history)
    while low <= high:
        rows = (low + high) // 2
        text = _assemble(gate, history[:rows], details, len(history) - rows)
        if len(text) <= limit:
            best, low = text, rows + 1
        else:
            high = rows - 1
    return best


def _assemble(gate: GateRecord, history: list[dict], details: bool, dropped_rows: int) -> str:
    parts = [headline(gate), metrics_table(gate)]
    if history:
        parts.append(history_section(gate, history))
    if details:
        parts.append(details_section(gate))
    trimmed = []
    if dropped_rows:
        trimmed.append(f"{dropped_rows} earlier run{'s' if dropped_rows > 1 else ''}")
    if not details:
        trimmed.append("the details (parameters, dataset, links)")
    if trimmed:
        parts.append(
            f"_Trimmed to fit GitHub's {COMMENT_LIMIT:,}-character limit: "
            f"{' and '.join(trimmed)} left out; the full report is in the job summary "
            "artifact._"
        )
    return "\n\n".join(parts) + "\n"


def headline(gate: GateRecord) -> str:
    candidate, champion = gate.candidate, gate.champion
    recent = (
        f" and {candidate.n_recent_test:,} recent battles held out of the inference log"
        if candidate.n_recent_test
        else ""
    )
    against = (
        f"against champion v{champion.version} (re-scored on this run's "
        f"{candidate.n_test:,} test battles{recent})"
        if champion
        else "— no champion yet: judged against the thresholds only"
    )
    sha = f"`{candidate.git_sha[:7]}`" if candidate.git_sha else "local run"
    return (
        f"### {'✅ Gate passed' if gate.passed else '❌ Gate failed'}: {sha} · "
        f"{candidate.model} · dataset {candidate.dataset_version} {against}"
    )


def metrics_table(gate: GateRecord) -> str:
    champion = gate.champion
    header = [
        "metric",
        "this run",
        f"champion v{champion.version}" if champion else "champion",
        "Δ",
        "95% interval",
        "threshold",
        "verdict",
    ]
    rows = []
    for row in gate.metrics:
        interval = row.interval
        rows.append(
            [
                row.metric,
                f"{row.candidate:.4f}",
                _number(row.champion),
                _number(row.delta, signed=True),
                f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "—",
                row.threshold,
                ICONS[row.verdict],
            ]
        )
    table = tabulate(rows, header, tablefmt="github", disable_numparse=True)
    if any(row.verdict == Verdict.REPORTED for row in gate.metrics):
        table += (
            "\n\n`recent_test_*`: recent battles held out of the inference log, "
            "reported beside the gate (judged only where a threshold names them)."
        )
    failing = [
        f"- `{row.metric}`: {row.reason}" for row in gate.metrics if row.verdict == Verdict.FAIL
    ]
    return "\n".join([table, *(["", *failing] if failing else [])])


def history_section(gate: GateRecord, history: list[dict]) -> str:
    candidate = gate.candidate
    scope = f"PR #{candidate.pr_number}" if candidate.pr_number else f"branch `{candidate.branch}`"
    rows = [
        [
            f"`{run['sha'] or '—'}`" + (" (this run)" if run["run_id"] == candidate.run_id else ""),
            f"`{run['run_id'][:8]}`",
            run.get("model") or "—",
            run.get("dataset") or "—",
            run["time"],
            *(_number(run[name]) for name in HISTORY_METRICS),
            run["verdict"] or "—",
        ]
        for run in history
    ]
    table = tabulate(
        rows,
        ["commit", "run", "model", "dataset", "started (UTC)", *HISTORY_METRICS, "gate"],
        tablefmt="github",
        disable_numparse=True,
    )
    return f"#### Runs of {scope}, newest first\n\n{table}\n\n{trend_chart(history)}"


def trend_chart(history: list[dict]) -> str:
    """A mermaid line chart of the main metric, oldest to newest; x labels are numbered, since
    several runs can share a commit."""
    points = [run for run in reversed(history) if run[MAIN_METRIC] is not None]
    if len(points) < 2:
        return ""
    values = [run[MAIN_METRIC] for run in points]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.2, 0.005)
    labels = ", ".join(
        f'"#{number} {run["sha"] or run["run_id"][:7]}"' for number, run in enumerate(points, 1)
    )
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            f'    title "{MAIN_METRIC} by run"',
            f"    x-axis [{labels}]",
            f'    y-axis "{MAIN_METRIC}" {max(low - pad, 0):.3f} --> {min(high + pad, 1):.3f}',
            f"    line [{', '.join(f'{v:.4f}' for v in values)}]",
            "```",
        ]
    )


def details_section(gate: GateRecord) -> str:
    candidate, champion = gate.candidate, gate.champion
    blocks = []
    if champion:
        ours, theirs = candidate.params, champion.params
        changed = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
        rows = [[f"`{key}`", ours.get(key, "—"), theirs.get(key, "—")] for key in changed]
        table = (
            tabulate(
                rows,
                ["param", "this run", f"champion v{champion.version}"],
                tablefmt="github",
                disable_numparse=True,
            )
            if rows
            else "No parameter differs."
        )
        blocks.append(
            _collapsible(f"Parameters that differ from the champion's ({len(rows)})", table)
        )
    dataset = tabulate(
        [
            ["dataset version", candidate.dataset_version],
            ["training battles", _training_battles(candidate.n_train, candidate.params)],
            ["test battles", f"{candidate.n_test:,}"],
            ["dataset digest", f"`{candidate.dataset_digest}`"],
            ["test set digest", f"`{candidate.test_digest}`"],
            ["thresholds from", gate.thresholds_source],
            ["bootstrap resamples", str(gate.resamples) if gate.resamples else "—"],
        ],
        ["", ""],
        tablefmt="github",
        disable_numparse=True,
    )
    blocks.append(_collapsible("Dataset and method", dataset))
    links = []
    if candidate.run_url and urlsplit(candidate.run_url).hostname not in LOCAL_HOSTS:
        links.append(f"- [MLflow run]({candidate.run_url})")
    if candidate.workflow_run_url:
        links.append(f"- [Workflow run]({candidate.workflow_run_url})")
    links.append(f"- MLflow run id `{candidate.run_id}`")
    blocks.append(_collapsible("Links", "\n".join(links)))
    return "\n\n".join(blocks)


def _training_battles(n_train: str, params: dict[str, str]) -> str:
    """Simulated training battles, and the inference log's when the run read one."""
    logged = params.get(PARAM_INFERENCE_LOG_BATTLES)
    if logged is None:
        return n_train
    return (
        f"{n_train} simulated + {logged} from the inference log (last "
        f"{params.get(PARAM_INFERENCE_LOG_SINCE, '?')}, log share of the weight: "
        f"{params.get(PARAM_INFERENCE_LOG_SHARE, '?')})"
    )


def _collapsible(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"

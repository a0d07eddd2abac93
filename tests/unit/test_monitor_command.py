"""``ci monitor`` before it reaches any server: its arguments and the log URL fail as bad input
(exit 2, one line, the password never shown); the console lines and the job summary; the
windows a pass cuts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from ci.monitor import describe, shown, window_bounds
from ci.monitor_decision import MAX_MIN_ROWS, MAX_WINDOWS, MIN_ROWS
from ci.monitor_record import MeasuredWindow, build_record
from ci.monitor_summary import escape, render
from ci.monitor_thresholds import MonitorThreshold
from machine_learning.contract.inference_log import ENVIRONMENT_VARIABLE
from machine_learning.monitoring.drift import FeatureDrift
from machine_learning.monitoring.profile import FeatureKind
from machine_learning.monitoring.quality import LiveQuality
from machine_learning.monitoring.window import WindowMeasurement
from tests.conftest import cli_env, run_cli

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = [MonitorThreshold("diff_bst.psi", 0.2, False), MonitorThreshold("accuracy", 0.85, True)]
HOSTILE = "<img src=x onerror=alert(1)>|**[x](http://e.vil)**\n::error::"[:40]


def monitor(tmp_path, *args: str, **env: str):
    return run_cli("monitor", *args, cwd=tmp_path, module="ci", env=cli_env(**env))


def one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def sqlite_log(tmp_path) -> str:
    from sqlalchemy import create_engine

    from machine_learning.contract.inference_log import metadata

    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    engine.dispose()
    return f"sqlite:///{tmp_path / 'log.db'}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "0d"], "argument --window: must be between 1m and 366d"),
        (["--window", "1x"], "argument --window: expected a whole number and a unit"),
        (["--windows", "0"], "argument --windows: must be between 1 and 365"),
        (["--min-rows", "0"], "argument --min-rows: must be between 1 and 1,000"),
        (["--min-breaches", "6"], "--min-breaches 6 is more than --windows 5"),
        (["--min-breaches", "3", "--windows", "2"], "--min-breaches 3 is more than --windows 2"),
    ],
)
def test_bad_windows_and_rules_are_bad_input(tmp_path, sqlite_log, args, message):
    done = monitor(tmp_path, "--inference-log", sqlite_log, *args)
    assert done.returncode == 2
    assert message in one_error_line(done)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "the inference log URL is not a database URL"),
        ("mysql://monitor:s3cret-pw@db/log", "kept in PostgreSQL or SQLite, not 'mysql'"),
        ("sqlite:///{tmp}/absent.db", "no inference log at"),
        ("sqlite://", "no inference log at an in-memory database"),
        ("sqlite:///{tmp}/empty.db", "is not an inference log: it has no battles or outcomes"),
    ],
)
def test_a_log_url_that_names_no_inference_log_is_bad_input(tmp_path, url, message):
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    done = monitor(tmp_path, "--inference-log", url.format(tmp=tmp_path))
    assert done.returncode == 2
    line = one_error_line(done)
    assert message in line and "s3cret-pw" not in done.stderr + done.stdout
    assert not (tmp_path / "absent.db").exists()  # never created by looking
    assert not (tmp_path / "mlflow.db").exists()  # refused before MLflow was asked


def test_the_log_url_comes_from_the_environment_and_is_required(tmp_path, sqlite_log):
    done = monitor(tmp_path)
    assert done.returncode == 2
    assert "--inference-log URL, or set $INFERENCE_LOG_URL" in one_error_line(done)
    done = monitor(tmp_path, "--window", "0d", **{ENVIRONMENT_VARIABLE: "x://u:pw@h/d"})
    assert done.returncode == 2 and "pw" not in done.stderr.replace("--window", "")


def test_the_command_line_s_defaults_are_the_modules_own():
    from ci import cli

    assert cli.INFERENCE_LOG_VARIABLE == ENVIRONMENT_VARIABLE
    assert (cli.MONITOR_MIN_ROWS, cli.MONITOR_MAX_MIN_ROWS) == (MIN_ROWS, MAX_MIN_ROWS)
    assert cli.MONITOR_MAX_WINDOWS == MAX_WINDOWS
    from ci.thresholds_command import FAMILIES

    assert tuple(FAMILIES) == cli.THRESHOLD_FAMILIES


def test_help_states_the_decision_rule_its_defaults_and_exit_codes(tmp_path):
    done = monitor(tmp_path, "--help", **{ENVIRONMENT_VARIABLE: "postgresql://u:s3cret@h/d"})
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    for fact in (
        "retrain when at least --min-breaches of the last --windows windows breach and the "
        "latest does",
        "(default: 1d)",
        "(default: 5)",
        "(default: 2)",
        "(default: 200)",
        "monitor.<metric>",
        "1 retraining needed",
        "3 the tracking server or the inference log's database",
    ):
        assert fact in text, fact
    assert "s3cret" not in done.stdout


def test_windows_are_adjacent_oldest_first_and_the_last_ends_now():
    bounds = window_bounds(NOW, 86_400, 3)
    assert [end - start for start, end in bounds] == [timedelta(days=1)] * 3
    assert bounds[-1][1] == NOW and bounds[0][0] == NOW - timedelta(days=3)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


# --- what a pass prints and summarises ------------------------------------------------------


def measurement(version: str, n_rows: int, psi: float, accuracy: float | None, outcomes: int = 0):
    drift = [FeatureDrift("diff_bst", FeatureKind.CONTINUOUS, n_rows, 0, psi, "ks_2samp", 0.1, 0.3)]
    drift.append(FeatureDrift("p_a_wins", FeatureKind.CONTINUOUS, n_rows, 0, psi / 2, "", None))
    quality = None
    if accuracy is not None:
        quality = LiveQuality(outcomes, outcomes / n_rows, accuracy, accuracy, 0.2, 0.02)
    return WindowMeasurement(version, n_rows, drift, quality)


def record(windows: list[MeasuredWindow], reasons: dict[str, str] | None = None):
    return build_record(
        "pokemon-battle",
        NOW.isoformat(),
        86_400,
        RULES,
        windows,
        min_breaches=min(2, len(windows)),
        n_windows=len(windows),
        unprofiled_versions=reasons,
    )


def window(days_ago: int, measurements, unprofiled=None, logged=None) -> MeasuredWindow:
    start = NOW - timedelta(days=days_ago + 1)
    end = NOW - timedelta(days=days_ago)
    return MeasuredWindow(
        start.isoformat(), end.isoformat(), measurements, unprofiled or {}, logged or {}
    )


@pytest.fixture
def drifting():
    return record(
        [
            window(3, [measurement("1", 400, 0.05, 0.93, 200)]),
            window(2, []),  # nobody answered
            window(1, [measurement("1", 400, 0.9, 0.81, 300)], {HOSTILE: 30}),
            window(
                0,
                [measurement("1", 10_000, 1.2, 0.79, 100), measurement("2", 50, 0.01, None)],
                {HOSTILE: 5, "": 7},
                {"1": 25_000, "2": 50},
            ),
        ],
        {HOSTILE: "not a version of pokemon-battle", "": "served by a model outside the registry"},
    )


def test_escaping_leaves_no_markup_html_or_line_break():
    text = escape(HOSTILE)
    assert "<" not in text and ">" not in text and "\n" not in text
    assert "&lt;img" in text and "\\|" in text and "\\*\\*" in text and "\\[x\\]" in text
    assert escape("v12") == "v12"


def test_the_summary_has_a_row_per_window_and_version_and_the_decision(drifting):
    text = render(drifting)
    assert drifting.decision.retrain and drifting.exit_code == 1
    assert text.startswith("### Monitoring pokemon\\-battle: 🔁 retraining needed")
    assert f"**Decision: retrain**: {escape('2 of the last 4 windows breach (at least 2)')}" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1")]
    assert len(rows) == 1 + 1 + 2 + 4  # window 2 has one row saying no battles
    assert all(row.count(" | ") == 6 for row in rows)  # 7 cells: nothing broke the table
    latest = [row for row in rows if "| v1 |" in row][-1]
    assert "| 25,000 (10,000 read) | 1% | 0.790 | diff\\_bst PSI 1.200 | ❌ breach:" in latest
    assert "diff\\_bst.psi 1.2 \\> 0.2" not in latest  # ">" is an entity, never markup
    assert "diff\\_bst\\.psi 1\\.2 &gt; 0\\.2" in latest
    assert (
        "| v2 | 50 | — | — | diff\\_bst PSI 0.010 | ⚪ not enough data (fewer than 200 battles) |"
        in text
    )
    assert "| — | 0 | — | — | — | ⚪ not enough data |" in text
    assert f"| {escape('(no version)')} | 7 |" in text
    assert "<img" not in text and "\n::error" not in text
    assert "- v&lt;img src\\=x onerror\\=alert\\(1\\)&gt;\\|" in text


def test_the_summary_charts_live_accuracy_per_window_against_its_floor(drifting):
    lines = render(drifting).splitlines()
    chart = lines[lines.index("```mermaid") : lines.index("```mermaid") + 8]
    assert chart[1] == "xychart-beta"
    assert chart[3] == '    x-axis ["11-28 12:00", "11-30 12:00", "12-01 12:00"]'  # with outcomes
    assert chart[5] == "    line [0.9300, 0.8100, 0.7900]"
    assert chart[6] == "    line [0.8500, 0.8500, 0.8500]"
    assert chart[7] == "```"
    assert chart[4] == '    y-axis "accuracy" 0.6 --> 1'


def test_no_outcome_means_no_chart_and_says_so():
    quiet = record([window(0, [measurement("1", 400, 0.05, None)])])
    text = render(quiet)
    assert "```mermaid" not in text and "No battle has an outcome yet" in text
    assert not quiet.decision.retrain and "keep the champion" in text


def test_the_console_lines_quote_versions_that_are_not_registry_numbers(drifting):
    lines = describe(drifting)
    assert len(lines) == 4 + 2 + 1
    assert "\n" not in "".join(lines)
    assert shown(HOSTILE) == repr(HOSTILE) and shown("") == "(no version)" and shown("3") == "v3"
    assert "v1 10,000 battles, accuracy 0.790: breach (diff_bst.psi 1.2 > 0.2" in lines[3]
    assert lines[-1].startswith("decision: retrain: 2 of the last 4 windows breach")
    assert "no battles" in lines[1]

"""The monitoring dashboard (ci/monitor_dashboard.py): promotions and rollbacks read from a real
inference log, hostile versions shown as text, and the page looked at in a real browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ci.monitor_dashboard import ServedChange, served_changes, settled, write
from ci.monitor_log import LogReader
from ci.monitor_record import MeasuredWindow, build_record
from ci.monitor_thresholds import MonitorThreshold
from machine_learning.contract.inference_log import battles, metadata
from machine_learning.monitoring.drift import FeatureDrift
from machine_learning.monitoring.profile import FeatureKind
from machine_learning.monitoring.quality import LiveQuality
from machine_learning.monitoring.window import WindowMeasurement

T0 = datetime(2026, 12, 1, tzinfo=UTC)
HOSTILE = '<img src=x onerror="document.title=1">$\\'
RULES = [MonitorThreshold("diff_bst.psi", 0.2, False), MonitorThreshold("accuracy", 0.85, True)]


def _row(at: datetime, version: str, index: int) -> dict:
    sides = {
        f"{side}_{column}": value
        for side in "ab"
        for column, value in (("name", "Pikachu"), ("type1", "Electric"), ("type2", None))
    }
    stats = {f"{side}_{stat}": 50 for side in "ab" for stat in ("hp", "atk", "def")}
    stats |= {f"{side}_{stat}": 50 for side in "ab" for stat in ("spa", "spd", "spe")}
    return {
        "battle_id": f"{index:032x}-0",
        "logged_at": at,
        "request_id": None,
        "model_version": version,
        "p_a_wins": 0.5,
        **sides,
        **stats,
    }


def test_promotions_and_rollbacks_come_from_the_log_and_a_swap_counts_once(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    served = (
        [(T0 + timedelta(minutes=m), "1") for m in range(10)]
        # two predictor processes swap to v2 one after the other: the log alternates briefly
        + [(T0 + timedelta(minutes=10, seconds=s), v) for s, v in ((0, "2"), (5, "1"), (9, "2"))]
        + [(T0 + timedelta(minutes=m), "2") for m in range(11, 20)]
        # a flap that comes back where it was is no change at all
        + [(T0 + timedelta(minutes=20, seconds=s), v) for s, v in ((0, "1"), (3, "2"))]
        + [(T0 + timedelta(minutes=m), "1") for m in range(30, 35)]  # rolled back
    )
    with engine.begin() as connection:
        connection.execute(battles.insert(), [_row(at, v, i) for i, (at, v) in enumerate(served)])
    with LogReader(f"sqlite:///{tmp_path / 'log.db'}") as log:
        changes = served_changes(log, T0, T0 + timedelta(hours=1))
        later = served_changes(log, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert [(c.at, c.version, c.previous, c.label()) for c in changes] == [
        (T0 + timedelta(minutes=10), "2", "1", "v2 promoted"),
        (T0 + timedelta(minutes=30), "1", "2", "rolled back to v1"),
    ]
    assert later == []


def test_a_swap_that_ends_elsewhere_is_one_change_from_where_it_began():
    at = [T0 + timedelta(seconds=s) for s in (0, 10, 20)]
    changes = [ServedChange(at[0], "2", "1"), ServedChange(at[1], "3", "2")]
    assert settled(changes) == [ServedChange(at[0], "3", "1")]
    assert not ServedChange(at[2], "canary", "2").is_rollback  # not a number: never a rollback


def _measurement(version: str, psi: float, accuracy: float) -> WindowMeasurement:
    drift = [
        FeatureDrift(name, FeatureKind.CONTINUOUS, 1_000, 0, value, "ks_2samp", 0.1, 0.3)
        for name, value in (("diff_bst", psi), ("log_bulk_ratio", psi / 4))
    ]
    quality = LiveQuality(500, 0.5, accuracy, accuracy, 0.3, 0.02)
    return WindowMeasurement(version, 1_000, drift, quality)


def _record():
    windows = [
        [_measurement("3", 0.05, 0.93)],
        [_measurement("3", 0.9, 0.84), _measurement(HOSTILE, 0.1, 0.9)],
        [_measurement("4", 0.05, 0.92)],
    ]
    measured = [
        MeasuredWindow(
            (T0 + timedelta(days=i)).isoformat(), (T0 + timedelta(days=i + 1)).isoformat(), m
        )
        for i, m in enumerate(windows)
    ]
    end = (T0 + timedelta(days=3)).isoformat()
    return build_record("pokemon-battle", end, 86_400, RULES, measured, min_breaches=1, n_windows=3)


def test_the_page_escapes_what_the_log_says_and_loads_nothing(tmp_path):
    changes = [ServedChange(T0 + timedelta(days=2, hours=3), "4", "3")]
    page = write(tmp_path / "dashboard.html", _record(), changes).read_text()
    assert "<img" not in page and "onerror=&quot;" in page  # escaped, in the table and the SVG
    assert page.count("<svg") == 3
    assert not any(load in page for load in ("<script", 'href="http', "url(http", "@import"))
    assert "v4 promoted" in page and "Healthy" in page


def test_a_person_sees_accuracy_traffic_and_drift_with_the_promotion_marked(tmp_path, browser):
    from selenium.webdriver.common.by import By

    changes = [ServedChange(T0 + timedelta(days=2, hours=3), "4", "3")]
    path = write(tmp_path / "dashboard.html", _record(), changes)
    browser.get(path.as_uri())
    assert browser.title == "pokemon-battle: monitoring"  # the hostile version ran no script
    assert browser.find_element(By.ID, "decision").text.startswith("Healthy:")
    for chart in ("accuracy", "traffic", "drift"):
        svg = browser.find_element(By.CSS_SELECTOR, f"#{chart} svg")
        assert svg.is_displayed() and svg.size["width"] > 400 and svg.size["height"] > 100
    accuracy = browser.find_element(By.CSS_SELECTOR, "#accuracy svg").text
    assert "v3" in accuracy and "v4" in accuracy and "v4 promoted" in accuracy
    assert "diff_bst" in browser.find_element(By.CSS_SELECTOR, "#drift svg").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#windows tbody tr")
    assert len(rows) == 4 and "breach" in rows[1].text and HOSTILE in rows[2].text
    assert browser.find_elements(By.TAG_NAME, "img") == []


@pytest.mark.parametrize("version", ["$", "$x", "a$b$c", "\\"])
def test_a_version_matplotlib_would_read_as_mathtext_is_drawn_as_written(tmp_path, version):
    record = build_record(
        "m",
        (T0 + timedelta(days=1)).isoformat(),
        86_400,
        RULES,
        [
            MeasuredWindow(
                T0.isoformat(),
                (T0 + timedelta(days=1)).isoformat(),
                [_measurement(version, 0.05, 0.93)],
            )
        ],
        min_breaches=1,
        n_windows=1,
    )
    assert version in write(tmp_path / "d.html", record, []).read_text()

"""Reading the inference log for retraining: the join, the window, the split, the weights, and
the one line a log that cannot be read gives. A real SQLite log, filled as the predictor would."""

from __future__ import annotations

import argparse
import socket
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from machine_learning.contract.arguments import describe_window, time_window
from machine_learning.contract.failures import EXIT_BAD_INPUT, EXIT_UNREACHABLE, BadInput, Failure
from machine_learning.datasets import LABEL, battles, make_battle_data
from machine_learning.recent_battles import (
    RECENT_TEST_SHARE,
    held_out_mask,
    log_weights,
    read_recent,
    with_recent,
)
from machine_learning.simulator import Scenario
from tests.inference_log import create_log, log_battles


@pytest.fixture
def log_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'inference.db'}"
    create_log(url)
    return url


def test_only_battles_with_outcomes_inside_the_window_are_read(log_url):
    now = datetime.now(UTC)
    recent = battles(300, Scenario.BALANCED, 1)
    ids = log_battles(log_url, recent, logged_at=now - timedelta(days=2))
    log_battles(log_url, battles(50, Scenario.BALANCED, 2), outcomes=False)
    log_battles(log_url, battles(40, Scenario.BALANCED, 3), logged_at=now - timedelta(days=40))

    read = read_recent(log_url, timedelta(days=30), now)
    assert len(read.train) + len(read.test) == 300  # no outcome, or too old: left out
    assert len(read_recent(log_url, timedelta(days=1), now).train) == 0
    together = pd.concat([read.train, read.test])
    expected = recent.iloc[np.argsort(ids)].reset_index(drop=True)  # read in battle_id order
    mask = held_out_mask(sorted(ids))
    assert together.reset_index(drop=True).equals(
        pd.concat([expected[~mask], expected[mask]]).reset_index(drop=True)
    )


def test_logged_rows_stack_with_simulated_ones_and_the_weights_name_the_share(log_url):
    log_battles(log_url, battles(400, Scenario.BALANCED, 4))
    recent = read_recent(log_url, timedelta(days=30))
    data = make_battle_data(1_000, Scenario.RANDOM, 0, n_test=200)

    plain = with_recent(data, recent, None)
    assert list(plain.train.dtypes) == list(data.train.dtypes)  # "" for no second type, ints
    assert len(plain.train) == 1_000 + len(recent.train) and plain.logged == len(recent.train)
    assert plain.weights is None and plain.recent_test is recent.test
    assert plain.test is data.test  # the simulated test set is untouched
    weighted = with_recent(data, recent, 0.5)
    logged = weighted.weights[1_000:]
    assert logged.sum() / weighted.weights.sum() == pytest.approx(0.5)
    assert weighted.weights.mean() == pytest.approx(1.0)


def test_the_held_out_part_is_stable_and_about_its_share():
    ids = [f"{i:032x}-{i % 7}" for i in range(20_000)]
    mask = held_out_mask(ids)
    assert mask.mean() == pytest.approx(RECENT_TEST_SHARE, abs=0.01)
    assert np.array_equal(held_out_mask(ids[::-1]), mask[::-1])  # per id, not per position


def test_no_share_means_no_weights():
    assert log_weights(100, 50, None) is None
    assert log_weights(100, 0, 0.5) is None
    weights = log_weights(300, 100, 0.75)
    assert weights[-1] == pytest.approx(3.0) and weights[0] == pytest.approx(1 / 3)


def test_too_few_held_out_battles_are_not_scored(log_url):
    log_battles(log_url, battles(30, Scenario.BALANCED, 5))
    recent = read_recent(log_url, timedelta(days=30))
    assert not recent.empty and not recent.scored
    data = with_recent(make_battle_data(500, Scenario.RANDOM, 0, n_test=200), recent, None)
    assert data.recent_test is None and data.logged == len(recent.train)


def test_a_missing_sqlite_file_or_a_database_without_the_tables_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such SQLite file") as missing:
        read_recent(f"sqlite:///{tmp_path / 'nothing.db'}", timedelta(days=1))
    assert missing.value.code == EXIT_BAD_INPUT
    assert not (tmp_path / "nothing.db").exists()  # SQLite was not left to create it
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    with pytest.raises(BadInput, match="no battles or outcomes table: not an inference log"):
        read_recent(f"sqlite:///{other}", timedelta(days=1))
    with pytest.raises(BadInput, match="not a database URL"):
        read_recent("nosuchdialect://host/db", timedelta(days=1))


def test_a_log_server_that_does_not_answer_is_unreachable_without_its_password():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://reader:s3cret-pw@127.0.0.1:{port}/inference"
    with pytest.raises(Failure) as down:
        read_recent(url, timedelta(days=1))
    assert down.value.code == EXIT_UNREACHABLE
    assert "does not answer" in str(down.value) and "s3cret-pw" not in str(down.value)
    assert f"reader:***@127.0.0.1:{port}" in str(down.value)


@pytest.mark.parametrize(("text", "days"), [("30d", 30), ("12h", 0.5), ("1D", 1)])
def test_windows_in_days_or_hours(text, days):
    assert time_window(text) == timedelta(days=days)
    assert time_window(describe_window(time_window(text))) == time_window(text)


@pytest.mark.parametrize("text", ["0d", "abc", "30", "-1d", "1.5d", "99999d", ""])
def test_empty_or_unreadable_windows_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        time_window(text)


def test_logged_labels_are_the_outcomes(log_url):
    table = battles(200, Scenario.RANDOM, 6)
    log_battles(log_url, table)
    recent = read_recent(log_url, timedelta(days=1))
    assert sorted(pd.concat([recent.train, recent.test])[LABEL]) == sorted(table[LABEL])


def test_a_busy_log_is_read_up_to_its_newest_battles(log_url, monkeypatch):
    """A month of a busy log would not fit a runner's memory: the newest MAX_LOG_BATTLES are
    read, the older ones left."""
    from machine_learning import recent_battles

    monkeypatch.setattr(recent_battles, "MAX_LOG_BATTLES", 100)
    now = datetime.now(UTC)
    old, new = battles(100, Scenario.RANDOM, 3), battles(100, Scenario.BALANCED, 4)
    log_battles(log_url, old, logged_at=now - timedelta(hours=2))
    log_battles(log_url, new, logged_at=now - timedelta(hours=1))
    recent = read_recent(log_url, timedelta(days=1))
    read = pd.concat([recent.train, recent.test])
    assert sorted(read["a_name"]) == sorted(new["a_name"])

"""The inference log on a SQLite file, behind the real service (uvicorn on loopback, stand-in
model): what a row holds, outcomes and their answers, a full queue, a database that is not
there yet, retention, and the URLs refused at start."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine, insert, select

from machine_learning.cli import build_parser
from machine_learning.contract.inference_log import (
    DEFAULT_RETENTION_DAYS,
    REQUEST_ID_CHARS,
    battles,
    metadata,
    outcomes,
)
from machine_learning.datasets import RAW_COLUMNS
from machine_learning.serving.inference_log import InferenceLog
from machine_learning.serving.predict import ModelInfo, Predictor
from machine_learning.serving.serve import ServedModelFollower, create_app
from tests.conftest import cli_env, run_cli
from tests.http_service import request, served, wait_for

BATTLE_ID = re.compile(r"^[0-9a-f]{32}-\d+$")
PAIRS = {"battles": [{"a": "pikachu", "b": "charizard"}, {"a": "Mewtwo", "b": "magikarp"}]}


class QuarterModel:
    """Side a wins three times in four, whatever the battle."""

    def predict_proba(self, rows):
        return np.tile([0.25, 0.75], (len(rows), 1))


def follower() -> ServedModelFollower:
    """Registered version 7 of a stand-in model, serving."""
    following = ServedModelFollower("models:/m/7", client=None)
    following.current = Predictor(
        ModelInfo(uri="models:/m/7", name="m", version="7"), QuarterModel()
    )
    return following


def sqlite_url(tmp_path, name: str = "log.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def table_rows(url: str, table) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(select(table))]
    finally:
        engine.dispose()


@pytest.fixture
def logged(tmp_path):
    """The service with a started inference log on a SQLite file: (base URL, log, log URL)."""
    url = sqlite_url(tmp_path)
    log = InferenceLog(url, DEFAULT_RETENTION_DAYS).start()
    try:
        with served(create_app(follower(), ["127.0.0.1"], log)) as base:
            yield base, log, url
    finally:
        log.stop()


def predicted(base: str, body: dict = PAIRS, **headers: str) -> tuple[list[dict], dict]:
    status, answer, answered_headers = request(base + "/v1/predict", body, headers)
    assert status == 200, answer
    return answer["predictions"], answered_headers


def test_every_answered_battle_is_one_row_with_its_id_version_request_and_columns(logged):
    base, log, url = logged
    before = datetime.now(UTC).replace(tzinfo=None)
    predictions, headers = predicted(base, **{"X-Request-Id": "checkout-42"})
    assert headers["X-Request-Id"] == "checkout-42"
    ids = [p["battle_id"] for p in predictions]
    assert all(BATTLE_ID.match(i) for i in ids) and [i[-2:] for i in ids] == ["-0", "-1"]
    assert ids[0][:32] == ids[1][:32]  # one draw per request
    raw = dict.fromkeys(RAW_COLUMNS, 100) | {
        "a_name": "X", "a_type1": "Fire", "a_type2": None,
        "b_name": "Y", "b_type1": "Water", "b_type2": "Ice",
    }  # fmt: skip
    (raw_prediction,), headers = predicted(base, {"battles": [raw]})
    assert "X-Request-Id" not in headers
    assert log.flush()
    rows = {row["battle_id"]: row for row in table_rows(url, battles)}
    assert set(rows) == {*ids, raw_prediction["battle_id"]}
    first = rows[ids[0]]
    assert first["model_version"] == "7" and first["request_id"] == "checkout-42"
    assert first["p_a_wins"] == 0.75 == predictions[0]["p_a_wins"]
    assert (first["a_name"], first["a_type1"], first["a_type2"], first["a_hp"]) == (
        "Pikachu",
        "Electric",
        "",
        35,
    )  # fmt: skip  (as the model saw it: the Pokédex's spelling and stats)
    assert (first["b_name"], first["b_type2"], first["b_spe"]) == ("Charizard", "Flying", 100)
    assert rows[ids[1]]["a_name"] == "Mewtwo"
    assert before <= first["logged_at"] <= datetime.now(UTC).replace(tzinfo=None)
    odd = rows[raw_prediction["battle_id"]]
    assert odd["request_id"] is None and odd["b_type2"] == "Ice" and odd["a_type2"] == ""
    assert odd["a_spe"] == 100


def test_battles_asked_as_columns_are_logged_and_answered_their_ids_as_a_column(logged):
    base, log, url = logged
    status, answer, _ = request(
        base + "/v1/predict", {"battles": {"a": ["pikachu", "mew"], "b": ["onix", "Mewtwo"]}}
    )
    assert status == 200, answer
    ids = answer["predictions"]["battle_id"]
    assert len(ids) == 2 and all(BATTLE_ID.match(i) for i in ids)
    assert log.flush()
    rows = {row["battle_id"]: row for row in table_rows(url, battles)}
    assert [(rows[i]["a_name"], rows[i]["b_name"]) for i in ids] == [
        ("Pikachu", "Onix"),
        ("Mew", "Mewtwo"),
    ]


def test_the_request_id_is_cut_to_the_columns_length(logged):
    base, log, url = logged
    long = "r" * (REQUEST_ID_CHARS + 50)
    predictions, headers = predicted(base, **{"X-Request-Id": long})
    assert headers["X-Request-Id"] == long[:REQUEST_ID_CHARS]
    assert log.flush()
    (row,) = [r for r in table_rows(url, battles) if r["battle_id"] == predictions[0]["battle_id"]]
    assert row["request_id"] == long[:REQUEST_ID_CHARS]


def test_a_synthetic_request_is_answered_and_kept_out_of_the_log(logged, tmp_path):
    """ci verify's canary battles: a monitor would read them as traffic (and they never get an
    outcome). Its client marks them; the predictor answers them and logs nothing."""
    from machine_learning.serving.client import PredictorClient

    base, log, url = logged
    status, answer, _ = PredictorClient(base, synthetic=True).predict(PAIRS["battles"])
    assert status == 200 and "battle_id" not in answer["predictions"][0]
    kept, _ = predicted(base)
    assert log.flush()
    assert [row["battle_id"] for row in table_rows(url, battles)] == [p["battle_id"] for p in kept]


def outcomes_of(base: str, *pairs: tuple[str, str], path: str = "/v1/outcomes"):
    body = {"outcomes": [{"battle_id": battle, "winner": winner} for battle, winner in pairs]}
    status, answer, _ = request(base + path, body)
    return status, answer


def test_outcomes_are_recorded_once_unknown_ids_reported_and_the_first_winner_kept(logged):
    base, _, url = logged
    first, second = (p["battle_id"] for p in predicted(base)[0])
    # Posted at once, while the battles are still queued: the log flushes before it looks.
    status, answer = outcomes_of(base, (first, "a"))
    assert (status, answer) == (
        200,
        {"recorded": 1, "already_recorded": 0, "unknown": [], "conflicting": []},
    )
    assert outcomes_of(base, (first, "a"), path="/outcomes")[1] == {
        "recorded": 0,
        "already_recorded": 1,
        "unknown": [],
        "conflicting": [],
    }  # fmt: skip  (the unversioned alias, and a repeat changes nothing)
    nowhere = "0" * 32 + "-0"
    status, answer = outcomes_of(base, (first, "b"), (second, "b"), (nowhere, "a"), (second, "a"))
    assert status == 200 and answer == {
        "recorded": 1,
        "already_recorded": 0,
        "unknown": [nowhere],
        "conflicting": [first, second],
    }
    stored = {row["battle_id"]: row["a_wins"] for row in table_rows(url, outcomes)}
    assert stored == {first: True, second: False}  # the first winner of each, nothing unknown


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"outcomes": []}, 422, "outcomes: List should have at least 1 item"),
        ({"outcomes": [{"battle_id": "x-0", "winner": "c"}]}, 422, "outcomes.0.winner: Input"),
        ({"outcomes": [{"winner": "a"}]}, 422, "outcomes.0.battle_id: Field required"),
        ({"outcomes": [{"battle_id": "x" * 41, "winner": "a"}]}, 422, "at most 40 characters"),
        ({"outcomes": [{"battle_id": "", "winner": "a"}]}, 422, "at least 1 character"),
        ({"results": []}, 422, "outcomes: Field required"),
        ([1, 2], 422, "Input should be a valid dictionary"),
        ({"outcomes": [{"battle_id": "x-0", "winner": "a"}] * 10_001}, 413, "at most 10,000"),
        ({"outcomes": {"battle_id": ["x-0"] * 10_001}}, 422, "outcomes: Input should be a valid"),
        (b"{not json", 400, "not JSON we accept"),
        (b'{"outcomes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "recursion limit"),
    ],
)
def test_malformed_outcomes_are_refused_in_one_line(logged, body, status, reason):
    base, _, url = logged
    answered, answer, _ = request(base + "/v1/outcomes", body)
    assert answered == status, answer
    (line,) = answer["error"].splitlines()
    assert reason in line
    assert table_rows(url, outcomes) == []


def test_without_a_log_outcomes_say_how_to_start_one():
    with served(create_app(follower(), ["127.0.0.1"])) as base:
        status, answer = outcomes_of(base, ("0" * 32 + "-0", "a"))
        predictions, _ = predicted(base)
        health = request(base + "/health")[1]
    assert status == 404
    (line,) = answer["error"].splitlines()
    assert "start serve with --inference-log URL (or INFERENCE_LOG_URL)" in line
    assert all("battle_id" not in p for p in predictions)
    assert health["inference_log"] is None and health["inference_log_error"] is None


def metric(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


def test_a_full_queue_drops_and_counts_and_one_request_is_one_item(tmp_path):
    """The writer has not caught up (not started here): the answers do not wait for it."""
    log = InferenceLog(sqlite_url(tmp_path), DEFAULT_RETENTION_DAYS, queue_battles=3)
    with served(create_app(follower(), ["127.0.0.1"], log)) as base:
        predicted(base)  # 2 battles: queued
        predictions, _ = predicted(base)  # 2 more would not fit: dropped, still answered
        assert len(predictions) == 2 and all("battle_id" in p for p in predictions)
        text = request(base + "/metrics")[1]
    assert metric(text, 'inference_log_rows_dropped_total{reason="queue_full"}') == 2
    assert metric(text, 'inference_log_rows_dropped_total{reason="database"}') == 0
    assert metric(text, "inference_log_queue_rows") == 2
    assert metric(text, "inference_log_rows_written_total") == 0

    big = InferenceLog(sqlite_url(tmp_path, "big.db"), DEFAULT_RETENTION_DAYS)
    with served(create_app(follower(), ["127.0.0.1"], big)) as base:
        predicted(base, {"battles": [{"a": "mew", "b": "ditto"}] * 10_000})
    assert big.queue.accepted == 1 and big.queue.battles == 10_000


def test_a_database_that_is_not_there_fails_the_log_not_the_answers_until_it_is(tmp_path):
    folder = tmp_path / "not-yet"
    url = f"sqlite:///{folder / 'log.db'}"
    log = InferenceLog(url, DEFAULT_RETENTION_DAYS, backoff_max_s=0.5).start()
    try:
        with served(create_app(follower(), ["127.0.0.1"], log)) as base:
            health = request(base + "/health")[1]
            assert health["status"] == "ok" and health["inference_log"] == "failing"
            (line,) = health["inference_log_error"].splitlines()
            assert "unable to open database file" in line
            predicted(base)  # answered all the same
            wait_for(lambda: log.dropped["database"] == 2, "the two battles counted as dropped", 10)
            status, answer = outcomes_of(base, ("0" * 32 + "-0", "a"))
            assert status == 503 and "does not answer" in answer["error"]
            folder.mkdir()  # the database is back
            wait_for(lambda: request(base + "/health")[1]["inference_log"] == "ok", "ok", 20)
            predictions, _ = predicted(base)
            assert log.flush()
            text = request(base + "/metrics")[1]
    finally:
        log.stop()
    assert {row["battle_id"] for row in table_rows(url, battles)} == {
        p["battle_id"] for p in predictions
    }
    assert metric(text, 'inference_log_rows_dropped_total{reason="database"}') == 2
    assert metric(text, "inference_log_rows_written_total") == 2


def test_retention_deletes_old_battles_and_their_outcomes_at_start(tmp_path):
    url = sqlite_url(tmp_path)
    engine = create_engine(url)
    metadata.create_all(engine)
    now = datetime.now(UTC)
    raw = dict.fromkeys(RAW_COLUMNS, 50) | {
        "a_name": "X", "a_type1": "Fire", "a_type2": "", "b_name": "Y", "b_type1": "Ice",
        "b_type2": "",
    }  # fmt: skip
    ages = {"old": 31, "recent": 29}
    with engine.begin() as connection:
        for name, days in ages.items():
            connection.execute(
                insert(battles),
                raw
                | {
                    "battle_id": name,
                    "logged_at": now - timedelta(days=days),
                    "model_version": "1",
                    "p_a_wins": 0.5,
                },
            )
            connection.execute(
                insert(outcomes), {"battle_id": name, "a_wins": True, "recorded_at": now}
            )
    engine.dispose()
    InferenceLog(url, 30).start().stop()
    assert [row["battle_id"] for row in table_rows(url, battles)] == ["recent"]
    assert [row["battle_id"] for row in table_rows(url, outcomes)] == ["recent"]
    InferenceLog(url, 1).start().stop()  # a shorter retention, on the next start
    assert table_rows(url, battles) == table_rows(url, outcomes) == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("://u:hunter2@host/db", "not a SQLAlchemy URL"),
        ("postgresql+nosuchdriver://u:hunter2@host/db", "unknown or missing driver"),
        ("nosuchdatabase://u:hunter2@host/db", "unknown or missing driver"),
        ("postgresql+pg8000://u:hunter2@host/db", "unknown or missing driver"),  # not installed
        ("sqlite://", "an in-memory SQLite log is lost at exit"),
    ],
)
def test_a_log_url_that_cannot_be_used_is_refused_at_start_in_one_line(tmp_path, url, reason):
    done = run_cli("serve", "--inference-log", url, "--model-uri", "nowhere", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: inference log ") and reason in line
    assert "hunter2" not in done.stdout + done.stderr
    from_env = run_cli("serve", cwd=tmp_path, env=cli_env(INFERENCE_LOG_URL=url))
    assert from_env.returncode == 2 and reason in from_env.stderr


def test_the_help_states_the_contracts_retention():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    (option,) = [a for a in serve._actions if "--inference-log-retention-days" in a.option_strings]
    assert f"(default: {DEFAULT_RETENTION_DAYS})" in option.help


def test_outcomes_need_the_predictors_token_when_it_has_one(tmp_path):
    """Outcomes become training labels: a predictor started with OUTCOMES_TOKEN takes them
    only with it (traffic sends it from the same variable); predictions stay open."""
    from machine_learning.serving.client import PredictorClient

    log = InferenceLog(sqlite_url(tmp_path), DEFAULT_RETENTION_DAYS).start()
    try:
        app = create_app(follower(), ["127.0.0.1"], log, outcomes_token="s3cret-token")
        with served(app) as base:
            predictions, _ = predicted(base)
            body = {"outcomes": [{"battle_id": predictions[0]["battle_id"], "winner": "a"}]}
            for token in (None, "wrong"):
                status, answer, _ = PredictorClient(base, outcomes_token=token).post(
                    "/outcomes", body
                )
                assert status == 401 and "Authorization: Bearer" in answer["error"]
                assert "s3cret-token" not in answer["error"]
            status, answer, _ = PredictorClient(base, outcomes_token="s3cret-token").post(
                "/outcomes", body
            )
            assert status == 200 and answer["recorded"] == 1
    finally:
        log.stop()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://writer:s3cr3t-pw@db:5432/inference_log",
        "postgresql://writer@db/inference_log?password=s3cr3t-pw",  # libpq reads it from here too
        "postgresql://writer@db/inference_log?sslmode=require&sslpassword=s3cr3t-pw",
    ],
)
def test_the_urls_credentials_are_shown_nowhere_wherever_they_are_given(url):
    from ci.monitor_log import LogReader
    from machine_learning.contract.inference_log import redacted, scrubbed

    log = InferenceLog(url, DEFAULT_RETENTION_DAYS)  # not started: nothing is connected
    try:
        driver_says = 'connection failed: password "s3cr3t-pw" rejected for "writer"'
        shown = [redacted(url), log.url, LogReader(url).shown, log.scrubbed(driver_says)]
        shown.append(scrubbed(driver_says, url))
    finally:
        log.engine.dispose()
    assert not [line for line in shown if "s3cr3t-pw" in line]
    assert all("***" in line for line in shown)
    assert "writer" in redacted(url) and "@db" in redacted(url)  # which database, as whom


@pytest.mark.parametrize("read_only", [True, False])
def test_the_logs_bounds_add_to_the_urls_own_libpq_options(read_only):
    from sqlalchemy.engine import make_url

    from machine_learning.contract.inference_log import connect_args

    url = make_url("postgresql+psycopg://writer@db/log?options=-csearch_path%3Dlogs")
    options = connect_args(url, 30, read_only)["options"]
    assert options.startswith("-csearch_path=logs -c statement_timeout=30000")
    assert ("default_transaction_read_only=on" in options) is read_only
    assert connect_args(make_url("sqlite:///log.db"), 30, read_only) == {"timeout": 10}

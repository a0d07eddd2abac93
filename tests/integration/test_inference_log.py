"""The inference log on the machine's real PostgreSQL, written by predictor processes started as
the compose file starts them: two of them on one log (its tables created by whichever comes
first), a database down at start and gone mid-way (answers unaffected, drops counted, /health
failing, then writing again), and a password that never shows; the compose file's one-shot
service that creates the log's database."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from ci.stack import COMPOSE_FILE
from machine_learning.contract.inference_log import Outcome, battles, outcomes
from machine_learning.datasets import held_out_battles
from machine_learning.serving.inference_log import InferenceLog, InferenceLogDown
from machine_learning.serving.predict import pokedex
from machine_learning.simulator import Scenario
from tests.conftest import cli_env, run_cli
from tests.http_service import Service, wait_for
from tests.inference_log import log_battles
from tests.native_stack import DEFAULT_ADMIN_DSN, interpolate
from tests.tcp_relay import Relay

pytestmark = pytest.mark.integration
NO_TRACKING = "http://127.0.0.1:9"  # a model folder needs no tracking server
PASSWORD = f"pw-{secrets.token_hex(8)}"  # the machine's PostgreSQL trusts loopback: any will do
PAIR = {"battles": [{"a": "pikachu", "b": "charizard"}]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small xgboost model folder, trained by the CLI against an embedded store."""
    root = tmp_path_factory.mktemp("inference-log")
    done = run_cli(
        "train", "--n-battles", "2000", "--n-test", "300", "--output-dir", str(root / "out"),
        "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}", cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root, str(root / "out" / "model")


@pytest.fixture
def database():
    """A database of this test's own on the machine's PostgreSQL, dropped afterwards."""
    name = f"inference_log_test_{secrets.token_hex(4)}"
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def log_url(database: str, port: int = 5432) -> str:
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{database}"


def rows(database: str, table) -> list[dict]:
    engine = create_engine(log_url(database))
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(select(table))]
    finally:
        engine.dispose()


def metric(service: Service, name: str) -> float:
    (line,) = [line for line in service.text("/metrics").splitlines() if line.startswith(name)]
    return float(line.split()[-1])


def asked(service: Service, request_id: str) -> list[str]:
    """The battle ids of one answered request (it must be answered, log or no log)."""
    status, answer, headers = service.request(
        "/v1/predict", PAIR, headers={"X-Request-Id": request_id}
    )
    assert status == 200, answer
    assert headers["X-Request-Id"] == request_id
    return [prediction["battle_id"] for prediction in answer["predictions"]]


def assert_no_password(*services: Service) -> None:
    for service in services:
        seen = service.log.read_text() + json.dumps(service.get("/health")[1])
        seen += service.text("/metrics")
        assert PASSWORD not in seen


def test_two_predictors_write_one_log_and_either_records_the_others_outcomes(model, database):
    root, folder = model
    url = log_url(database)
    with ThreadPoolExecutor(2) as starting:  # at once, on a database without the tables yet
        one, two = starting.map(
            lambda flags_env: Service(NO_TRACKING, folder, root, *flags_env),
            [
                ({"--inference-log": url}, None),
                (None, cli_env(INFERENCE_LOG_URL=url)),  # the variable instead of the flag
            ],
        )
    try:
        for service in (one, two):
            health = service.get("/health")[1]
            assert health["inference_log"] == "ok" and health["inference_log_error"] is None
        from_one, from_two = asked(one, "from-one"), asked(two, "from-two")
        # Each process flushes its own queue before it looks: one's battle is in the log once
        # one has recorded an outcome (another process's outcome may arrive before the answering
        # process wrote its battle: up to FLUSH_INTERVAL_S, see the README).
        status, answer, _ = one.request(
            "/v1/outcomes", {"outcomes": [{"battle_id": from_one[0], "winner": "b"}]}
        )
        assert status == 200 and answer["recorded"] == 1, answer
        status, answer, _ = two.request(
            "/v1/outcomes",
            {"outcomes": [{"battle_id": i, "winner": "a"} for i in from_one + from_two]},
        )
        assert answer == {
            "recorded": 1, "already_recorded": 0, "unknown": [], "conflicting": from_one,
        }  # fmt: skip
        logged = {row["battle_id"]: row for row in rows(database, battles)}
        assert set(logged) == {*from_one, *from_two}
        assert {logged[i]["request_id"] for i in from_one} == {"from-one"}
        assert {logged[i]["request_id"] for i in from_two} == {"from-two"}
        first = logged[from_one[0]]
        assert first["model_version"] == ""  # a folder is no registered version
        assert (first["a_name"], first["b_name"], first["b_type2"]) == (
            "Pikachu", "Charizard", "Flying",
        )  # fmt: skip
        assert 0 <= first["p_a_wins"] <= 1 and first["logged_at"].tzinfo is not None
        won = {row["battle_id"]: row["a_wins"] for row in rows(database, outcomes)}
        assert won == {from_one[0]: False, from_two[0]: True}
        assert metric(one, "inference_log_rows_written_total") == 1
        assert_no_password(one, two)
    finally:
        one.stop()
        two.stop()


def test_a_database_down_at_start_and_mid_way_never_fails_an_answer(model, database):
    root, folder = model
    relay = Relay("127.0.0.1", 5432)  # not started: the database is down
    service = Service(NO_TRACKING, folder, root, {"--inference-log": log_url(database, relay.port)})
    try:
        health = service.get("/health")[1]
        assert health["status"] == "ok" and health["inference_log"] == "failing"
        (line,) = health["inference_log_error"].splitlines()
        assert "connect" in line.lower()
        asked(service, "while-down")
        service.wait_for(
            lambda: metric(service, 'inference_log_rows_dropped_total{reason="database"}') == 1,
            "the battle counted as dropped",
        )
        status, answer, _ = service.request(
            "/v1/outcomes", {"outcomes": [{"battle_id": "0" * 32 + "-0", "winner": "a"}]}
        )
        assert status == 503 and "does not answer" in answer["error"], answer

        relay.start()  # the database is back: tables created, rows written
        service.wait_for(lambda: service.get("/health")[1]["inference_log"] == "ok", "ok", 30)
        kept = asked(service, "after-start")
        service.wait_for(lambda: metric(service, "inference_log_rows_written_total") == 1, "1")

        relay.stop()  # gone mid-way, its connections cut
        lost = asked(service, "mid-way")
        service.wait_for(
            lambda: service.get("/health")[1]["inference_log"] == "failing", "failing", 30
        )
        service.wait_for(
            lambda: metric(service, 'inference_log_rows_dropped_total{reason="database"}') == 2,
            "the mid-way battle counted as dropped",
        )

        relay.start()
        service.wait_for(lambda: service.get("/health")[1]["inference_log"] == "ok", "ok", 30)
        again = asked(service, "back")
        status, answer, _ = service.request(
            "/v1/outcomes",
            {"outcomes": [{"battle_id": i, "winner": "a"} for i in kept + lost + again]},
        )
        assert status == 200 and answer["recorded"] == 2 and answer["unknown"] == lost, answer
        assert {row["battle_id"] for row in rows(database, battles)} == {*kept, *again}
        log = service.log.read_text()
        assert re.search(r"inference log postgresql://postgres:\*\*\*@127\.0\.0\.1:\d+/\S+", log)
        assert "failing" in log and "writing again" in log
        assert_no_password(service)
    finally:
        service.stop()
        relay.stop()


def test_a_table_locked_by_someone_else_fails_a_write_in_bounded_time_not_forever(database):
    """A migration or VACUUM FULL holding the table: the writer's batch and an outcomes post
    each fail at the statement timeout (dropped and counted; 503), then write once it is free."""
    log = InferenceLog(log_url(database), 30, statement_timeout_s=1).start()
    asked = pokedex().battles(["pikachu"], ["charizard"])
    try:
        assert log.flush(10) and log.status == "ok"  # the tables exist
        with psycopg.connect(DEFAULT_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}") as holder:
            holder.execute("LOCK TABLE battles IN ACCESS EXCLUSIVE MODE")
            (battle_id,) = log.record("1", None, asked, np.array([0.75]))
            assert log.flush(20), "the writer never came back from the locked table"
            assert log.dropped_database == 1 and "statement timeout" in log.error
            with pytest.raises(InferenceLogDown, match="statement timeout"):
                log.record_outcomes([Outcome(battle_id=battle_id, winner="a")])
        log.record("1", None, asked, np.array([0.75]))  # the lock is gone with its transaction
        wait_for(lambda: log.written == 1, "the battle written once the lock is gone", 60)
        assert log.status == "ok"
    finally:
        log.stop()
        log.engine.dispose()


def test_the_retention_purge_is_not_cut_short_by_the_writers_statement_timeout(database):
    """The first purge after a long downtime may take longer than a write may: it waits for a
    lock held past the writes' timeout, and deletes what is old."""
    log = InferenceLog(log_url(database), 30, statement_timeout_s=1).start()
    try:
        assert log.flush(10) and log.status == "ok"
        month_ago = datetime.now(UTC) - timedelta(days=31)
        old_ids = log_battles(
            log_url(database), held_out_battles(3, Scenario.RANDOM), logged_at=month_ago
        )
        with psycopg.connect(DEFAULT_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}") as holder:
            holder.execute("LOCK TABLE battles IN ACCESS EXCLUSIVE MODE")
            release = threading.Timer(2.5, holder.commit)
            release.start()
            log._purge()  # waits past the 1 s writes' bound for the lock, then deletes
            release.join()
        assert not [row for row in rows(database, battles) if row["battle_id"] in old_ids]
    finally:
        log.stop()
        log.engine.dispose()


def test_the_predictor_logs_as_a_role_of_its_own_the_stack_creates_for_it(tmp_path):
    """The one-shot service's script, run against the machine's PostgreSQL as compose runs it:
    it creates the log's role (no superuser) and database (the role's), and succeeds again once
    both exist (a stack brought up a second time on its volume). The predictor logs as that
    role, its password in PGPASSWORD (the stack's own, never the superuser's, never in the
    URL), and starts only after the script succeeded."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    predictor, creator = services["predictor"], services["inference-log-db"]
    settings = {
        "POSTGRES_PASSWORD": "superuser-pw",
        "INFERENCE_LOG_PASSWORD": "log-pw",
        "OUTCOMES_TOKEN": "token",
    }
    environment = {k: interpolate(v, settings) for k, v in predictor["environment"].items()}
    url = make_url(environment["INFERENCE_LOG_URL"])
    assert (url.host, url.password, environment["PGPASSWORD"]) == ("postgres", None, "log-pw")
    assert url.username == creator["environment"]["LOG_ROLE"] != "mlflow"
    assert url.database == creator["environment"]["LOG_DATABASE"]
    assert predictor["depends_on"]["inference-log-db"] == {
        "condition": "service_completed_successfully"
    }
    assert creator["user"] not in ("root", "0") and creator["restart"] == "no"
    suffix = secrets.token_hex(4)
    database, role = f"inference_log_test_{suffix}", f"inference_log_role_{suffix}"
    env = {
        "PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "PGUSER": "postgres",
        "PGDATABASE": "postgres", "LOG_DATABASE": database, "LOG_ROLE": role,
        "LOG_PASSWORD": "it's-a-pw",
    }  # fmt: skip
    script = [interpolate(arg, {}) for arg in creator["command"]]
    try:
        for _ in range(2):
            done = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
        with psycopg.connect(DEFAULT_ADMIN_DSN, connect_timeout=10) as admin:
            found = admin.execute(
                "SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, d.datdba = r.oid"
                " FROM pg_roles r, pg_database d WHERE r.rolname = %s AND d.datname = %s",
                (role, database),
            )
            assert found.fetchone() == (False, False, False, True)
        dsn = f"host=127.0.0.1 dbname={database} user={role} connect_timeout=10"
        with psycopg.connect(dsn) as connection:  # the role can make the log's tables
            connection.execute("CREATE TABLE probe (x int)")
    finally:
        with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')

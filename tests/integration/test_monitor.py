"""``ci monitor`` against a real MLflow server and a real inference log (SQLite and PostgreSQL).

One registered model per module: v1 trained (by the ``train`` command, so with its
profile.json) on ``random`` battles, v2 registered from a run without a profile. Each test
fills its own log with battles drawn by the simulator as training draws them, scored by v1,
half of them with their outcome, at the middle of each window (windows end when the command
runs, seconds after the rows are written).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from machine_learning.datasets import LABEL, battles
from machine_learning.simulator import Scenario
from tests.conftest import cli_env, run_cli
from tests.native_stack import DEFAULT_ADMIN_DSN

pytestmark = pytest.mark.integration
RANDOM, BALANCED = Scenario.RANDOM, Scenario.BALANCED
HOSTILE = "<script>x</script>|\n::warning::y"


@pytest.fixture(scope="module")
def served(stack, tmp_path_factory):
    """The registered model, its v1 pipeline (to score logged battles) and v2 (no profile)."""
    import mlflow
    import mlflow.sklearn

    from ci.registry import ensure_registered_model, register_version

    root = tmp_path_factory.mktemp("monitored")
    done = run_cli(
        "train",
        *("--n-battles", "3000", "--n-test", "1000", "--seed", "1"),
        *("--experiment", f"monitor-{uuid.uuid4().hex[:8]}", "--output-dir", "out"),
        cwd=root,
        env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri),
    )
    assert done.returncode == 0, done.stderr
    run = json.loads((root / "out/run.json").read_text())
    client = mlflow.MlflowClient(stack.tracking_uri)
    name = f"monitored-{uuid.uuid4().hex[:8]}"
    ensure_registered_model(client, name)
    register_version(client, name, run["model_uri"], run["run_id"], {})
    bare = client.create_run(client.get_experiment_by_name(run["experiment"]).experiment_id)
    register_version(client, name, run["model_uri"], bare.info.run_id, {})
    pipeline = mlflow.sklearn.load_model(str(root / "out/model"))
    return {"name": name, "pipeline": pipeline, "run_id": run["run_id"]}


@pytest.fixture
def sqlite_log(tmp_path):
    yield from _log(f"sqlite:///{tmp_path / 'inference.db'}")


@pytest.fixture
def postgres_log():
    import psycopg

    database = f"monitor_log_{secrets.token_hex(4)}"
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        yield from _log(f"{DEFAULT_ADMIN_DSN.rsplit('/', 1)[0]}/{database}")
    finally:
        with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _log(url: str):
    from sqlalchemy import create_engine

    from machine_learning.contract.inference_log import metadata

    engine = create_engine(url)
    metadata.create_all(engine)
    yield url, engine
    engine.dispose()


def fill(log, served, windows_ago: int, n: int, scenario=RANDOM, version="1", seed=0) -> None:
    """``n`` battles answered by ``version`` in the middle of the window ``windows_ago`` days
    before the last one ends; every second one with its outcome."""
    from sqlalchemy import insert

    from machine_learning.contract.inference_log import battles as logged
    from machine_learning.contract.inference_log import outcomes
    from machine_learning.evaluate import win_probability

    _, engine = log
    drawn = battles(n, scenario, seed=1_000 + 17 * windows_ago + seed)
    p = win_probability(served["pipeline"], drawn)
    at = datetime.now(UTC) - timedelta(days=windows_ago, hours=12)
    request = uuid.uuid4().hex
    rows = drawn.drop(columns=[LABEL]).replace({"": None}).to_dict("records")
    for i, row in enumerate(rows):
        row |= {
            "battle_id": f"{request}-{i}",
            "logged_at": at,
            "request_id": request,
            "model_version": version,
            "p_a_wins": float(p[i]),
        }
    won = [
        {"battle_id": f"{request}-{i}", "a_wins": bool(drawn[LABEL].iloc[i]), "recorded_at": at}
        for i in range(0, n, 2)
    ]
    with engine.begin() as db:
        db.execute(insert(logged), rows)
        db.execute(insert(outcomes), won)


def monitor(stack, tmp_path, log, served, *args: str, **env: str):
    done = run_cli(
        "monitor",
        *("--inference-log", log[0], "--model-name", served["name"]),
        *("--output", str(tmp_path / "monitor.json"), *args),
        cwd=tmp_path,
        module="ci",
        env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri, **env),
    )
    written = tmp_path / "monitor.json"
    return done, (json.loads(written.read_text()) if written.exists() else None)


def statuses(record) -> list[str]:
    return [window["status"] for window in record["windows"]]


def logged_run(client, done):
    run_id = next(
        line.split()[2] for line in done.stdout.splitlines() if line.startswith("MLflow run ")
    )
    return client.get_run(run_id)


def test_healthy_traffic_keeps_the_champion(stack, client, served, sqlite_log, tmp_path):
    for ago in range(5):
        fill(sqlite_log, served, ago, 300)
    done, record = monitor(stack, tmp_path, sqlite_log, served)
    assert done.returncode == 0, done.stderr
    assert statuses(record) == ["healthy"] * 5
    assert record["decision"]["retrain"] is False
    latest = record["windows"][-1]["versions"][0]["measurement"]
    assert latest["version"] == "1" and latest["n_rows"] == 300
    assert latest["quality"]["n_outcomes"] == 150 and latest["quality"]["outcome_share"] == 0.5
    features = {d["feature"] for d in latest["drift"]}
    assert {"diff_bst", "log_bulk_ratio", "a_type1", "p_a_wins"} <= features
    assert "decision: keep the champion" in done.stdout
    # the first pass seeded the thresholds, as the first gate does
    assert "seeded into" in record["thresholds_source"]
    tags = client.get_registered_model(served["name"]).tags
    assert json.loads(tags["monitor.diff_bst.psi"])["threshold"] == 0.2
    run = logged_run(client, done)
    assert run.data.tags["monitor.decision"] == "keep"
    assert run.data.tags["monitor.versions"] == "1"


def test_balanced_traffic_breaches_and_retrains_after_k_windows(
    stack, client, served, postgres_log, tmp_path
):
    for ago in range(5):
        fill(postgres_log, served, ago, 300, BALANCED if ago == 0 else RANDOM)
    summary = tmp_path / "summary.md"
    done, record = monitor(stack, tmp_path, postgres_log, served, GITHUB_STEP_SUMMARY=str(summary))
    assert done.returncode == 0, done.stderr  # one breaching window is not K = 2
    assert statuses(record) == ["healthy"] * 4 + ["breach"]
    assert "1 of the last 5 windows breach, fewer than 2" in record["decision"]["reason"]

    fill(postgres_log, served, 1, 600, BALANCED, seed=1)  # the day before drifts too
    outputs, page = tmp_path / "outputs.txt", tmp_path / "dashboard.html"
    done, record = monitor(
        stack,
        tmp_path,
        postgres_log,
        served,
        *("--dashboard", str(page)),
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_OUTPUT=str(outputs),
    )
    assert done.returncode == 1, done.stderr
    retrain, reason = outputs.read_text().splitlines()  # what monitor.yml's retrain job reads
    assert (
        retrain == "retrain=true" and reason.startswith("reason=") and "2 of the last 5" in reason
    )
    assert page.read_text().count("<svg") == 3 and "Retrain</strong>" in page.read_text()
    assert statuses(record) == ["healthy"] * 3 + ["breach"] * 2
    assert record["decision"]["retrain"] is True
    breaches = record["windows"][-1]["versions"][0]["judgement"]["breaches"]
    assert {"diff_bst.psi", "p_a_wins.psi"} <= {b["metric"] for b in breaches}
    assert record["windows"][-2]["logged_rows"] == {"1": 900}

    run = logged_run(client, done)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == f"{served['name']}-monitoring"
    assert run.data.tags["monitor.decision"] == "retrain"
    assert run.data.tags["monitor.versions"] == "1"
    assert run.data.tags["monitor.latest_status"] == "breach"
    assert run.data.metrics["v1/diff_bst.psi"] > 0.2
    assert run.data.metrics["v1/n_rows"] == 300 and run.data.metrics["v1/outcome_share"] == 0.5
    artifact = client.download_artifacts(run.info.run_id, "monitor.json", str(tmp_path / "a"))
    assert json.loads(Path(artifact).read_text()) == record

    text = summary.read_text()
    assert text.count("### Monitoring") == 2  # appended, once per pass
    last = text[text.rindex("### Monitoring") :]
    assert "🔁 retraining needed" in last and "**Decision: retrain**" in last
    assert "| v1 | 900 | 50% |" in last and "❌ breach: diff\\_bst\\.psi" in last
    assert "```mermaid\nxychart-beta" in last and last.count("    line [") == 2


def test_a_quiet_window_and_versions_without_a_profile_are_reported_not_judged(
    stack, client, served, sqlite_log, tmp_path
):
    fill(sqlite_log, served, 0, 250)
    fill(sqlite_log, served, 0, 40, version="2", seed=1)  # its run has no profile.json
    fill(sqlite_log, served, 0, 30, version="77", seed=2)  # not a version of the model
    fill(sqlite_log, served, 0, 20, version="", seed=3)  # a model outside the registry
    fill(sqlite_log, served, 0, 10, BALANCED, version=HOSTILE, seed=4)
    fill(sqlite_log, served, 1, 120)  # under the 200 battles a window needs
    summary = tmp_path / "summary.md"
    done, record = monitor(
        stack, tmp_path, sqlite_log, served, "--windows", "3", GITHUB_STEP_SUMMARY=str(summary)
    )
    assert done.returncode == 0, done.stderr
    assert statuses(record) == ["not enough data", "not enough data", "healthy"]
    assert record["windows"][0]["versions"] == [] and record["windows"][0]["unprofiled_rows"] == {}
    assert record["windows"][2]["unprofiled_rows"] == {"": 20, "2": 40, "77": 30, HOSTILE: 10}
    reasons = record["unprofiled_versions"]
    assert f"its run {run_id_of(client, served, '2')} has no profile.json" in reasons["2"]
    assert reasons["77"] == reasons[HOSTILE] == f"not a version of {served['name']}"
    assert reasons[""] == "served by a model outside the registry (no version)"
    assert f"not judged: {HOSTILE!r}: not a version of" in done.stdout
    assert "<script>" not in summary.read_text() and "\n::warning" not in done.stdout
    assert logged_run(client, done).data.tags["monitor.versions"] == "1"


def run_id_of(client, served, version: str) -> str:
    return client.get_model_version(served["name"], version).run_id


def test_a_log_database_that_is_down_is_exit_3_within_the_bound(stack, served, tmp_path):
    for url in (
        "postgresql://monitor:s3cret-pw@127.0.0.1:9/log",  # nothing listens
        f"{DEFAULT_ADMIN_DSN.rsplit('/', 1)[0]}/monitor_absent_{secrets.token_hex(3)}",
    ):
        started = time.monotonic()
        done, record = monitor(stack, tmp_path, (url, None), served)
        assert done.returncode == 3, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error: the inference log postgresql://") and len(lines) == 1
        assert "failed while reading" in lines[-1] and "s3cret-pw" not in done.stderr
        assert record is None and time.monotonic() - started < 60


def test_an_unknown_registered_model_is_bad_input(stack, served, sqlite_log, tmp_path):
    done = run_cli(
        "monitor",
        *("--inference-log", sqlite_log[0], "--model-name", f"absent-{uuid.uuid4().hex[:6]}"),
        cwd=tmp_path,
        module="ci",
        env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri),
    )
    assert done.returncode == 2 and "is not a registered model: nothing to monitor" in done.stderr


def test_many_battles_are_measured_on_a_bounded_sample(served, sqlite_log):
    from ci.monitor_log import LogReader

    fill(sqlite_log, served, 0, 1_500)
    now = datetime.now(UTC)
    with LogReader(sqlite_log[0]) as log:
        assert log.versions(now - timedelta(days=1), now) == {"1": 1_500}
        rows = log.rows("1", now - timedelta(days=1), now, limit=1_000)
    assert len(rows.battles) == 1_000 and rows.battles.shape[1] == 16
    assert 300 < np.isnan(rows.a_wins).sum() < 700  # outcomes still joined, not all kept
    assert set(rows.battles.columns).isdisjoint({"a_name", "b_name", "battle_id"})


def test_a_busy_window_is_sampled_across_requests_not_by_whole_requests(served, sqlite_log):
    """Two requests of 800 battles, one random and one balanced: a sample of 1,000 taken by
    request (battle ids share their request's prefix) would be mostly one of them."""
    from ci.monitor_log import LogReader

    fill(sqlite_log, served, 0, 800, RANDOM, seed=5)
    fill(sqlite_log, served, 0, 800, BALANCED, seed=6)
    now = datetime.now(UTC)
    with LogReader(sqlite_log[0]) as log:
        rows = log.rows("1", now - timedelta(days=1), now, limit=1_000)
    totals = {
        side: rows.battles[[f"{side}_{s}" for s in ("hp", "atk", "def", "spa", "spd", "spe")]]
        for side in "ab"
    }
    gap = np.abs(totals["a"].sum(axis=1).to_numpy() - totals["b"].sum(axis=1).to_numpy())
    assert 0.38 < (gap < 30).mean() < 0.62  # half balanced-like: both requests sampled

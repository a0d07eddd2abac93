"""Retraining with the inference log, end to end: a PostgreSQL log filled as the predictor fills
it, ``train --with-inference-log`` against the real MLflow server, then the gate and the report
with the second test set. The log's URL carries a password (PostgreSQL here trusts loopback, so
it is not checked): it must reach neither MLflow nor any output unredacted."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli
from tests.inference_log import create_log, log_battles
from tests.native_stack import DEFAULT_ADMIN_DSN

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-log-pw"
SMALL = ("--n-battles", "1500", "--n-test", "300")


@pytest.fixture(scope="module")
def log_url():
    """A PostgreSQL inference log of its own: 1,000 balanced battles with outcomes, 100 without."""
    import psycopg

    from machine_learning.datasets import battles
    from machine_learning.simulator import Scenario

    database = f"inference_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/{database}"
    create_log(url)
    log_battles(url, battles(1_000, Scenario.BALANCED, 11))
    log_battles(url, battles(100, Scenario.BALANCED, 12), outcomes=False)
    yield url
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def trained(stack, log_url, tmp_path_factory):
    """A champion trained without the log, a candidate trained with it, in one experiment."""
    root = tmp_path_factory.mktemp("retraining")
    experiment = f"retraining-{uuid.uuid4().hex[:6]}"
    runs = {}
    for name, extra in {"plain": (), "with_log": ("--with-inference-log", log_url)}.items():
        done = run_cli(
            "train", *SMALL, "--experiment", experiment, "--output-dir", name, *extra,
            cwd=root, env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs[name] = (done, json.loads((root / name / "run.json").read_text()))
    return root, runs


def test_the_logged_battles_are_trained_on_and_the_url_is_logged_redacted(client, trained):
    root, runs = trained
    done, record = runs["with_log"]
    assert "logged battles added to training" in done.stderr
    assert "recent battles held out of the inference log:" in done.stdout
    run = client.get_run(record["run_id"])
    params, tags = run.data.params, run.data.tags
    trained_on, held_out = (
        int(params["inference_log_battles"]),
        int(params["inference_log_test_battles"]),
    )
    assert trained_on + held_out == 1_000 and 120 < held_out < 280  # 20% by battle id
    assert params["inference_log_since"] == "30d"
    assert params["inference_log_share"] == "unweighted"
    assert params["n_battles"] == "1500"  # the simulated ones, as before
    assert tags["ci.inference_log_url"].startswith("postgresql+psycopg://postgres:***@127.0.0.1")
    assert 0.7 < run.data.metrics["recent_test_accuracy"] <= 1
    everything = json.dumps([params, tags, record]) + done.stdout + done.stderr
    everything += (root / "with_log" / "metrics.json").read_text()
    assert PASSWORD not in everything
    plain = client.get_run(runs["plain"][1]["run_id"]).data
    assert "inference_log_battles" not in plain.params and "recent_test_f1" not in plain.metrics


def test_the_gate_scores_both_models_on_the_recent_battles_without_judging_them(
    stack, client, trained, tmp_path
):
    from ci.registry import ensure_registered_model, register_version

    root, runs = trained
    name = f"pb-retrain-{uuid.uuid4().hex[:6]}"
    ensure_registered_model(client, name)
    plain = runs["plain"][1]
    version = register_version(client, name, plain["model_uri"], plain["run_id"], {})
    client.set_registered_model_alias(name, "champion", version.version)

    gate_json = tmp_path / "gate.json"
    done = _ci(stack, root, "gate", "--run-json", str(root / "with_log" / "run.json"),
               "--model-name", name, "--output", str(gate_json), "--resamples", "200")  # fmt: skip
    result = json.loads(gate_json.read_text())
    rows = {row["metric"]: row for row in result["metrics"]}
    recent = {metric: row for metric, row in rows.items() if metric.startswith("recent_test_")}
    assert len(recent) == 6 and all(row["verdict"] == "reported" for row in recent.values())
    assert all(row["champion"] is not None and row["interval"] for row in recent.values())
    assert done.returncode == (1 if result["verdict"] == "fail" else 0)
    assert result["candidate"]["n_recent_test"] == int(
        client.get_run(runs["with_log"][1]["run_id"]).data.params["inference_log_test_battles"]
    )
    report = tmp_path / "report.md"
    shown = _ci(stack, root, "report", "--gate-json", str(gate_json), "--output", str(report))
    assert shown.returncode == 0, shown.stderr
    text = report.read_text()
    assert "| recent_test_f1 " in text and "📋 reported" in text
    assert "recent battles held out of the inference log" in text

    client.set_registered_model_tag(name, "gate.recent_test_f1", '{"threshold": 0.999}')
    failed = _ci(stack, root, "gate", "--run-json", str(root / "with_log" / "run.json"),
                 "--model-name", name, "--output", str(gate_json), "--resamples",
                 "200")  # fmt: skip
    assert failed.returncode == 1
    judged = {row["metric"]: row for row in json.loads(gate_json.read_text())["metrics"]}
    assert judged["recent_test_f1"]["verdict"] == "fail"
    assert "below the floor 0.999" in judged["recent_test_f1"]["reason"]


def test_an_empty_window_trains_as_usual_and_says_so(tmp_path):
    from datetime import UTC, datetime, timedelta

    from machine_learning.datasets import battles
    from machine_learning.simulator import Scenario

    url = f"sqlite:///{tmp_path / 'inference.db'}"
    create_log(url)
    old = datetime.now(UTC) - timedelta(hours=2)
    log_battles(url, battles(100, Scenario.BALANCED, 13), logged_at=old)
    done = run_cli(
        "train", "--n-battles", "500", "--n-test", "200", "--with-inference-log", url,
        "--since", "1h", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        "the inference log has no battles with outcomes in the last 1h: training on simulated "
        "battles only"
    ) in done.stderr
    metrics = json.loads((tmp_path / "outputs" / "metrics.json").read_text())
    assert "recent_test_f1" not in metrics and "test_f1" in metrics
    assert not (tmp_path / "outputs" / "recent_test_battles.parquet").exists()


def test_a_log_database_that_is_down_exits_3_in_one_line_before_any_work(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/inference"
    started = time.monotonic()
    done = run_cli(
        "train", "--with-inference-log", url, "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 3 and time.monotonic() - started < 60
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: the inference log postgresql+psycopg://postgres:***@127.0.0.1:{port}"
    )
    assert "does not answer" in last and PASSWORD not in done.stderr + done.stdout
    assert "simulating" not in done.stderr  # read first: no work for a log that cannot be read
    assert not Path(tmp_path / "outputs" / "run.json").exists()


@pytest.mark.parametrize("window", ["0d", "abc"])
def test_an_empty_or_unreadable_window_is_bad_input(tmp_path, window):
    done = run_cli("train", "--with-inference-log", "sqlite:///x.db", "--since", window,
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: argument --since:")
    assert len(done.stderr.strip().splitlines()) == 1


def _ci(stack, cwd: Path, *args: str):
    return run_cli(*args, cwd=cwd, module="ci", env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri))


def test_a_model_trained_on_the_log_takes_the_logs_traffic_as_its_reference(trained):
    """The monitor compares a version's battles with its profile: the plain champion's is the
    simulation (balanced traffic drifts from it), the retrained one's is the logged traffic
    (the same traffic does not), so the loop settles after a retraining instead of asking for
    another every pass."""
    from machine_learning.datasets import LABEL, battles
    from machine_learning.monitoring.drift import window_drift
    from machine_learning.monitoring.profile import ReferenceProfile
    from machine_learning.simulator import Scenario

    root, _ = trained
    traffic = battles(600, Scenario.BALANCED, 13).drop(columns=[LABEL])
    p = [0.5] * len(traffic)
    psi = {}
    for name in ("plain", "with_log"):
        profile = ReferenceProfile.read(root / name / "plots" / "profile.json")
        psi[name] = {d.feature: d.psi for d in window_drift(profile, traffic, p)}
    assert psi["plain"]["diff_bst"] > 1.0 and psi["with_log"]["diff_bst"] < 0.2

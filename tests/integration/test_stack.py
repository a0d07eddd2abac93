"""The stack itself: endpoints, host validation, proxied artifacts, persistence, basic auth."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
import uuid
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.integration


def get(uri: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A raw GET, so the Host header and credentials are exactly what the test says."""
    parts = urllib.parse.urlsplit(uri)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_health_version_and_ui_answer(stack):
    assert get(stack.tracking_uri, "/health") == (200, "OK")
    assert get(stack.tracking_uri, "/version") == (200, metadata.version("mlflow"))
    status, page = get(stack.tracking_uri, "/")
    assert status == 200 and "<title>MLflow</title>" in page


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:5000", "10.0.0.8:80"])
def test_a_host_outside_the_allowed_list_is_refused(stack, host):
    status, body = get(stack.tracking_uri, SEARCH, {"Host": host})
    assert status == 403, body


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "mlflow:5000"])
def test_an_allowed_host_is_served(stack, host):
    port = urllib.parse.urlsplit(stack.tracking_uri).port
    status, body = get(stack.tracking_uri, SEARCH, {"Host": host.format(port=port)})
    assert status == 200, body


def test_artifacts_land_in_the_server_destination_not_the_client_directory(
    stack, client, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    note = tmp_path / "note.txt"
    note.write_text("proxied")
    experiment_id = client.create_experiment(f"artifacts-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    assert stack.artifact_exists(f"{experiment_id}/{run.info.run_id}/artifacts/note.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt"]


def test_experiments_runs_and_model_versions_survive_a_server_restart(stack, client, tmp_path):
    name = f"persist-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    run = client.create_run(experiment_id, tags={"ci.git_sha": "abc"})
    client.log_metric(run.info.run_id, "test_f1", 0.9)
    (tmp_path / "weights.txt").write_text("42")
    client.log_artifact(run.info.run_id, str(tmp_path / "weights.txt"))
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    version = client.create_model_version(
        name, f"runs:/{run.info.run_id}/weights.txt", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, "champion", version.version)

    stack.restart_server()

    assert client.get_experiment_by_name(name).experiment_id == experiment_id
    restored = client.get_run(run.info.run_id)
    assert restored.data.metrics["test_f1"] == 0.9 and restored.data.tags["ci.git_sha"] == "abc"
    assert client.get_model_version_by_alias(name, "champion").version == version.version
    downloaded = client.download_artifacts(run.info.run_id, "weights.txt", str(tmp_path / "dl"))
    assert Path(downloaded).read_text() == "42"


class TestBasicAuth:
    """docker-compose.auth.yml: MLflow's basic-auth app with secrets from the environment."""

    def test_health_stays_open(self, auth_stack):
        assert get(auth_stack.tracking_uri, "/health") == (200, "OK")

    def test_no_credentials_is_401(self, auth_stack):
        assert get(auth_stack.tracking_uri, SEARCH)[0] == 401

    def test_a_wrong_password_is_401(self, auth_stack):
        assert get(auth_stack.tracking_uri, SEARCH, basic("admin", "not-the-password"))[0] == 401

    def test_the_right_credentials_are_served(self, auth_stack, admin_password):
        assert get(auth_stack.tracking_uri, SEARCH, basic("admin", admin_password))[0] == 200

    def test_the_training_cli_logs_a_run_with_credentials(
        self, auth_stack, admin_password, tmp_path
    ):
        env = cli_env(
            CI="true", MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=admin_password
        )
        done = run_cli(
            "train",
            "--tracking-uri",
            auth_stack.tracking_uri,
            "--model",
            "logistic_regression",
            "--n-battles",
            "2000",
            "--n-test",
            "500",
            "--output-dir",
            "out",
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        record_text = (tmp_path / "out/run.json").read_text()
        assert admin_password not in record_text and admin_password not in done.stderr
        run_id = json.loads(record_text)["run_id"]
        status, body = get(
            auth_stack.tracking_uri,
            f"/api/2.0/mlflow/runs/get?run_id={run_id}",
            basic("admin", admin_password),
        )
        assert status == 200
        assert json.loads(body)["run"]["info"]["status"] == "FINISHED"

    def test_the_training_cli_without_credentials_fails_and_keeps_outputs(
        self, auth_stack, tmp_path
    ):
        done = run_cli(
            "train",
            "--tracking-uri",
            auth_stack.tracking_uri,
            "--model",
            "logistic_regression",
            "--n-battles",
            "1000",
            "--n-test",
            "500",
            "--output-dir",
            "out",
            cwd=tmp_path,
            env=cli_env(CI="true"),
        )
        assert done.returncode == 3
        assert "error: tracking failed:" in done.stderr.strip().splitlines()[-1]
        assert (tmp_path / "out/metrics.json").exists()


def test_a_failed_server_start_names_the_service_and_shows_its_log(tmp_path):
    from tests.native_stack import NativeStack, StackError

    broken = NativeStack(tmp_path, env={"MLFLOW_WORKERS": "none"})
    try:
        with pytest.raises(StackError, match=r"^mlflow exited with code") as error:
            broken.up()
        assert "last log lines:\n" in str(error.value)
        assert "none" in str(error.value).split("last log lines:\n", 1)[1]
    finally:
        broken.down()


def test_an_unreachable_postgres_is_named(tmp_path):
    from tests.native_stack import NativeStack, StackError

    with pytest.raises(StackError, match=r"^postgres: create failed"):
        NativeStack(tmp_path, admin_dsn="postgresql://postgres@127.0.0.1:1/postgres").up()

"""The whole monitoring loop in one simulated scenario, on a real PostgreSQL-backed MLflow server
(the team's) and a real PostgreSQL inference log: a merge promotes v1, which serves with a log;
battles it has not seen much of come in with their outcomes; monitor.yml finds the drift and
dispatches train.yml, which trains on the log, gates, promotes and verifies v2; the next pass's
dashboard shows both versions with the promotion marked."""

from __future__ import annotations

import io
import json
import subprocess
import uuid
import zipfile

import pytest

from tests.conftest import run_cli
from tests.native_stack import DEFAULT_ADMIN_DSN, NativeStack, free_port, predictor_command
from tests.workflows.act import Event
from tests.workflows.story import TRAIN, failure_details

pytestmark = pytest.mark.integration
MONITOR = "monitor.yml"
PASSWORD = f"log-{uuid.uuid4().hex}"


@pytest.fixture
def log_url():
    """A PostgreSQL database of its own for the inference log, dropped afterwards; its URL has
    a password (the machine's trust authentication ignores it) that must show nowhere."""
    import psycopg

    name = f"inference_log_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/{name}"
    with psycopg.connect(DEFAULT_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def traffic(predictor_url: str, cwd, seed: int) -> str:
    done = run_cli(
        "traffic",
        *("--predictor-url", predictor_url, "--battles", "600"),
        *("--scenario-type", "balanced", "--seed", str(seed), "--outcomes"),
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def dispatched_inputs(inputs: dict[str, str]) -> dict:
    """A dispatch's inputs as act's event file takes them (booleans typed)."""
    return {k: {"true": True, "false": False}.get(v, v) for k, v in inputs.items()}


def report(story, run_id: int) -> dict[str, bytes]:
    data = story.github.run_artifacts(run_id)["monitor-report"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_drift_in_the_log_retrains_promotes_and_verifies_a_new_champion(story, log_url, tmp_path):
    import mlflow

    team = NativeStack(tmp_path / "team").up()
    port = free_port()
    flags = {"--poll-interval": "0.5", "--inference-log": log_url}
    predictor = subprocess.Popen(
        predictor_command(team.tracking_uri, port, flags),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    runner = story.runner
    story.github.workflows_dir = runner.repo / ".github" / "workflows"  # dispatches checked
    try:
        team_mode = {"MLFLOW_TRACKING_URI": team.tracking_uri, "PREDICTOR_URL": url}
        with runner.configured(variables=team_mode, secrets={"INFERENCE_LOG_URL": log_url}):
            merged = story.push("refs/heads/main", 130, "loop-merge")
            assert merged.conclusion == "success", failure_details(merged)
            verified = merged.step("Verify the served champion").output
            assert "verified: the predictor serves v1" in verified

            asked = traffic(url, tmp_path, seed=7)
            assert "600 battles asked" in asked and "600 recorded" in asked

            inputs = {"windows": 3, "min-breaches": 1}
            asked_to = inputs | {"retrain": True}
            event = Event("workflow_dispatch", "refs/heads/main", 131, inputs=asked_to)
            retrain = runner.run(MONITOR, "retrain", event)
            watched = retrain.needs["monitor"]
            assert watched.conclusion == "success", failure_details(watched)
            assert watched.step("Watch the champion").outcome == "failure"  # exit 1: retrain
            assert watched.step("Fail unless the monitor decided").outcome == "skipped"
            assert "Retraining needed" in watched.summary or "retrain" in watched.summary
            assert retrain.conclusion == "success", failure_details(retrain)
            (dispatch,) = story.github.dispatches
            assert dispatch["workflow"] == TRAIN and dispatch["ref"] == "main"
            assert dispatch["inputs"]["with-inference-log"] == "true"
            record = json.loads(report(story, 131)["monitor.json"])
            assert record["decision"]["retrain"] is True
            assert dispatch["inputs"]["reason"] == " ".join(record["decision"]["reason"].split())

            event = Event(
                "workflow_dispatch",
                f"refs/heads/{dispatch['ref']}",
                132,
                inputs=dispatched_inputs(dispatch["inputs"]),
            )
            retrained = runner.run(TRAIN, "train", event)
            assert retrained.conclusion == "success", failure_details(retrained)
            assert dispatch["inputs"]["reason"] in retrained.summary
            assert retrained.step("Promote").outcome == "success"
            verified = retrained.step("Verify the served champion").output
            assert "verified: the predictor serves v2" in verified
            client = mlflow.MlflowClient(team.tracking_uri)
            v2 = client.get_model_version_by_alias("pokemon-battle", "champion")
            params = client.get_run(v2.run_id).data.params
            assert int(params["inference_log_battles"]) > 300  # the log's battles were trained on
            run = client.get_run(v2.run_id).data
            assert PASSWORD not in json.dumps([run.tags, run.params])

            traffic(url, tmp_path, seed=8)  # now answered by v2
            event = Event("workflow_dispatch", "refs/heads/main", 133, inputs=inputs)
            second = runner.run(MONITOR, "retrain", event)  # retrain: false, a dispatch's default
            assert second.conclusion == "skipped" and len(story.github.dispatches) == 1
            files = report(story, 133)
            record = json.loads(files["monitor.json"])
            assert record["champion"] == "2"  # the decision is about v2 now
            latest = record["windows"][-1]["versions"]
            judged = {v["measurement"]["version"]: v["judgement"]["breaches"] for v in latest}
            assert set(judged) == {"1", "2"}
            # v2's reference is the logged traffic it was retrained on: the same traffic is no drift
            drift = {"diff_bst.psi", "log_bulk_ratio.psi"}
            assert not drift & {b["metric"] for b in judged["2"]}, judged["2"]
            assert "diff_bst.psi" in {b["metric"] for b in judged["1"]}
            page = files["dashboard.html"].decode()
            assert "v2 promoted" in page and page.count("<svg") == 3
            assert PASSWORD not in page + files["monitor.json"].decode()
    finally:
        predictor.kill()
        predictor.wait()
        team.down()

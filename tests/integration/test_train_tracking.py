"""Training against a real PostgreSQL-backed MLflow server, read back through MlflowClient."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from machine_learning.datasets import LABEL, battles
from machine_learning.monitoring.profile import ReferenceProfile
from machine_learning.simulator import Scenario
from tests.conftest import actions_env, cli_env, run_cli, spawn_cli
from tests.native_stack import run_as_root

pytestmark = pytest.mark.integration
SMALL = ("--n-battles", "3000", "--n-test", "1000")


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_train_logs_params_metrics_tags_data_and_a_loadable_model(stack, client, tmp_path):
    experiment = f"train-{uuid.uuid4().hex[:8]}"
    done = run_cli(
        "train",
        "--tracking-uri",
        stack.tracking_uri,
        "--experiment",
        experiment,
        "--output-dir",
        "out",
        *SMALL,
        cwd=tmp_path,
        env=actions_env(tmp_path, "c0ffee" * 6, GITHUB_SHA="merge" * 8),
    )
    assert done.returncode == 0, done.stderr
    assert f"MLflow tracking URI: {stack.tracking_uri} (--tracking-uri)" in done.stderr
    record, metrics = read_json(tmp_path / "out/run.json"), read_json(tmp_path / "out/metrics.json")
    assert record["status"] == "logged" and record["tracking_uri"] == stack.tracking_uri

    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "xgboost" and run.data.params["n_battles"] == "3000"
    assert run.data.params["n_estimators"] == "200"
    assert run.data.metrics["test_f1"] == pytest.approx(metrics["test_f1"])
    assert {"baseline_test_f1", "overfitting_gap", "train_log_loss"} <= run.data.metrics.keys()
    assert run.data.tags["ci.git_sha"] == "c0ffee" * 6
    assert run.data.tags["ci.pr_number"] == "12"
    assert run.data.tags["ci.branch"] == "feature/types"
    assert run.data.tags["ci.run_url"] == "https://github.com/owner/repo/actions/runs/777"
    assert run.data.tags["ci.dataset_digest"] == record["dataset_digest"]

    inputs = {d.dataset.digest: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {record["dataset_digest"], record["test_digest"]}
    contexts = {d.dataset.digest: d.tags[0].value for d in run.inputs.dataset_inputs}
    assert contexts[record["test_digest"]] == "testing"

    artifacts = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {
        "confusion_matrix.png",
        "roc_curve.png",
        "feature_importance.png",
        "metrics.json",
        "profile.json",
    } <= artifacts
    stored = run.info.artifact_uri.split(":", 1)[1].lstrip("/")  # on the server's own volume
    assert stack.artifact_exists(f"{stored}/roc_curve.png")

    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(record["model_uri"])
    fresh = battles(50, Scenario.BALANCED, seed=99).drop(columns=[LABEL])
    scored = np.asarray(model.predict(fresh))
    local = np.asarray(mlflow.pyfunc.load_model(str(tmp_path / "out/model")).predict(fresh))
    assert scored.shape == (50, 2)
    np.testing.assert_allclose(scored, local)
    np.testing.assert_allclose(scored.sum(axis=1), 1.0)


def test_compare_records_a_parent_run_with_a_nested_run_per_model(stack, client, tmp_path):
    import mlflow.artifacts

    experiment = f"compare-{uuid.uuid4().hex[:8]}"
    done = run_cli(
        "compare",
        "--tracking-uri",
        stack.tracking_uri,
        "--experiment",
        experiment,
        "--output-dir",
        "out",
        "--n-battles",
        "2000",
        "--n-test",
        "1000",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    record, metrics = read_json(tmp_path / "out/run.json"), read_json(tmp_path / "out/metrics.json")
    parent = client.get_run(record["parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(c.data.params["model"] for c in children) == [
        "logistic_regression",
        "random_forest",
        "xgboost",
    ]
    for child in children:  # each model's run has its own reference profile for the monitor
        profile = ReferenceProfile.from_json(
            mlflow.artifacts.load_text(f"runs:/{child.info.run_id}/profile.json")
        )
        assert profile.dataset_version == "v2" and profile.prediction.n == 1000
    best = max(metrics["comparison"], key=lambda m: metrics["comparison"][m]["test_f1"])
    assert parent.data.tags["ci.winner"] == metrics["winner"] == best
    winners = [c for c in children if c.data.tags.get("ci.winner") == "true"]
    assert [w.info.run_id for w in winners] == [record["run_id"]]
    assert winners[0].data.params["model"] == best
    table = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert f"{best} ✓" in done.stdout and done.stdout.count("✓") == 1
    for model, scores in metrics["comparison"].items():
        assert f"{scores['test_f1']:.4f}" in table[model]
    assert f"{metrics['baseline_test_f1']:.4f}" in table["baseline"]
    assert f"MLflow run {record['run_id']}" in done.stdout
    assert f"view it at {stack.tracking_uri}/#/experiments/" in done.stdout


def test_a_tracking_failure_keeps_every_local_output(stack, client, tmp_path):
    experiment = f"deleted-{uuid.uuid4().hex[:8]}"
    client.delete_experiment(client.create_experiment(experiment))
    done = run_cli(
        "train",
        "--tracking-uri",
        stack.tracking_uri,
        "--experiment",
        experiment,
        "--output-dir",
        "out",
        *SMALL,
        cwd=tmp_path,
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith("error: tracking failed: ")
    record = read_json(tmp_path / "out/run.json")
    assert record["status"] == "tracking failed" and "deleted" in record["error"]
    assert read_json(tmp_path / "out/metrics.json")["test_f1"] > 0.8
    assert (tmp_path / "out/model/MLmodel").exists()
    assert (tmp_path / "out/plots/roc_curve.png").exists()


def test_the_default_is_the_embedded_store_in_the_working_directory(tmp_path):
    import mlflow

    done = spawn_cli("train", "--model", "logistic_regression", *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "MLflow tracking URI: sqlite:///mlflow.db (embedded default)" in done.stderr
    record = read_json(tmp_path / "outputs/run.json")
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(record["run_id"])
    assert (run.data.params["model"], len(run.inputs.dataset_inputs)) == ("logistic_regression", 2)
    assert list((tmp_path / "mlruns").rglob("MLmodel"))


def test_a_run_that_fails_half_way_is_marked_failed_and_keeps_its_id(live, tmp_path):
    """The server cannot write the experiment's artifact folder (owned by root, the server
    runs as the image's user): the model upload fails after the run was created."""
    import mlflow

    client = mlflow.MlflowClient(live.tracking_uri)
    blocked = f"blocked-{uuid.uuid4().hex[:8]}"
    run_as_root(["mkdir", "--mode=755", str(live.artifacts_dir / blocked)])  # not the server's
    experiment = client.create_experiment(blocked, artifact_location=f"mlflow-artifacts:/{blocked}")
    done = run_cli(
        "train",
        "--tracking-uri",
        live.tracking_uri,
        "--experiment",
        client.get_experiment(experiment).name,
        "--output-dir",
        "out",
        *SMALL,
        cwd=tmp_path,
        # The refused upload is a 500, which training retries for a minute (an outage's
        # window, tests/integration/test_tracking_outage.py); two tries say the same here.
        env=cli_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="2"),
    )
    assert done.returncode == 3, done.stderr
    record = read_json(tmp_path / "out/run.json")
    assert record["status"] == "tracking failed" and record["run_id"]
    assert client.get_run(record["run_id"]).info.status == "FAILED"
    assert (tmp_path / "out/model/MLmodel").exists()

"""MLflow state between workflow runs: snapshot on one stack, restore on a fresh one."""

from __future__ import annotations

import json

import pytest

from ci.stack import NativeStack
from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.integration


def state(stack: NativeStack, action: str, folder, cwd, branch: str = "main"):
    env = cli_env(
        MLFLOW_TRACKING_URI=stack.tracking_uri,
        MLFLOW_STATE_DATABASE=stack.backend_uri,
        MLFLOW_STATE_ARTIFACTS=str(stack.artifacts_dir),
    )
    return run_cli(
        "state", action, "--dir", str(folder), "--branch", branch, cwd=cwd, env=env, module="ci"
    )


def test_a_snapshot_carries_champion_and_branch_runs_to_a_fresh_stack(tmp_path):
    import mlflow

    first = NativeStack(tmp_path / "first").up()
    second = NativeStack(tmp_path / "second")
    try:
        env = cli_env(MLFLOW_TRACKING_URI=first.tracking_uri)
        for name, branch in (("main-run", "main"), ("other-run", "feature/x")):
            done = run_cli(
                "train",
                "--model",
                "logistic_regression",
                "--n-battles",
                "1000",
                "--n-test",
                "500",
                "--output-dir",
                name,
                cwd=tmp_path,
                env=env
                | {"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": branch, "GITHUB_SHA": "a" * 40},
            )
            assert done.returncode == 0, done.stderr
        main_run = json.loads((tmp_path / "main-run/run.json").read_text())
        other = json.loads((tmp_path / "other-run/run.json").read_text())
        client = mlflow.MlflowClient(first.tracking_uri)
        client.create_registered_model("pokemon-battle")
        version = client.create_model_version(
            "pokemon-battle",
            main_run["model_uri"],
            run_id=main_run["run_id"],
            model_id=main_run["model_uri"].removeprefix("models:/"),
        )
        client.set_registered_model_alias("pokemon-battle", "champion", version.version)

        saved = state(first, "save", tmp_path / "snapshot", tmp_path, branch="main")
        assert saved.returncode == 0, saved.stderr
        assert "saved 1 runs" in saved.stdout and "1 older runs pruned" in saved.stdout
        manifest = json.loads((tmp_path / "snapshot/manifest.json").read_text())
        assert manifest["kept_runs"] == [main_run["run_id"]]
        assert not list((tmp_path / "snapshot/artifacts").rglob(f"*{other['run_id']}*"))

        second.up()
        restored = state(second, "restore", tmp_path / "snapshot", tmp_path)
        assert restored.returncode == 0, restored.stderr
        assert restored.stdout.startswith("restored the snapshot of main saved at")
        client = mlflow.MlflowClient(second.tracking_uri)
        champion = client.get_model_version_by_alias("pokemon-battle", "champion")
        assert champion.run_id == main_run["run_id"]
        mlflow.set_tracking_uri(second.tracking_uri)
        model = mlflow.pyfunc.load_model("models:/pokemon-battle@champion")
        assert model.metadata.run_id == main_run["run_id"]
        assert client.get_run(other["run_id"]).info.lifecycle_stage == "deleted"
    finally:
        mlflow.set_tracking_uri(None)
        first.down()
        second.down()


def test_restoring_without_a_snapshot_bootstraps(tmp_path, stack):
    done = run_cli(
        "state",
        "restore",
        "--dir",
        str(tmp_path / "none"),
        cwd=tmp_path,
        module="ci",
        env=cli_env(
            MLFLOW_STATE_DATABASE="postgresql://unused/x", MLFLOW_STATE_ARTIFACTS=str(tmp_path)
        ),
    )
    assert done.returncode == 0
    assert done.stdout.startswith("no snapshot in") and "no champion yet" in done.stdout


def test_a_failing_dump_names_the_step(tmp_path, stack):
    env = cli_env(
        MLFLOW_TRACKING_URI=stack.tracking_uri,
        MLFLOW_STATE_DATABASE="postgresql://postgres@127.0.0.1:5432/no_such_db",
        MLFLOW_STATE_ARTIFACTS=str(tmp_path),
    )
    done = run_cli(
        "state",
        "save",
        "--dir",
        str(tmp_path / "s"),
        "--branch",
        "main",
        cwd=tmp_path,
        env=env,
        module="ci",
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: pg_dump failed (exit 1):")

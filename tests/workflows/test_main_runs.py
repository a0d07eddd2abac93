"""Default-branch runs, simulated from the workflows' own steps: promotion on merge and on a
dispatch that asks, a branch judged against main's champion failing the gate, rollback, a served
champion failing verification (see story.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.workflows.harness import Event
from tests.workflows.story import BRANCH, PR, SHAS, TRAIN, failure_details

pytestmark = pytest.mark.integration


def test_merge_to_main_promotes_the_champion(story):
    result = story.merged()
    assert result.conclusion == "success", failure_details(result)
    assert "v1 is now champion" in result.step("Promote").output
    verified = result.step("Verify the served champion").output
    assert "verified: the predictor serves v1 and it meets every floor" in verified
    snapshots = list((story.runner.home / "cache").glob("refs_heads_main/mlflow-state-*"))
    manifest = json.loads((snapshots[0] / "manifest.json").read_text())
    assert story.artifact(103)["candidate"]["run_id"] in manifest["kept_runs"]


def test_a_branch_is_judged_against_mains_champion_and_a_regression_fails_the_job(story):
    """A dispatch on the PR's branch after the merge: the branch has no state of its own, so it
    starts from main's snapshot and is judged against main's champion; a worse model fails
    the gate, the report is still uploaded, and the PR's comment shows it."""
    story.merged()
    story.github.push(PR, SHAS["regression"])  # the PR's head is this commit
    inputs = {"model": "logistic_regression", "dataset-version": "v1", "scenario": "balanced"}
    event = Event(
        "workflow_dispatch", f"refs/heads/{BRANCH}", SHAS["regression"], 105, inputs=inputs
    )
    result = story.runner.run(TRAIN, "train", event)
    assert "restored the snapshot of main" in result.step("Load MLflow state").output
    assert result.conclusion == "failure"
    assert result.step("Gate").outcome == "failure"
    assert result.step("Upload the report").outcome == "success"
    assert result.step("Promote").outcome == "skipped"
    gate = story.artifact(105)
    assert (gate["verdict"], gate["champion"]["version"]) == ("fail", "1")
    params = gate["candidate"]["params"]  # the dispatch's inputs reached the CLI
    assert (params["model"], params["dataset_version"], params["scenario_type"]) == (
        "logistic_regression",
        "v1",
        "balanced",
    )
    commented = story.comment_on(105, SHAS["regression"], "workflow_dispatch")
    assert commented.conclusion == "success", failure_details(commented)
    comments = story.our_comments()
    assert len(comments) == 1
    assert (
        "### ❌ Gate failed" in comments[0]["body"] and "logistic_regression" in comments[0]["body"]
    )


def test_a_dispatch_on_main_asked_to_promote_promotes(story):
    result = story.promoted_by_dispatch()
    assert result.conclusion == "success", failure_details(result)
    params = story.artifact(111)["candidate"]["params"]
    assert (params["model"], params["n_trials"], params["tune"]) == ("xgboost", "3", "False")
    assert "v2 is now champion; v1 is now previous-champion" in result.step("Promote").output


def test_rollback_moves_the_champion_back(story):
    story.promoted_by_dispatch()
    event = Event(
        "workflow_dispatch", "refs/heads/main", SHAS["dispatch"], 112, inputs={"action": "rollback"}
    )
    assert story.runner.run(TRAIN, "train", event).conclusion == "skipped"
    rolled = story.runner.run(TRAIN, "champion", event)
    assert rolled.conclusion == "success", failure_details(rolled)
    assert (
        "rolled back: v1 is now champion; v2 is now previous-champion"
        in rolled.step("Roll back").output
    )
    assert rolled.step("Verify the served champion").outcome == "skipped"


def test_a_champion_failing_verification_is_rolled_back_and_the_job_fails(story, tmp_path):
    story.promoted_by_dispatch()
    raise_the_floor_in_mains_snapshot(story, tmp_path, "test_f1", 0.999)
    event = Event(
        "workflow_dispatch", "refs/heads/main", SHAS["dispatch"], 114, inputs={"action": "verify"}
    )
    result = story.runner.run(TRAIN, "champion", event)
    assert result.conclusion == "failure"
    verify = result.step("Verify the served champion")
    assert verify.outcome == "failure"
    assert "::error title=Verification of v" in verify.output
    assert "the canary battles miss the floor: test_f1" in verify.output
    assert "failed verification" in result.summary and "is now champion" in result.summary
    assert result.step("Snapshot MLflow state").outcome == "success"  # the rollback is kept


def raise_the_floor_in_mains_snapshot(story, tmp_path, metric: str, floor: float) -> None:
    """What a team raising a threshold does, in main's cached state: restore the newest
    snapshot, set the tag, save it back under a newer cache key. The stores are a database and
    a folder; MLflow's client reaches the database directly (no server to start)."""
    import mlflow

    from tests.conftest import cli_env, run_cli
    from tests.native_stack import NativeStack, migrated_template

    cache = story.runner.home / "cache" / "refs_heads_main"
    newest = max(cache.glob("mlflow-state-*"), key=lambda path: path.stat().st_mtime)
    stores = NativeStack(tmp_path / "edit")
    stores.create_database(template=migrated_template(stores.admin_dsn))
    try:
        env = cli_env(**stores.state_env(tracking_uri=stores.backend_uri))

        def state(action: str, folder) -> None:
            args = ("state", action, "--dir", str(folder), "--branch", "main")
            done = run_cli(*args, cwd=tmp_path, env=env, module="ci")
            assert done.returncode == 0, done.stderr

        state("restore", newest)
        spec = json.dumps({"threshold": floor, "greater_is_better": True})
        client = mlflow.MlflowClient(stores.backend_uri)
        client.set_registered_model_tag("pokemon-battle", f"gate.{metric}", spec)
        state("save", tmp_path / "edited")
    finally:
        stores.down()
    shutil.copytree(tmp_path / "edited", cache / f"{newest.name}-edited")

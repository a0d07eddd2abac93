"""Default-branch runs, simulated from the workflows' own steps: promotion on merge, branches
judged against main's champion, a failing regression, rollback, team mode (see story.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.workflows.harness import Event
from tests.workflows.story import BRANCH, SHAS, TRAIN, failure_details

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


def test_a_branch_push_is_compared_with_mains_champion_but_cannot_promote(story):
    result = story.branch_push()
    assert result.conclusion == "success", failure_details(result)
    assert "restored the snapshot of main" in result.step("Load MLflow state").output
    gate = story.artifact(104)
    assert gate["champion"]["version"] == "1"
    assert result.step("Promote").outcome == "skipped"


def test_a_regression_fails_the_job_and_the_comment_shows_it(story):
    story.branch_push()  # main has a champion; the PR's head is this commit
    event = Event(
        "workflow_dispatch",
        f"refs/heads/{BRANCH}",
        SHAS["regression"],
        105,
        inputs={"model": "logistic_regression", "dataset-version": "v1"},
    )
    result = story.runner.run(TRAIN, "train", event)
    assert result.conclusion == "failure"
    assert result.step("Gate").outcome == "failure"
    assert result.step("Upload the report").outcome == "success"
    assert story.artifact(105)["verdict"] == "fail"
    commented = story.comment_on(105, SHAS["regression"], "workflow_dispatch")
    assert commented.conclusion == "success", failure_details(commented)
    comments = story.our_comments()
    assert len(comments) == 1
    assert (
        "### ❌ Gate failed" in comments[0]["body"] and "logistic_regression" in comments[0]["body"]
    )


def test_rollback_moves_the_champion_back(story):
    result = story.second_merge()
    assert result.conclusion == "success", failure_details(result)
    assert "v2 is now champion; v1 is now previous-champion" in result.step("Promote").output
    event = Event(
        "workflow_dispatch", "refs/heads/main", SHAS["merge2"], 112, inputs={"action": "rollback"}
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
    story.second_merge()
    raise_the_floor_in_mains_snapshot(story, tmp_path, "test_f1", 0.999)
    event = Event(
        "workflow_dispatch", "refs/heads/main", SHAS["merge2"], 114, inputs={"action": "verify"}
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
    snapshot into a stack, set the tag, save it back under a newer cache key."""
    import mlflow

    from tests.conftest import cli_env, run_cli
    from tests.native_stack import NativeStack

    cache = story.runner.home / "cache" / "refs_heads_main"
    newest = max(cache.glob("mlflow-state-*"), key=lambda path: path.stat().st_mtime)
    stack = NativeStack(tmp_path / "edit").up()
    try:
        env = cli_env(
            MLFLOW_TRACKING_URI=stack.tracking_uri,
            MLFLOW_STATE_DATABASE=stack.backend_uri,
            MLFLOW_STATE_ARTIFACTS=str(stack.artifacts_dir),
        )

        def state(action: str, folder) -> None:
            args = ("state", action, "--dir", str(folder), "--branch", "main")
            done = run_cli(*args, cwd=tmp_path, env=env, module="ci")
            assert done.returncode == 0, done.stderr

        state("restore", newest)
        spec = json.dumps({"threshold": floor, "greater_is_better": True})
        mlflow.MlflowClient(stack.tracking_uri).set_registered_model_tag(
            "pokemon-battle", f"gate.{metric}", spec
        )
        state("save", tmp_path / "edited")
    finally:
        stack.down()
    shutil.copytree(tmp_path / "edited", cache / f"{newest.name}-edited")


def test_team_mode_trains_against_the_teams_server_without_stack_or_cache(story, tmp_path):
    import mlflow

    from tests.native_stack import NativeStack

    runner = story.runner
    team = NativeStack(tmp_path / "team").up()
    runner.vars["MLFLOW_TRACKING_URI"] = team.tracking_uri
    try:
        cache_before = sorted(p.name for p in (runner.home / "cache").rglob("mlflow-state-*"))
        result = story.push("refs/heads/team-feature", "c" * 40, 113)
        assert result.conclusion == "success", failure_details(result)
        for step in (
            "Start the stack",
            "Load MLflow state",
            "Snapshot MLflow state",
            "Stop the stack",
        ):
            assert result.step(step).outcome == "skipped", step
        run_id = story.artifact(113)["candidate"]["run_id"]
        assert mlflow.MlflowClient(team.tracking_uri).get_run(run_id).info.status == "FINISHED"
        assert sorted(p.name for p in (runner.home / "cache").rglob("mlflow-state-*")) == (
            cache_before
        )
    finally:
        runner.vars.pop("MLFLOW_TRACKING_URI")
        team.down()

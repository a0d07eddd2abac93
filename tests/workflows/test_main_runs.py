"""Default-branch runs under act: promotion on merge and on a dispatch that asks, a branch
judged against main's champion failing the gate, rollback (see story.py)."""

from __future__ import annotations

import re

import pytest

from tests.workflows.act import Event
from tests.workflows.story import BRANCH, PR, TRAIN, failure_details

pytestmark = pytest.mark.integration


def test_merge_to_main_promotes_the_champion(story):
    result = story.merged()
    assert result.conclusion == "success", failure_details(result)
    assert "v1 is now champion" in result.step("Promote").output
    verified = result.step("Verify the served champion").output
    assert "verified: the predictor serves v1 and it meets every floor" in verified
    saved = result.step("Save MLflow state to the cache").output
    assert "Cache saved with key: mlflow-state-" in saved and "refs/heads/main-103-1" in saved


def test_a_branch_is_judged_against_mains_champion_and_a_regression_fails_the_job(story):
    """A dispatch on the PR's branch after the merge: the branch has no state of its own, so it
    starts from main's snapshot and is judged against main's champion; a worse model fails
    the gate, the report is still uploaded, and the PR's comment shows it."""
    story.merged()
    sha = story.runner.commit(f"refs/heads/{BRANCH}", "regression")
    story.github.add_pull(PR, sha)  # the PR's head is this commit
    inputs = {"model": "logistic_regression", "dataset-version": "v1", "scenario": "balanced"}
    event = Event("workflow_dispatch", f"refs/heads/{BRANCH}", 105, inputs=inputs, sha=sha)
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
    commented = story.comment_on(105, sha, "workflow_dispatch")
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
    event = Event("workflow_dispatch", "refs/heads/main", 112, inputs={"action": "rollback"})
    assert story.runner.run(TRAIN, "train", event).conclusion == "skipped"
    rolled = story.runner.run(TRAIN, "champion", event)
    assert rolled.conclusion == "success", failure_details(rolled)
    assert (
        "rolled back: v1 is now champion; v2 is now previous-champion"
        in rolled.step("Roll back").output
    )
    assert rolled.step("Verify the served champion").outcome == "skipped"


def test_a_push_to_a_branch_named_Main_never_promotes(story):
    """GitHub's expressions compare strings ignoring case, and git allows a branch `Main`
    beside `main`: the default branch is decided by our code, case-sensitively."""
    story.merged()
    result = story.push("refs/heads/Main", 106, "Main")
    assert result.conclusion == "success", failure_details(result)
    assert result.step("Gate").outcome == "success"
    assert result.step("Promote").outcome == "skipped"
    assert "v2" not in result.step("Verify the served champion").output


def test_a_champion_the_predictor_cannot_load_is_verified_and_rolled_back(story):
    """The predictor never turns healthy on a champion it cannot load, so `up --wait` fails;
    verification runs all the same, learns why from /health, rolls back, and the snapshot
    keeps the rollback."""
    story.promoted_by_dispatch()
    faults = {"FAKE_DOCKER_FAULT": "unloadable-champion", "FAKE_DOCKER_PREDICTOR_WAIT_S": "8"}
    with story.runner.configured(faults=faults):
        result = story.push("refs/heads/main", 116, "unloadable")
    assert result.conclusion == "failure"
    assert "is now champion" in result.step("Promote").output, failure_details(result)
    started = result.step("Start the predictor")
    assert started.outcome == "failure"
    assert "docker compose: predictor failed to start" in started.output, started.output[-2000:]
    verify = result.step("Verify the served champion")
    assert verify.outcome == "failure", failure_details(result)
    assert "cannot load v" in verify.output and "failed to load" in verify.output, verify.output
    assert verify.seconds < 60  # it did not wait out the 180 s for a version it cannot load
    assert "rolled back v" in verify.output
    assert result.step("Snapshot MLflow state").outcome == "success"  # the rollback is kept
    assert result.step("Save MLflow state to the cache").outcome == "success"


def test_a_cache_outage_on_main_recovers_the_state_from_its_durable_copy(story):
    """The cache service failing makes actions/cache's restore a warning and a miss: the state
    comes back from the newest mlflow-state artifact, and the run is judged against the
    champion instead of starting a new lineage."""
    story.merged()
    with story.runner.configured(cache_outage=True):
        result = story.push("refs/heads/main", 117, "outage")
    assert result.conclusion == "success", failure_details(result)
    assert story.artifact(117)["champion"] is not None  # not judged as a new lineage's first
    recovered = result.step("Recover the state if the cache lost it").output
    assert "restored the `mlflow-state` artifact of run" in recovered


def test_a_scheduled_monitor_in_stack_mode_watches_nothing_and_keeps_mains_snapshot_read(story):
    """monitor.yml on its schedule without a team server: no predictor outlives a job, so it
    says there is nothing to watch, and reading main's newest snapshot keeps it in the cache
    (GitHub evicts entries unread for 7 days)."""
    story.merged()
    event = Event("schedule", "refs/heads/main", 140, payload={"schedule": "23 4 * * *"})
    result = story.runner.run("monitor.yml", "monitor", event)
    assert result.conclusion == "success", failure_details(result)
    assert "nothing to watch" in result.step("Nothing to watch in stack mode").output
    warn = result.step("Warn before GitHub disables this schedule")  # a fresh commit: no warning
    assert warn.outcome == "success" and "days old" not in warn.output, warn.output
    read = result.step("Read the newest state snapshot")
    assert read.outcome == "success", read.output
    assert re.search(
        r"Cache restored from key: mlflow-state-\S+-refs/heads/main-\d+-1", read.output
    )
    for step in ("Watch the champion", "Upload the monitoring report"):
        assert result.step(step).outcome == "skipped", step
    assert story.github.dispatches == []

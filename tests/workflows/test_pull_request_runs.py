"""Pull-request runs, simulated from the workflows' own steps: pushes to a PR's branch, the
sticky comment, a late comment job, same-repo pull_request events and forks (see story.py)."""

from __future__ import annotations

import json

import pytest

from tests.workflows.act import Event
from tests.workflows.story import BRANCH, PR, TRAIN, failure_details

FORK_HEAD = "f" * 40  # the fork's commit: not in this repository

pytestmark = pytest.mark.integration


def test_first_push_on_a_pr_bootstraps_and_creates_the_comment(story):
    result = story.first_push()
    assert result.conclusion == "success", failure_details(result)
    assert "no snapshot" in result.step("Load MLflow state").output
    gate = story.artifact(101)
    assert gate["champion"] is None and gate["verdict"] == "pass"
    assert "seeded into" in gate["thresholds_source"]
    assert "### ✅ Gate passed" in result.summary
    saved = result.step("Save MLflow state to the cache").output
    assert "Cache saved with key: mlflow-state-" in saved and f"refs/heads/{BRANCH}-101-1" in saved

    commented = story.first_comment()
    assert commented.conclusion == "success", failure_details(commented)
    comments = story.our_comments()
    assert len(comments) == 1 and "no champion yet" in comments[0]["body"]
    assert [r.method for r in story.github.requests].count("POST") == 1


def test_second_push_edits_the_comment_with_a_history_of_two(story):
    story.first_comment()
    result = story.second_push()
    assert result.conclusion == "success", failure_details(result)
    assert "restored the snapshot of feature/type-chart" in result.step("Load MLflow state").output
    assert story.comment_on(102, story.shas["second"]).conclusion == "success"
    comments = story.our_comments()
    assert len(comments) == 1
    body = comments[0]["body"]
    first, second = story.shas["first"][:7], story.shas["second"][:7]
    assert f"`{second}` (this run)" in body and f"`{first}`" in body
    assert story.github.calls("PATCH")
    assert [r.method for r in story.github.requests].count("POST") == 1


def test_a_late_comment_job_of_a_superseded_push_is_a_notice_not_a_failure(story):
    story.second_push()  # the PR's head is the second push now; run 101 was the first's
    before = [c["body"] for c in story.our_comments()]
    late = story.comment_on(101, story.shas["first"])
    assert late.conclusion == "success", failure_details(late)
    step = late.step("Comment on the pull request")
    assert f"::notice title=No PR comment::PR #{PR} has moved on to" in step.output
    assert [c["body"] for c in story.our_comments()] == before


def test_same_repo_pull_request_events_do_not_train_twice(story):
    payload = {
        "pull_request": {
            "number": PR,
            "head": {"sha": "a" * 40, "ref": BRANCH, "repo": {"full_name": "octo/battles"}},
        }
    }
    event = Event("pull_request", f"refs/pull/{PR}/merge", 108, payload)
    assert story.runner.run(TRAIN, "train", event).conclusion == "skipped"


def test_fork_pr_comments_only_with_a_genuine_artifact(story):
    runner, github = story.runner, story.github
    fork_pr = 9
    github.add_pull(fork_pr, FORK_HEAD)
    payload = {
        "pull_request": {
            "number": fork_pr,
            "head": {"sha": FORK_HEAD, "ref": "eve-patch", "repo": {"full_name": "eve/battles"}},
        }
    }
    event = Event("pull_request", f"refs/pull/{fork_pr}/merge", 109, payload)
    team = {"MLFLOW_TRACKING_URI": "http://team-server.invalid"}  # forks never see it
    with runner.configured(variables=team):
        result = runner.run(TRAIN, "train", event)
    assert result.conclusion == "success", failure_details(result)
    assert "pull requests from forks get no repository variables" in result.summary
    assert story.artifact(109, "build.json")["pr_number"] == fork_pr

    files = story.report_files(109)
    build = json.loads(files["build.json"])
    forged_build = json.dumps(build | {"pr_number": PR}).encode()
    story.forge_artifact(110, files | {"build.json": forged_build})
    before = [c["body"] for c in story.our_comments()]
    forged = story.comment_on(110, FORK_HEAD, "pull_request")
    assert forged.conclusion == "failure"
    assert f"PR #{PR}'s head is" in forged.step("Comment on the pull request").output
    assert [c["body"] for c in story.our_comments()] == before

    genuine = story.comment_on(109, FORK_HEAD, "pull_request")
    assert genuine.conclusion == "success", failure_details(genuine)
    assert len(story.our_comments(fork_pr)) == 1


def test_a_branch_whose_name_has_a_comma_trains_and_saves_its_state(story):
    """actions/cache refuses keys with a comma, which git allows in a branch name."""
    result = story.push("refs/heads/fix,comma", 115, "comma")
    assert result.conclusion == "success", failure_details(result)
    assert result.step("Train").outcome == "success"
    saved = result.step("Save MLflow state to the cache").output
    assert "Cache saved with key: mlflow-state-" in saved and "refs/heads/fix_comma-" in saved

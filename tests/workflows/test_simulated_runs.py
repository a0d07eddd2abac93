"""The workflows' own steps, run in order against the native stack and a loopback GitHub.

One story, in order (each test builds on the state the previous ones left in the cache and in
the fake GitHub): a first push on a PR, a second push, a merge to main, a dispatch with inputs,
a regression, fork PRs with a forged and a genuine artifact, a rollback.
"""

from __future__ import annotations

import json
import shutil

import pytest

from ci.comment import marker
from tests.github_server import FakeGitHub
from tests.workflows.harness import REPO_ROOT, Event, InvalidInputs, Runner

pytestmark = pytest.mark.integration
TRAIN = REPO_ROOT / ".github/workflows/train.yml"
COMMENT = REPO_ROOT / ".github/workflows/pr-comment.yml"
BRANCH, PR = "feature/type-chart", 5
SHAS = {
    name: f"{i:x}" * 40
    for i, name in enumerate(
        ["first", "second", "merge", "regression", "fork", "dispatch", "merge2"], start=1
    )
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    github = FakeGitHub().start()
    home = tmp_path_factory.mktemp("runner")
    runner = Runner(
        home, github.url, github.token, repository=github.repository, venv=home / "venv"
    )
    github.add_pull(PR, SHAS["first"])
    yield runner, github
    runner.cleanup()
    github.stop()


def push(runner, ref: str, sha: str, run_id: int):
    payload = {"ref": ref, "after": sha, "head_commit": {"id": sha}}
    return runner.run(TRAIN, "train", Event("push", ref, sha, run_id, payload))


def comment_on(runner, train_run_id: int, sha: str, event: str = "push"):
    payload = {
        "workflow_run": {
            "id": train_run_id,
            "head_sha": sha,
            "event": event,
            "conclusion": "completed",
        }
    }
    return runner.run(
        COMMENT,
        "comment",
        Event("workflow_run", "refs/heads/main", "0" * 40, train_run_id + 1000, payload),
    )


def artifact(runner, run_id: int, name: str = "gate.json") -> dict:
    return json.loads((runner.home / "artifacts" / str(run_id) / "train-report" / name).read_text())


def our_comments(github, pr: int = PR) -> list[dict]:
    return [c for c in github.comments_on(pr) if marker("train") in c["body"]]


def failure_details(result) -> str:
    return "\n".join(
        f"--- {s.name}: {s.outcome}\n{s.output[-2000:]}"
        for s in result.steps
        if s.outcome == "failure"
    )


def test_first_push_on_a_pr_bootstraps_and_creates_the_comment(world):
    runner, github = world
    result = push(runner, f"refs/heads/{BRANCH}", SHAS["first"], 101)
    assert result.conclusion == "success", failure_details(result)
    assert "no snapshot" in result.step("Load MLflow state").output
    gate = artifact(runner, 101)
    assert gate["champion"] is None and gate["verdict"] == "pass"
    assert "seeded into" in gate["thresholds_source"]
    assert "### ✅ Gate passed" in result.summary
    assert list((runner.home / "cache").glob("refs_heads_feature_type-chart/mlflow-state-*"))

    commented = comment_on(runner, 101, SHAS["first"])
    assert commented.conclusion == "success", failure_details(commented)
    comments = our_comments(github)
    assert len(comments) == 1 and "no champion yet" in comments[0]["body"]
    assert [r.method for r in github.requests].count("POST") == 1


def test_second_push_edits_the_comment_with_a_history_of_two(world):
    runner, github = world
    github.push(PR, SHAS["second"])
    result = push(runner, f"refs/heads/{BRANCH}", SHAS["second"], 102)
    assert result.conclusion == "success", failure_details(result)
    assert "restored the snapshot of feature/type-chart" in result.step("Load MLflow state").output
    assert comment_on(runner, 102, SHAS["second"]).conclusion == "success"
    comments = our_comments(github)
    assert len(comments) == 1
    body = comments[0]["body"]
    assert f"`{SHAS['second'][:7]}` (this run)" in body and f"`{SHAS['first'][:7]}`" in body
    assert github.calls("PATCH") and [r.method for r in github.requests].count("POST") == 1


def test_a_late_comment_job_of_a_superseded_push_is_a_notice_not_a_failure(world):
    runner, github = world  # the PR's head is the second push now; run 101 was the first's
    before = [c["body"] for c in our_comments(github)]
    late = comment_on(runner, 101, SHAS["first"])
    assert late.conclusion == "success", failure_details(late)
    step = late.step("Comment on the pull request")
    assert f"::notice title=No PR comment::PR #{PR} has moved on to" in step.output
    assert [c["body"] for c in our_comments(github)] == before


def test_merge_to_main_promotes_the_champion(world):
    runner, _ = world
    result = push(runner, "refs/heads/main", SHAS["merge"], 103)
    assert result.conclusion == "success", failure_details(result)
    assert "v1 is now champion" in result.step("Promote").output
    snapshots = list((runner.home / "cache").glob("refs_heads_main/mlflow-state-*"))
    manifest = json.loads((snapshots[0] / "manifest.json").read_text())
    assert artifact(runner, 103)["candidate"]["run_id"] in manifest["kept_runs"]


def test_a_branch_push_is_compared_with_mains_champion_but_cannot_promote(world):
    runner, _ = world
    github = world[1]
    github.push(PR, SHAS["regression"])
    shutil.rmtree(runner.home / "cache" / "refs_heads_feature_type-chart")  # only main's state
    result = push(runner, f"refs/heads/{BRANCH}", SHAS["regression"], 104)
    assert result.conclusion == "success", failure_details(result)
    assert "restored the snapshot of main" in result.step("Load MLflow state").output
    gate = artifact(runner, 104)
    assert gate["champion"]["version"] == "1"
    assert result.step("Promote").outcome == "skipped"


def test_a_regression_fails_the_job_and_the_comment_shows_it(world):
    runner, github = world
    event = Event(
        "workflow_dispatch",
        f"refs/heads/{BRANCH}",
        SHAS["regression"],
        105,
        inputs={"model": "logistic_regression", "dataset-version": "v1"},
    )
    result = runner.run(TRAIN, "train", event)
    assert result.conclusion == "failure"
    assert result.step("Gate").outcome == "failure"
    assert result.step("Upload the report").outcome == "success"
    assert artifact(runner, 105)["verdict"] == "fail"
    assert comment_on(runner, 105, SHAS["regression"], "workflow_dispatch").conclusion == "success"
    body = our_comments(github)[0]["body"]
    assert "### ❌ Gate failed" in body and "logistic_regression" in body
    assert len(our_comments(github)) == 1


def test_dispatch_inputs_reach_the_cli(world):
    runner, _ = world
    event = Event(
        "workflow_dispatch",
        "refs/heads/main",
        SHAS["dispatch"],
        106,
        inputs={
            "model": "random_forest",
            "scenario": "balanced",
            "tune": False,
            "n-trials": 3,
            "promote": False,
        },
    )
    result = runner.run(TRAIN, "train", event)
    assert result.step("Train").outcome == "success", failure_details(result)
    params = artifact(runner, 106)["candidate"]["params"]
    assert (params["model"], params["scenario_type"], params["n_trials"], params["tune"]) == (
        "random_forest",
        "balanced",
        "3",
        "False",
    )
    assert result.step("Promote").outcome == "skipped"  # promote: false (and gate judged)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"model": "svm"}, "model: 'svm' is not one of"),
        ({"tune": "yes"}, "tune: 'yes' is not a boolean"),
        ({"epochs": 3}, "unexpected inputs ['epochs']"),
    ],
)
def test_dispatch_inputs_github_would_refuse(world, inputs, message):
    runner, _ = world
    with pytest.raises(InvalidInputs, match=message.replace("[", r"\[").replace("]", r"\]")):
        runner.run(
            TRAIN,
            "train",
            Event("workflow_dispatch", "refs/heads/main", "f" * 40, 1, inputs=inputs),
        )


def test_a_dispatch_input_the_cli_refuses_fails_the_train_step(world):
    runner, _ = world
    event = Event("workflow_dispatch", "refs/heads/main", "e" * 40, 107, inputs={"n-trials": 0})
    result = runner.run(TRAIN, "train", event)
    assert result.conclusion == "failure"
    train = result.step("Train")
    assert train.outcome == "failure"
    assert "argument --n-trials: must be between 1 and 1,000" in train.output


def test_same_repo_pull_request_events_do_not_train_twice(world):
    runner, _ = world
    payload = {
        "pull_request": {
            "number": PR,
            "head": {"sha": SHAS["second"], "repo": {"full_name": "octo/battles"}},
        }
    }
    event = Event("pull_request", f"refs/pull/{PR}/merge", "a" * 40, 108, payload, head_ref=BRANCH)
    assert runner.run(TRAIN, "train", event).conclusion == "skipped"


def test_fork_pr_comments_only_with_a_genuine_artifact(world):
    runner, github = world
    fork_pr = 9
    github.add_pull(fork_pr, SHAS["fork"])
    payload = {
        "pull_request": {
            "number": fork_pr,
            "head": {"sha": SHAS["fork"], "repo": {"full_name": "eve/battles"}},
        }
    }
    event = Event(
        "pull_request", f"refs/pull/{fork_pr}/merge", "b" * 40, 109, payload, head_ref="eve-patch"
    )
    runner.vars["MLFLOW_TRACKING_URI"] = "http://team-server.invalid"  # forks never see it
    try:
        result = runner.run(TRAIN, "train", event)
    finally:
        del runner.vars["MLFLOW_TRACKING_URI"]
    assert result.conclusion == "success", failure_details(result)
    assert "pull requests from forks get no repository variables" in result.summary
    assert artifact(runner, 109, "build.json")["pr_number"] == fork_pr

    forged_dir = runner.home / "artifacts" / "110" / "train-report"
    shutil.copytree(runner.home / "artifacts" / "109" / "train-report", forged_dir)
    build = json.loads((forged_dir / "build.json").read_text())
    (forged_dir / "build.json").write_text(json.dumps(build | {"pr_number": PR}))
    before = [c["body"] for c in our_comments(github)]
    forged = comment_on(runner, 110, SHAS["fork"], "pull_request")
    assert forged.conclusion == "failure"
    assert f"PR #{PR}'s head is" in forged.step("Comment on the pull request").output
    assert [c["body"] for c in our_comments(github)] == before

    genuine = comment_on(runner, 109, SHAS["fork"], "pull_request")
    assert genuine.conclusion == "success", failure_details(genuine)
    assert len(our_comments(github, fork_pr)) == 1


def test_rollback_moves_the_champion_back(world):
    runner, _ = world
    result = push(runner, "refs/heads/main", SHAS["merge2"], 111)
    assert result.conclusion == "success", failure_details(result)
    assert "v2 is now champion; v1 is now previous-champion" in result.step("Promote").output
    event = Event(
        "workflow_dispatch", "refs/heads/main", SHAS["merge2"], 112, inputs={"action": "rollback"}
    )
    assert runner.run(TRAIN, "train", event).conclusion == "skipped"
    rolled = runner.run(TRAIN, "rollback", event)
    assert rolled.conclusion == "success", failure_details(rolled)
    assert (
        "rolled back: v1 is now champion; v2 is now previous-champion"
        in rolled.step("Roll back").output
    )


def test_team_mode_trains_against_the_teams_server_without_stack_or_cache(world, tmp_path):
    import mlflow

    from tests.native_stack import NativeStack

    runner, _ = world
    team = NativeStack(tmp_path / "team").up()
    runner.vars["MLFLOW_TRACKING_URI"] = team.tracking_uri
    try:
        cache_before = sorted(p.name for p in (runner.home / "cache").rglob("mlflow-state-*"))
        result = push(runner, "refs/heads/team-feature", "c" * 40, 113)
        assert result.conclusion == "success", failure_details(result)
        for step in (
            "Start the stack",
            "Load MLflow state",
            "Snapshot MLflow state",
            "Stop the stack",
        ):
            assert result.step(step).outcome == "skipped", step
        run_id = artifact(runner, 113)["candidate"]["run_id"]
        assert mlflow.MlflowClient(team.tracking_uri).get_run(run_id).info.status == "FINISHED"
        assert sorted(p.name for p in (runner.home / "cache").rglob("mlflow-state-*")) == (
            cache_before
        )
    finally:
        runner.vars.pop("MLFLOW_TRACKING_URI")
        team.down()

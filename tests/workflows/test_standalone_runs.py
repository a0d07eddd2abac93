"""Simulated runs that need no earlier run: dispatch inputs GitHub or the CLI refuses, and
team mode (a repository variable names the team's server). Their own module, so a worker
runs them beside the two long stories (see story.py)."""

from __future__ import annotations

import json

import pytest

from tests.workflows.act import Event, InvalidInputs
from tests.workflows.story import TRAIN, failure_details

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"model": "svm"}, "model: 'svm' is not one of"),
        ({"tune": "yes"}, "tune: 'yes' is not a boolean"),
        ({"epochs": 3}, "unexpected inputs ['epochs']"),
    ],
)
def test_dispatch_inputs_github_would_refuse(story, inputs, message):
    with pytest.raises(InvalidInputs, match=message.replace("[", r"\[").replace("]", r"\]")):
        story.runner.run(
            TRAIN,
            "train",
            Event("workflow_dispatch", "refs/heads/main", 1, inputs=inputs),
        )


def test_a_dispatch_input_the_cli_refuses_fails_the_train_step(story):
    # In team mode, with a team server nothing answers on: the CLI refuses the input before it
    # would reach any server, and no stack is started for a job that fails at its first step.
    event = Event("workflow_dispatch", "refs/heads/main", 107, inputs={"n-trials": 0})
    with story.runner.configured(variables={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}):
        result = story.runner.run(TRAIN, "train", event)
    assert result.conclusion == "failure"
    train = result.step("Train")
    assert train.outcome == "failure"
    assert "argument --n-trials: must be between 1 and 1,000" in train.output


def test_team_mode_trains_against_the_teams_server_without_stack_or_cache(story, stack):
    """The team's server is the suite's shared stack: any server the variable names."""
    import mlflow

    with story.runner.configured(variables={"MLFLOW_TRACKING_URI": stack.tracking_uri}):
        result = story.push("refs/heads/team-feature", 113, "team")
    assert result.conclusion == "success", failure_details(result)
    for step in (
        "Start the stack",
        "Restore MLflow state from the cache",
        "Load MLflow state",
        "Snapshot MLflow state",
        "Save MLflow state to the cache",
        "Stop the stack",
    ):
        assert result.step(step).outcome == "skipped", step
    run_id = story.artifact(113)["candidate"]["run_id"]
    assert mlflow.MlflowClient(stack.tracking_uri).get_run(run_id).info.status == "FINISHED"


def test_team_mode_a_champion_failing_verification_is_rolled_back_and_the_job_fails(
    story, tmp_path
):
    """Team mode, with the team's predictor named by ``PREDICTOR_URL``: a merge promotes and
    verifies v1 on the team's server; the team then promotes v2 and raises a floor, and a
    verify dispatch finds v2 below it: rolled back to v1 by itself, the job fails."""
    import subprocess

    import mlflow

    from tests.native_stack import NativeStack, free_port, predictor_command

    team = NativeStack(tmp_path / "team").up()
    port = free_port()
    command = predictor_command(team.tracking_uri, port, {"--poll-interval": "0.5"})
    predictor = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    runner = story.runner
    try:
        team_mode = {
            "MLFLOW_TRACKING_URI": team.tracking_uri,
            "PREDICTOR_URL": f"http://127.0.0.1:{port}",
        }
        with runner.configured(variables=team_mode):
            merged = story.push("refs/heads/main", 120, "team-merge")
            assert merged.conclusion == "success", failure_details(merged)
            verified = merged.step("Verify the served champion").output
            assert "verified: the predictor serves v1" in verified
            client = mlflow.MlflowClient(team.tracking_uri)
            v1 = client.get_model_version_by_alias("pokemon-battle", "champion")
            mlflow.set_tracking_uri(team.tracking_uri)
            v2 = mlflow.register_model(v1.source, "pokemon-battle")  # the team promotes another
            mlflow.set_tracking_uri(None)
            client.set_registered_model_alias("pokemon-battle", "previous-champion", v1.version)
            client.set_registered_model_alias("pokemon-battle", "champion", v2.version)
            floor = json.dumps({"threshold": 0.999, "greater_is_better": True})
            client.set_registered_model_tag("pokemon-battle", "gate.test_f1", floor)

            event = Event("workflow_dispatch", "refs/heads/main", 121, inputs={"action": "verify"})
            result = runner.run(TRAIN, "champion", event)
            assert result.conclusion == "failure"
            verify = result.step("Verify the served champion")
            assert verify.outcome == "failure"
            assert f"::error title=Verification of v{v2.version}" in verify.output
            assert "the canary battles miss the floor: test_f1" in verify.output
            assert "failed verification" in result.summary and "is now champion" in result.summary
            champion = client.get_model_version_by_alias("pokemon-battle", "champion")
            assert champion.version == v1.version
    finally:
        predictor.kill()
        predictor.wait()
        team.down()


def test_a_verify_dispatch_in_team_mode_without_a_predictor_url_fails_saying_so(story, stack):
    """Verification of the team's champion needs the team's predictor: without the variable
    there is nothing to verify, and a green job would claim otherwise."""
    event = Event("workflow_dispatch", "refs/heads/main", 122, inputs={"action": "verify"})
    with story.runner.configured(variables={"MLFLOW_TRACKING_URI": stack.tracking_uri}):
        result = story.runner.run(TRAIN, "champion", event)
    assert result.conclusion == "failure"
    verify = result.step("Verify the served champion")
    assert verify.outcome == "failure"
    assert "set the repository variable PREDICTOR_URL" in verify.output


def test_a_lineage_with_no_surviving_snapshot_is_never_restarted_silently(story):
    """A champion was promoted (a deployment says so), and neither the cache nor an artifact
    holds its state: the run stops before training, saying how to start afresh."""
    story.github.deployments.append(
        {"id": 1, "sha": "d" * 40, "environment": "champion", "created_at": "2026-11-02"}
    )
    result = story.push("refs/heads/main", 123, "lost")
    assert result.conclusion == "failure"
    recover = result.step("Recover the state if the cache lost it")
    assert recover.outcome == "failure"
    assert "refusing to start a new lineage silently" in recover.output
    assert "start-afresh: true" in recover.output
    assert result.step("Train").outcome == "skipped"

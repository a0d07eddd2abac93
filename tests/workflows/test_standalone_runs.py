"""Simulated runs that need no earlier run: dispatch inputs GitHub or the CLI refuses, and
team mode (a repository variable names the team's server). Their own module, so a worker
runs them beside the two long stories (see story.py)."""

from __future__ import annotations

import pytest

from tests.workflows.harness import Event, InvalidInputs
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
            Event("workflow_dispatch", "refs/heads/main", "f" * 40, 1, inputs=inputs),
        )


def test_a_dispatch_input_the_cli_refuses_fails_the_train_step(story):
    # In team mode, with a team server nothing answers on: the CLI refuses the input before it
    # would reach any server, and no stack is started for a job that fails at its first step.
    story.runner.vars["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    event = Event("workflow_dispatch", "refs/heads/main", "e" * 40, 107, inputs={"n-trials": 0})
    try:
        result = story.runner.run(TRAIN, "train", event)
    finally:
        story.runner.vars.pop("MLFLOW_TRACKING_URI")
    assert result.conclusion == "failure"
    train = result.step("Train")
    assert train.outcome == "failure"
    assert "argument --n-trials: must be between 1 and 1,000" in train.output


def test_team_mode_trains_against_the_teams_server_without_stack_or_cache(story, stack):
    """The team's server is the suite's shared stack: any server the variable names."""
    import mlflow

    runner = story.runner
    runner.vars["MLFLOW_TRACKING_URI"] = stack.tracking_uri
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
        assert mlflow.MlflowClient(stack.tracking_uri).get_run(run_id).info.status == "FINISHED"
        assert sorted(p.name for p in (runner.home / "cache").rglob("mlflow-state-*")) == (
            cache_before
        )
    finally:
        runner.vars.pop("MLFLOW_TRACKING_URI")

"""The simulation keeps GitHub's rules: a workflow that would fail on a runner fails here."""

from __future__ import annotations

import json
import subprocess

import pytest

from ci.server_mode import describe_mode
from tests.conftest import load_workflow
from tests.workflows.expressions import Evaluator, condition, standard_functions
from tests.workflows.harness import (
    REPO_ROOT,
    Event,
    _bare_python,
    _can_write,
    _from_fork,
    leaked_masks,
)

FORK = {"pull_request": {"number": 9, "head": {"sha": "f" * 40, "repo": {"full_name": "eve/b"}}}}
SAME = {"pull_request": {"number": 9, "head": {"sha": "f" * 40, "repo": {"full_name": "o/b"}}}}


def test_only_a_job_granted_write_and_not_from_a_fork_gets_a_writing_token():
    comment = load_workflow(REPO_ROOT / ".github/workflows/pr-comment.yml")["jobs"]["comment"]
    train = load_workflow(REPO_ROOT / ".github/workflows/train.yml")["jobs"]["train"]
    push = Event("push", "refs/heads/main", "a" * 40, 1)
    fork = Event("pull_request", "refs/pull/9/merge", "b" * 40, 2, FORK)
    assert _can_write(comment, push, "o/b")
    assert not _can_write(train, push, "o/b")
    assert not _can_write(comment, fork, "o/b")
    assert _from_fork(fork, "o/b") and not _from_fork(
        Event("pull_request", "refs/pull/9/merge", "b" * 40, 2, SAME), "o/b"
    )


def test_a_value_printed_before_its_mask_is_a_leak():
    assert leaked_masks("::add-mask::s3cret\nusing s3cret\n") == []
    assert leaked_masks("error: password s3cret refused\n::add-mask::s3cret\n") == ["s3cret"]


def test_the_bare_python_has_no_site_packages(tmp_path):
    python3 = _bare_python(tmp_path) / "python3"
    done = subprocess.run([python3, "-c", "import yaml"], capture_output=True, check=False)
    assert done.returncode == 1 and b"No module named 'yaml'" in done.stderr
    assert (
        subprocess.run([python3, "-c", "import json, urllib.request"], check=False).returncode == 0
    )


@pytest.mark.parametrize(
    ("env", "team", "says"),
    [
        ({"TEAM_TRACKING_URI": "https://mlflow.example"}, True, "the team server"),
        (
            {"TEAM_TRACKING_URI": "https://mlflow.example", "GITHUB_ACTOR": "dependabot[bot]"},
            True,
            "Dependabot runs get no Actions secrets",
        ),
        ({"GITHUB_EVENT_NAME": "pull_request", "fork": "1"}, False, "from forks get no"),
        ({}, False, "no `MLFLOW_TRACKING_URI` repository variable"),
    ],
)
def test_the_job_summary_says_which_mlflow_and_why(tmp_path, env, team, says):
    if env.pop("fork", None):
        event = tmp_path / "event.json"
        event.write_text(json.dumps(FORK))
        env |= {"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "o/b"}
    assert describe_mode(env | {"GITHUB_ACTIONS": "true"})[0] is team
    assert says in describe_mode(env)[1]


@pytest.mark.parametrize(
    ("event_name", "branch", "inputs", "promotes"),
    [
        ("push", "main", {}, True),
        ("push", "feature/x", {}, False),
        ("workflow_dispatch", "main", {"promote": False}, False),
        ("workflow_dispatch", "main", {"promote": True}, True),
        ("workflow_dispatch", "feature/x", {"promote": True}, False),
    ],
)
def test_promotion_is_for_the_default_branch_by_push_or_when_a_dispatch_asks(
    event_name, branch, inputs, promotes
):
    train = load_workflow(REPO_ROOT / ".github/workflows/train.yml")["jobs"]["train"]
    (promote,) = [step for step in train["steps"] if step.get("id") == "promote"]
    contexts = {
        "github": {
            "event_name": event_name,
            "ref": f"refs/heads/{branch}",
            "event": {"repository": {"default_branch": "main"}},
        },
        "inputs": inputs,
        "steps": {"gate": {"outcome": "success"}},
    }
    evaluator = Evaluator(contexts, standard_functions(lambda: "success"))
    assert condition(promote["if"], evaluator) is promotes

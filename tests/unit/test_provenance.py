"""Where a run comes from: Actions' environment and event payload, or the local checkout."""

import json

import pytest

from machine_learning.provenance import build_context
from machine_learning.records import RecordError

ACTIONS = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "d" * 40, "GITHUB_REF_NAME": "main"}


def test_pull_request_context_uses_the_head_commit_not_the_merge_commit(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 17, "head": {"sha": "abc123"}}}))
    context = build_context(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_SHA": "merge999",
            "GITHUB_HEAD_REF": "feature/x",
            "GITHUB_REF_NAME": "17/merge",
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_RUN_ID": "42",
        }
    )
    assert context.as_tags() == {
        "ci.git_sha": "abc123",
        "ci.branch": "feature/x",
        "ci.event": "pull_request",
        "ci.pr_number": "17",
        "ci.run_url": "https://github.com/o/r/actions/runs/42",
        "mlflow.source.git.commit": "abc123",
    }


def test_push_context_has_no_pull_request():
    context = build_context(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_SHA": "def456",
            "GITHUB_REF_NAME": "main",
        }
    )
    assert (context.git_sha, context.branch, context.pr_number) == ("def456", "main", None)
    assert "ci.pr_number" not in context.as_tags()


def test_pull_request_number_from_the_ref_when_no_payload():
    assert build_context(ACTIONS | {"GITHUB_REF": "refs/pull/5/merge"}).pr_number == 5
    assert build_context(ACTIONS | {"GITHUB_REF": "refs/heads/main"}).pr_number is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("[]", "the document"),
        ('{"pull_request": null}', None),
        ('{"pull_request": {"number": "7"}}', "pull_request.number"),
        ('{"pull_request": {"number": 0}}', "pull_request.number"),
        ('{"pull_request": {"number": 7, "head": {"sha": 5}}}', "pull_request.head.sha"),
        ('{"pull_request": {"head": {"sha": "abc"}}}', "pull_request.number"),
    ],
)
def test_a_malformed_event_payload_is_named_not_a_traceback(tmp_path, payload, field):
    event = tmp_path / "event.json"
    event.write_text(payload)
    env = ACTIONS | {"GITHUB_EVENT_PATH": str(event)}
    if field is None:  # `pull_request: null` is a push-like payload, not an error
        assert build_context(env).pr_number is None
        return
    with pytest.raises(RecordError) as caught:
        build_context(env)
    assert str(caught.value).startswith(f"event payload {event}: ")
    assert field in str(caught.value)


def test_outside_actions_the_local_checkout_is_read(tmp_path):
    context = build_context({}, cwd=tmp_path)  # not a git checkout: nothing to read, no crash
    assert (context.git_sha, context.event) == ("", "local")

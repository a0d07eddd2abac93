"""Where a run comes from: Actions' environment and event payload, or the local checkout."""

import json

import pytest

from machine_learning.contract.provenance import (
    build_context,
    default_branch_refusal,
    is_default_branch,
)
from machine_learning.contract.records import RecordError

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


def payload_file(tmp_path, payload: dict | None) -> dict[str, str]:
    """Actions' variables for a run whose event payload is ``payload`` (None: no payload)."""
    if payload is None:
        return dict(ACTIONS)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    return ACTIONS | {"GITHUB_EVENT_PATH": str(event)}


MAIN_REPOSITORY = {"repository": {"full_name": "octo/battles", "default_branch": "main"}}


@pytest.mark.parametrize(
    ("ref", "payload", "refusal"),
    [
        ("refs/heads/main", MAIN_REPOSITORY, None),
        ("refs/heads/Main", MAIN_REPOSITORY, "this run is on `Main`"),
        ("refs/heads/MAIN", MAIN_REPOSITORY, "this run is on `MAIN`"),
        ("refs/heads/main-x", MAIN_REPOSITORY, "this run is on `main-x`"),
        ("refs/heads/feature/main", MAIN_REPOSITORY, "this run is on `feature/main`"),
        ("refs/tags/main", MAIN_REPOSITORY, "this run is on `refs/tags/main`"),
        ("refs/pull/3/merge", MAIN_REPOSITORY, "this run is on `refs/pull/3/merge`"),
        ("", MAIN_REPOSITORY, "this run is on ``"),
        ("refs/heads/main", None, "names no repository.default_branch"),
        ("refs/heads/main", {"repository": {"full_name": "o/r"}}, "names no repository"),
        ("refs/heads/main", {}, "names no repository.default_branch"),
    ],
)
def test_the_default_branch_is_decided_case_sensitively_from_the_payload(
    tmp_path, ref, payload, refusal
):
    env = payload_file(tmp_path, payload) | {"GITHUB_REF": ref}
    found = default_branch_refusal(env)
    assert is_default_branch(env) == (refusal is None)
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found
    if payload == MAIN_REPOSITORY and refusal:
        assert found.startswith("promotion is for the default branch `main` only; ")


def test_a_malformed_default_branch_is_named(tmp_path):
    env = payload_file(tmp_path, {"repository": {"default_branch": 5}})
    with pytest.raises(RecordError, match=r"repository\.default_branch"):
        is_default_branch(env | {"GITHUB_REF": "refs/heads/main"})

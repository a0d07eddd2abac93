import json

from ci.github import build_context, pull_request_number


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
    assert pull_request_number({"GITHUB_REF": "refs/pull/5/merge"}) == 5
    assert pull_request_number({"GITHUB_REF": "refs/heads/main"}) is None


def test_outside_actions_the_local_checkout_is_read(tmp_path):
    context = build_context({}, cwd=tmp_path)  # not a git checkout: nothing to read, no crash
    assert (context.git_sha, context.event) == ("", "local")

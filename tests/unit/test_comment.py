"""The sticky comment against a loopback GitHub API: exact requests, upserts, failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest

from ci.comment import (
    ACTIONS_BOT,
    REPORT_LIMIT,
    TRUNCATED,
    CommentError,
    find_pull_request,
    marker,
    upsert,
    upsert_from_artifact,
)
from ci.github import GitHubClient, GitHubError
from tests.conftest import cli_env

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def client(fake, sleeps: list[float] | None = None, **settings: float) -> GitHubClient:
    sink = sleeps if sleeps is not None else []
    return GitHubClient(fake.repository, fake.token, fake.url, sleep=sink.append, **settings)


def comment_cli(fake, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = cli_env(
        GITHUB_TOKEN=token or fake.token, GITHUB_REPOSITORY=fake.repository, GITHUB_API_URL=fake.url
    )
    return subprocess.run(
        [sys.executable, "-m", "ci", "comment", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_two_upserts_leave_one_comment_edited_in_place(github):
    github.add_pull(7, SHA)
    github.add_comment(7, "LGTM", user="reviewer")
    first = upsert(client(github), 7, "report one", "train")
    second = upsert(client(github), 7, "report two", "train")
    assert (first.action, second.action) == ("created", "updated")
    assert first.comment_id == second.comment_id
    ours = [c for c in github.comments_on(7) if marker("train") in c["body"]]
    assert len(ours) == 1 and ours[0]["body"] == f"{marker('train')}\nreport two"
    assert len(github.comments_on(7)) == 2  # the reviewer's comment is untouched
    post, patch = github.calls("POST")[0], github.calls("PATCH")[0]
    assert (post.path, post.body) == (
        "/repos/octo/battles/issues/7/comments",
        {"body": f"{marker('train')}\nreport one"},
    )
    assert patch.path == f"/repos/octo/battles/issues/comments/{first.comment_id}"
    assert all(r.headers["authorization"] == "Bearer test-token" for r in github.requests)
    assert all(r.headers["x-github-api-version"] == "2022-11-28" for r in github.requests)


def test_each_report_kind_has_its_own_comment(github):
    github.add_pull(7, SHA)
    upsert(client(github), 7, "training", "train")
    upsert(client(github), 7, "data drift", "drift")
    assert len(github.comments_on(7)) == 2


def test_the_marker_is_found_beyond_the_first_page(github):
    github.add_pull(9, SHA)
    for i in range(150):
        github.add_comment(9, f"chatter {i}")
    existing = github.add_comment(9, f"{marker('train')}\nold report", user=ACTIONS_BOT)
    result = upsert(client(github), 9, "new report", "train")
    assert (result.action, result.comment_id) == ("updated", existing)
    pages = [r.query.get("page", "1") for r in github.calls("GET")]
    assert pages == ["1", "2"]
    assert github.calls("GET")[0].query["per_page"] == "100"


def test_the_pull_request_is_found_by_its_head_commit(github):
    github.add_pull(3, "f" * 40, state="closed")
    github.add_pull(4, SHA)
    assert find_pull_request(client(github), SHA) == 4
    with pytest.raises(CommentError, match="no open pull request has commit"):
        find_pull_request(client(github), "0" * 40)


def test_rate_limits_are_waited_out_as_retry_after_says(github):
    github.add_pull(7, SHA)
    github.failures.extend(
        [
            (429, {"Retry-After": "7"}, {"message": "slow down"}),
            (403, {"Retry-After": "2"}, {"message": "secondary rate limit"}),
        ]
    )
    sleeps: list[float] = []
    assert upsert(client(github, sleeps), 7, "report", "train").action == "created"
    assert sleeps == [7.0, 2.0]


def test_server_errors_are_retried_then_reported(github):
    github.failures.extend([(502, {}, {"message": "bad gateway"})] * 4)
    sleeps: list[float] = []
    with pytest.raises(GitHubError, match="502 bad gateway") as error:
        client(github, sleeps).pull(1)
    assert error.value.status == 502 and sleeps == [1.0, 2.0, 4.0]


def test_a_read_only_token_is_explained(github):
    github.add_pull(7, SHA)
    github.failures.append((403, {}, {"message": "Resource not accessible by integration"}))
    with pytest.raises(CommentError, match=r"\(403\): the token is read-only") as error:
        upsert(client(github), 7, "report", "train")
    assert error.value.status == 403


def test_an_oversized_body_is_refused_before_sending(github):
    github.add_pull(7, SHA)
    with pytest.raises(CommentError, match="GitHub accepts 65,536"):
        upsert(client(github), 7, "x" * 70_000, "train")
    assert github.calls("POST") == []


def test_cli_creates_then_updates_and_never_imports_heavy_libraries(github, tmp_path):
    github.add_pull(12, SHA)
    body = tmp_path / "report.md"
    body.write_text("### ✅ Gate passed")
    first = comment_cli(github, "--body", str(body), "--sha", SHA)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created comment") and "on PR #12" in first.stdout
    assert comment_cli(github, "--body", str(body), "--pr", "12").stdout.startswith("updated")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ci.cli import main; main(sys.argv[1:]); "
            "heavy = ('mlflow', 'xgboost', 'pandas', 'numpy'); "
            "print(sorted(m for m in heavy if m in sys.modules))",
            "comment",
            "--body",
            str(body),
            "--pr",
            "12",
        ],
        env=cli_env(
            GITHUB_TOKEN=github.token,
            GITHUB_REPOSITORY=github.repository,
            GITHUB_API_URL=github.url,
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        (
            (403, {}, {"message": "Resource not accessible by integration"}),
            1,
            "error: GitHub refused to comment on PR #12 (403)",
        ),
        ((404, {}, {"message": "Not Found"}), 1, "error: PR #12 or the repository was not found"),
        (
            (422, {}, {"message": "Validation Failed"}),
            1,
            "error: GitHub rejected the comment (422)",
        ),
    ],
)
def test_cli_failure_paths(github, tmp_path, failure, code, message):
    github.add_pull(12, SHA)
    github.failures.append(failure)
    body = tmp_path / "report.md"
    body.write_text("report")
    done = comment_cli(github, "--body", str(body), "--pr", "12")
    assert done.returncode == code, done.stderr
    assert message in done.stdout + done.stderr


def test_cli_waits_out_a_rate_limited_create_then_posts(github, tmp_path):
    github.add_pull(12, SHA)
    headers = {"x-ratelimit-remaining": "0", "retry-after": "1"}
    github.refusals["POST"] = deque([(403, headers, {"message": "API rate limit exceeded"})])
    body = tmp_path / "report.md"
    body.write_text("report")
    started = time.monotonic()
    done = comment_cli(github, "--body", str(body), "--pr", "12")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.0 and len(github.comments_on(12)) == 1


def test_cli_rate_limited_beyond_its_budget_is_exit_1_even_when_read_only_is_ok(github, tmp_path):
    """--read-only-ok forgives a fork's read-only token, never a rate limit: that comment is
    lost unless the job is rerun, so the step fails and says when."""
    github.add_pull(12, SHA)
    github.refusals["POST"] = deque([(403, {}, SECONDARY)])
    body = tmp_path / "report.md"
    body.write_text("report")
    done = comment_cli(github, "--body", str(body), "--pr", "12", "--read-only-ok")
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: GitHub rate-limited the comment on PR #12 (403)")
    assert "retry after" in line and "read-only" not in line


def test_cli_needs_a_token(github, tmp_path):
    body = tmp_path / "report.md"
    body.write_text("report")
    done = subprocess.run(
        [sys.executable, "-m", "ci", "comment", "--body", str(body)],
        env=cli_env(GITHUB_REPOSITORY="o/r"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: set GITHUB_TOKEN and GITHUB_REPOSITORY (or --repo owner/name)"
    )


@pytest.mark.parametrize(
    ("headers", "waited"),
    [
        ({"Retry-After": "abc"}, 60.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "nan"}, 60.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past: no wait
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}, 60.0),
    ],
)
def test_malformed_rate_limit_headers_count_as_absent(github, headers, waited):
    """A header that cannot be read says nothing: GitHub's rule for none, a minute, applies."""
    github.add_pull(7, SHA)
    github.failures.append((429, headers, {"message": "slow down"}))
    sleeps: list[float] = []
    assert upsert(client(github, sleeps, budget_s=120), 7, "report", "train").action == "created"
    assert sleeps == [waited]


def test_a_black_holed_api_is_reported_within_the_budget():
    import socket
    import time

    with socket.socket() as hole:  # accepts connections (backlog) and never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        github = GitHubClient("o/r", "t", url, budget_s=2.0, request_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(GitHubError) as error:
            github.pull(1)
        assert time.monotonic() - started < 5.0
    assert error.value.status == 599 and "no answer" in str(error.value)


def test_a_humans_comment_quoting_the_marker_is_never_edited(github):
    github.add_pull(7, SHA)
    quoted = github.add_comment(7, f"look: {marker('train')} is how the bot finds it")
    forged = github.add_comment(7, f"{marker('train')}\nI wrote this", user="mallory")
    result = upsert(client(github), 7, "report", "train")
    assert result.action == "created" and result.comment_id not in (quoted, forged)
    assert github.comments[forged]["body"].endswith("I wrote this")


def test_markers_and_mentions_in_a_body_are_neutralised(github):
    github.add_pull(7, SHA)
    body = f"{marker('eval')}\ncc @octocat @org/team, mail a@b.c <!-- hidden -->"
    upsert(client(github), 7, body, "train")
    (posted,) = github.comments_on(7)
    assert posted["body"].count("<!--") == 1 and posted["body"].startswith(marker("train"))
    assert "@octocat" not in posted["body"] and "@\u200boctocat" in posted["body"]
    assert upsert(client(github), 7, "next", "eval").action == "created"  # not hijacked
    assert len(github.comments_on(7)) == 2


def test_a_create_that_failed_but_was_applied_is_adopted_not_repeated(github):
    github.add_pull(7, SHA)
    github.failures_after["POST"] = (502, {}, {"message": "bad gateway"})
    sleeps: list[float] = []
    result = upsert(client(github, sleeps), 7, "report", "train")
    assert result.action == "created" and len(github.comments_on(7)) == 1
    assert [r.method for r in github.requests] == ["GET", "POST", "GET", "PATCH"]


def test_duplicates_of_ours_are_healed_to_one(github):
    github.add_pull(7, SHA)
    first = github.add_comment(7, f"{marker('train')}\nold", user=ACTIONS_BOT)
    github.add_comment(7, f"{marker('train')}\nolder duplicate", user=ACTIONS_BOT)
    result = upsert(client(github), 7, "report", "train")
    assert result.comment_id == first and "1 duplicate(s) of ours deleted" in result.action
    assert [c["id"] for c in github.comments_on(7)] == [first]


SECONDARY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}


def test_a_secondary_rate_limit_403_without_headers_waits_a_minute(github):
    """GitHub: with no header saying how long, "wait for at least one minute"."""
    github.add_pull(7, SHA)
    github.failures.append((403, {}, SECONDARY))
    sleeps: list[float] = []
    assert upsert(client(github, sleeps, budget_s=120), 7, "report", "train").action == "created"
    assert sleeps == [60.0]


@pytest.mark.parametrize(
    ("refusal", "waited"),
    [
        ((403, {"x-ratelimit-remaining": "0", "retry-after": "3"}, {"message": "API rate"}), 3.0),
        ((429, {"x-ratelimit-remaining": "0", "retry-after": "1"}, {"message": "slow"}), 1.0),
        ((403, {"retry-after": "2"}, SECONDARY), 2.0),
        ((403, {}, SECONDARY), 60.0),
    ],
    ids=["primary-403", "primary-429", "secondary-retry-after", "secondary-no-header"],
)
def test_a_rate_limited_create_is_waited_out_and_posted_once(github, refusal, waited):
    """GitHub refuses a rate-limited request without applying it: the create is retried after
    the wait the answer asks for, and the PR gets exactly one comment."""
    github.add_pull(7, SHA)
    github.refusals["POST"] = deque([refusal])
    sleeps: list[float] = []
    result = upsert(client(github, sleeps, budget_s=120), 7, "report", "train")
    assert result.action == "created" and len(github.comments_on(7)) == 1
    assert sleeps == [waited] and len(github.calls("POST")) == 2


def test_a_primary_rate_limit_is_waited_out_until_its_reset(github):
    github.add_pull(7, SHA)
    reset = str(int(time.time()) + 30)
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
    github.refusals["POST"] = deque([(403, headers, {"message": "API rate limit exceeded"})])
    sleeps: list[float] = []
    assert upsert(client(github, sleeps), 7, "report", "train").action == "created"
    assert len(sleeps) == 1 and 28.0 <= sleeps[0] <= 30.0


def test_a_rate_limit_longer_than_the_budget_fails_saying_when_to_retry(github):
    github.add_pull(7, SHA)
    github.refusals["POST"] = deque([(403, {}, SECONDARY)])
    sleeps: list[float] = []
    with pytest.raises(
        CommentError, match=r"rate-limited .* retry after \d\d:\d\d:\d\d UTC"
    ) as error:
        upsert(client(github, sleeps), 7, "report", "train")
    assert "read-only" not in str(error.value) and not error.value.read_only
    assert sleeps == [] and len(github.calls("POST")) == 1  # no wait that cannot succeed


def artifact(tmp_path, report: str = "report", **build) -> Path:
    """A train run's report artifact folder, as the pr-comment job downloads it."""
    folder = tmp_path / "artifact"
    folder.mkdir(exist_ok=True)
    (folder / "build.json").write_text(json.dumps({"head_sha": SHA} | build))
    (folder / "report.md").write_text(report)
    return folder


def test_an_artifact_for_another_commit_is_refused(github, tmp_path):
    folder = artifact(tmp_path, head_sha="b" * 40, pr_number=7)
    with pytest.raises(CommentError, match=r"describes commit b{40}, not the workflow") as caught:
        upsert_from_artifact(client(github), folder, SHA, "train")
    assert caught.value.code == 2 and not github.requests


def test_an_oversized_artifact_report_is_cut_with_a_note(github, tmp_path):
    github.add_pull(7, SHA)
    folder = artifact(tmp_path, "x" * (REPORT_LIMIT + 10), pr_number=7)
    number, result = upsert_from_artifact(client(github), folder, SHA, "train")
    body = github.comments_on(7)[0]["body"]
    assert (number, result.action) == (7, "created")
    assert body.endswith(TRUNCATED) and body.count("x") == REPORT_LIMIT


def test_an_artifact_without_a_pr_is_commented_on_its_commits_pr_or_nowhere(github, tmp_path):
    assert upsert_from_artifact(client(github), artifact(tmp_path), SHA, "train") is None
    github.add_pull(8, SHA)
    number, _ = upsert_from_artifact(client(github), artifact(tmp_path), SHA, "train")
    assert number == 8 and len(github.comments_on(8)) == 1


def test_an_artifact_naming_a_pr_its_commit_is_not_part_of_is_refused(github, tmp_path):
    github.add_pull(7, "c" * 40)  # PR 7 never had commit SHA
    with pytest.raises(CommentError, match="names another PR; refusing") as caught:
        upsert_from_artifact(client(github), artifact(tmp_path, pr_number=7), SHA, "train")
    assert caught.value.code == 2 and not github.calls("POST")


@pytest.mark.parametrize(
    ("status", "explained"),
    [(502, "GitHub kept failing or rate-limiting after retries"), (410, "GitHub API error")],
)
def test_github_failures_while_checking_the_pr_are_explained(github, tmp_path, status, explained):
    github.add_pull(7, SHA)
    github.failures.extend([(status, {}, {"message": "no"})] * 5)
    with pytest.raises(CommentError, match=explained) as caught:
        upsert_from_artifact(client(github), artifact(tmp_path, pr_number=7), SHA, "train")
    assert caught.value.status == status


def test_a_create_refused_outright_is_not_retried(github):
    github.add_pull(7, SHA)
    github.failures_after["POST"] = (422, {}, {"message": "Validation Failed"})
    with pytest.raises(CommentError, match="rejected the comment"):
        upsert(client(github), 7, "report", "train")
    assert [r.method for r in github.requests] == ["GET", "POST"]

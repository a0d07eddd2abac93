"""One sticky comment per pull request and report kind, updated in place on every push.

The comment is found by a hidden HTML marker; it is edited (PATCH) when found and created (POST)
otherwise, never deleted and re-posted, so the PR keeps one comment whose history GitHub shows.
Standard library only: this runs in the privileged ``workflow_run`` job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ci.build_info import BuildInfo
from ci.github import GitHubClient, GitHubError
from machine_learning.failures import EXIT_BAD_INPUT, EXIT_FAILED
from machine_learning.records import RecordError, read_bytes

BODY_LIMIT = 65_536
TRUNCATED = "\n\n_(cut to fit GitHub's comment limit; the full report is in the job summary)_\n"
REPORT_LIMIT = BODY_LIMIT - 64 - len(TRUNCATED)  # room for the marker and the note


class CommentError(RuntimeError):
    """The comment could not be posted; the message says why and what to do."""

    def __init__(self, message: str, code: int = EXIT_FAILED, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Upserted:
    action: str  # "created" or "updated"
    comment_id: int
    url: str


def marker(kind: str) -> str:
    return f"<!-- pokemon-battle-mlops:{kind} -->"


def find_pull_request(github: GitHubClient, sha: str) -> int:
    """The open PR whose head is ``sha`` (the PR the workflow ran for)."""
    pulls = github.pulls_for_commit(sha)
    heads = [p for p in pulls if p.get("head", {}).get("sha") == sha and p.get("state") == "open"]
    chosen = heads or [p for p in pulls if p.get("state") == "open"]
    if not chosen:
        raise CommentError(f"no open pull request has commit {sha[:12]}; nothing to comment on")
    return int(chosen[0]["number"])


def upsert(github: GitHubClient, pr: int, body: str, kind: str) -> Upserted:
    """Create or update the PR's comment of this kind."""
    tag = marker(kind)
    text = f"{tag}\n{body}"
    if len(text) > BODY_LIMIT:
        raise CommentError(
            f"the comment is {len(text):,} characters; GitHub accepts "
            f"{BODY_LIMIT:,}: render the report with its size limit"
        )
    try:
        existing = next(
            (c for c in github.issue_comments(pr) if tag in (c.get("body") or "")), None
        )
        if existing:
            result, action = github.update_comment(existing["id"], text), "updated"
        else:
            result, action = github.create_comment(pr, text), "created"
    except GitHubError as error:
        raise CommentError(explain(error, pr), status=error.status) from None
    return Upserted(action, int(result["id"]), result.get("html_url", ""))


def explain(error: GitHubError, pr: int) -> str:
    """What a failed call means for the user."""
    if error.status == 403:
        return (
            f"GitHub refused to comment on PR #{pr} (403): the token is read-only, as it "
            "is for pull requests from forks; the report stays in the job summary and the "
            "pr-comment workflow posts it ({error})"
        ).replace("{error}", str(error))
    if error.status == 404:
        return f"PR #{pr} or the repository was not found (404): check --pr and --repo ({error})"
    if error.status == 422:
        return f"GitHub rejected the comment (422), e.g. too long or malformed ({error})"
    if error.status == 429 or error.status >= 500:
        return f"GitHub kept failing or rate-limiting after retries ({error}); rerun the job"
    return f"GitHub API error ({error})"


def read_artifact(directory: Path, head_sha: str) -> tuple[int | None, str]:
    """The PR number and report body from a train run's artifact, which is untrusted data.

    A fork's run wrote it, so both files are read as regular files only (no symlinks, FIFOs
    or devices), boundedly, and checked: ``build.json`` through its record (the head commit
    must be the one the trusted ``workflow_run`` event names), ``report.md`` cut to the comment
    limit (with a note) and decoded leniently.
    """
    try:
        info = BuildInfo.read(directory / "build.json")
        raw = read_bytes(directory / "report.md", REPORT_LIMIT, cut=True)
    except RecordError as error:
        raise CommentError(f"the report artifact is refused: {error}", EXIT_BAD_INPUT) from None
    if info.head_sha != head_sha:
        raise CommentError(
            f"the artifact describes commit {info.head_sha}, not the workflow run's head "
            f"{head_sha}: refusing it",
            EXIT_BAD_INPUT,
        )
    body = raw.decode("utf-8", errors="replace")
    if len(raw) > REPORT_LIMIT or len(body) > REPORT_LIMIT:
        body = body[:REPORT_LIMIT] + TRUNCATED
    return info.pr_number, body


def upsert_from_artifact(
    github: GitHubClient, directory: Path, head_sha: str, kind: str
) -> tuple[int, Upserted] | None:
    """Comment the artifact's report on its PR after checking the PR's head is ``head_sha``.

    Returns None when the commit belongs to no open PR (a push to a branch without one).
    """
    number, body = read_artifact(directory, head_sha)
    try:
        if number is None:
            try:
                number = find_pull_request(github, head_sha)
            except CommentError:
                return None
        actual = github.pull(number).get("head", {}).get("sha")
    except GitHubError as error:
        raise CommentError(explain(error, number or 0), status=error.status) from None
    if actual != head_sha:
        raise CommentError(
            f"PR #{number}'s head is {str(actual)[:12]}, not the workflow run's "
            f"head {head_sha[:12]}: refusing to comment"
        )
    return number, upsert(github, number, body, kind)

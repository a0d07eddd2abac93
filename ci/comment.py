"""One sticky comment per pull request and report kind, updated in place on every push.

The comment is found by a hidden HTML marker; it is edited (PATCH) when found and created (POST)
otherwise, never deleted and re-posted, so the PR keeps one comment whose history GitHub shows.
Standard library only: this runs in the privileged ``workflow_run`` job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ci.github import GitHubClient, GitHubError
from machine_learning.contract.build_info import BuildInfo
from machine_learning.contract.failures import BadInput, Refused
from machine_learning.contract.records import RecordError, read_bytes

BODY_LIMIT = 65_536
TRUNCATED = "\n\n_(cut to fit GitHub's comment limit; the full report is in the job summary)_\n"
REPORT_LIMIT = BODY_LIMIT - 64 - len(TRUNCATED)  # room for the marker and the note
ACTIONS_BOT = "github-actions[bot]"  # who GITHUB_TOKEN writes as
CREATE_ATTEMPTS = 3
MENTION = re.compile(r"@(?=[A-Za-z0-9])")  # a zero-width space after @ notifies nobody


class CommentError(Refused):
    """The comment could not be posted (GitHub refused, or no PR to post on); the message says
    why and what to do."""

    def __init__(self, message: str, status: int = 0, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.rate_limited = rate_limited

    @property
    def read_only(self) -> bool:
        """GitHub refused the token itself (a fork's read-only token), not a rate limit: the
        one refusal ``--read-only-ok`` may forgive."""
        return self.status == 403 and not self.rate_limited


class ArtifactRefused(BadInput, CommentError):
    """The downloaded report artifact is not one this job may post (exit 2): malformed, or
    about another commit or PR."""


class Superseded(RuntimeError):
    """The PR's head moved on before this comment job ran: nothing to post, not a failure.

    Outside the failure hierarchy: ``ci comment`` answers it with a notice and exit 0, so it
    never leaves the command."""


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


def upsert(
    github: GitHubClient, pr: int, body: str, kind: str, author: str = ACTIONS_BOT
) -> Upserted:
    """Create or update the PR's comment of this kind, written by ``author``.

    Only ``author``'s comments that start with the marker count: a person quoting the marker
    is never overwritten. Creating is never blindly retried: after a failed create the
    comments are listed again and one that was in fact created is adopted. Extra comments of
    ours (left by an earlier failure) are deleted, so the PR keeps one.
    """
    tag = marker(kind)
    text = f"{tag}\n{neutralise(body)}"
    if len(text) > BODY_LIMIT:
        raise CommentError(
            f"the comment is {len(text):,} characters; GitHub accepts "
            f"{BODY_LIMIT:,}: render the report with its size limit"
        )
    try:
        mine = _ours(github, pr, tag, author)
        if not mine:
            return _create(github, pr, text, tag, author)
        result = github.update_comment(mine[0]["id"], text)
        for extra in mine[1:]:
            github.delete_comment(extra["id"])
    except GitHubError as error:
        raise refused(error, pr) from None
    healed = f" ({len(mine) - 1} duplicate(s) of ours deleted)" if len(mine) > 1 else ""
    return _upserted(f"updated{healed}", result)


def neutralise(body: str) -> str:
    """Untrusted text made inert: no HTML comment can pose as a marker, no @-mention notifies."""
    return MENTION.sub("@\u200b", body.replace("<!--", "&lt;!--"))


def _ours(github: GitHubClient, pr: int, tag: str, author: str) -> list[dict]:
    return [
        comment
        for comment in github.issue_comments(pr)
        if (comment.get("user") or {}).get("login") == author
        and (comment.get("body") or "").startswith(tag)
    ]


def _upserted(action: str, comment: dict) -> Upserted:
    return Upserted(action, int(comment["id"]), comment.get("html_url", ""))


def _create(github: GitHubClient, pr: int, text: str, tag: str, author: str) -> Upserted:
    """POST once per attempt; after a failure that may have been applied, look before retrying."""
    for attempt in range(1, CREATE_ATTEMPTS):
        try:
            return _upserted("created", github.create_comment(pr, text))
        except GitHubError as error:
            if not error.retryable:
                raise
        github.sleep(float(attempt))
        mine = _ours(github, pr, tag, author)
        if mine:  # the failed POST was applied after all
            return _upserted("created", github.update_comment(mine[0]["id"], text))
    return _upserted("created", github.create_comment(pr, text))  # the last try's error stands


def refused(error: GitHubError, pr: int) -> CommentError:
    """A failed call as the comment's failure (exit 1), explained."""
    return CommentError(explain(error, pr), status=error.status, rate_limited=error.rate_limited)


def explain(error: GitHubError, pr: int) -> str:
    """What a failed call means for the user."""
    if error.rate_limited:
        return (
            f"GitHub rate-limited the comment on PR #{pr} ({error.status}) for longer than "
            f"this step waits: retry after {error.retry_time} (rerun the job then); the "
            f"report stays in the job summary ({error})"
        )
    if error.status == 403:
        return (
            f"GitHub refused to comment on PR #{pr} (403): the token is read-only (as for "
            "pull requests from forks) or lacks pull-requests: write; the report stays in the "
            f"job summary ({error})"
        )
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
        raise ArtifactRefused(f"the report artifact is refused: {error}") from None
    if info.head_sha != head_sha:
        raise ArtifactRefused(
            f"the artifact describes commit {info.head_sha}, not the workflow run's head "
            f"{head_sha}: refusing it"
        )
    body = raw.decode("utf-8", errors="replace")
    if len(raw) > REPORT_LIMIT or len(body) > REPORT_LIMIT:
        body = body[:REPORT_LIMIT] + TRUNCATED
    return info.pr_number, body


def upsert_from_artifact(
    github: GitHubClient, directory: Path, head_sha: str, kind: str, author: str = ACTIONS_BOT
) -> tuple[int, Upserted] | None:
    """Comment the artifact's report on its PR after checking the PR's head is ``head_sha``.

    Returns None when the commit belongs to no open PR (a push to a branch without one);
    raises Superseded when the PR has moved on to another head since.
    """
    number, body = read_artifact(directory, head_sha)
    try:
        if number is None:
            try:
                number = find_pull_request(github, head_sha)
            except CommentError:
                return None
        actual = github.pull(number).get("head", {}).get("sha")
        if actual != head_sha:
            owners = {int(p["number"]) for p in github.pulls_for_commit(head_sha)}
    except GitHubError as error:
        raise refused(error, number or 0) from None
    if actual != head_sha and number in owners:
        raise Superseded(
            f"PR #{number} has moved on to {str(actual)[:12]} since this run of "
            f"{head_sha[:12]}: superseded, its own run will comment"
        )
    if actual != head_sha:
        raise ArtifactRefused(
            f"PR #{number}'s head is {str(actual)[:12]} and commit {head_sha[:12]} is not "
            "part of it: the artifact names another PR; refusing to comment"
        )
    return number, upsert(github, number, body, kind, author)

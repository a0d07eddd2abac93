"""One sticky comment per pull request and report kind, updated in place on every push.

The comment is found by a hidden HTML marker; it is edited (PATCH) when found and created (POST)
otherwise, never deleted and re-posted, so the PR keeps one comment whose history GitHub shows.
Standard library only: this runs in the privileged ``workflow_run`` job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ci.github import GitHubClient, GitHubError

BODY_LIMIT = 65_536
TRUNCATED = "\n\n_(cut to fit GitHub's comment limit; the full report is in the job summary)_\n"


class CommentError(RuntimeError):
    """The comment could not be posted; the message says why and what to do."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
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
        raise CommentError(explain(error, pr), error.status) from None
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

    A fork's run wrote it, so every field is checked: the head commit must be the one the
    trusted ``workflow_run`` event names, the PR number an integer, the body at most the
    comment limit (longer bodies are cut, with a note).
    """
    try:
        info = json.loads((directory / "build.json").read_text(encoding="utf-8"))
        body = (directory / "report.md").read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        raise CommentError(f"the report artifact is incomplete or unreadable: {error}") from None
    if not isinstance(info, dict) or info.get("head_sha") != head_sha:
        raise CommentError(
            f"the artifact describes commit {str(info.get('head_sha'))[:40]!r}, "
            f"not the workflow run's head {head_sha}: refusing it"
        )
    number = info.get("pr_number")
    if number is not None and (
        not isinstance(number, int) or isinstance(number, bool) or number <= 0
    ):
        raise CommentError(f"the artifact's PR number {number!r} is not a positive integer")
    room = BODY_LIMIT - len(marker("x")) - 64 - len(TRUNCATED)
    if len(body) > room:
        body = body[:room] + TRUNCATED
    return number, body


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
        raise CommentError(explain(error, number or 0), error.status) from None
    if actual != head_sha:
        raise CommentError(
            f"PR #{number}'s head is {str(actual)[:12]}, not the workflow run's "
            f"head {head_sha[:12]}: refusing to comment"
        )
    return number, upsert(github, number, body, kind)

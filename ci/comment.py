"""One sticky comment per pull request and report kind, updated in place on every push.

The comment is found by a hidden HTML marker; it is edited (PATCH) when found and created (POST)
otherwise, never deleted and re-posted, so the PR keeps one comment whose history GitHub shows.
Standard library only: this runs in the privileged ``workflow_run`` job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci.github import GitHubClient, GitHubError

BODY_LIMIT = 65_536


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

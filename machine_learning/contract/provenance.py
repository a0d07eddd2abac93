"""Where a run comes from: commit, branch, trigger, pull request and workflow run.

Training tags every run with it (the tag names are in ``mlflow_names``), the CI toolkit
searches runs by it and writes it to build.json for the comment job. Read from GitHub Actions'
environment (and its event payload, through a validating record) or, on a laptop, from the
local git checkout.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from machine_learning.contract.mlflow_names import (
    MLFLOW_GIT_COMMIT,
    TAG_BRANCH,
    TAG_EVENT,
    TAG_GIT_SHA,
    TAG_PR_NUMBER,
    TAG_RUN_URL,
)
from machine_learning.contract.records import JsonRecord, read_json

EVENT_MAX_BYTES = 25 << 20  # GitHub caps webhook payloads at 25 MB


@dataclass(frozen=True)
class Repository(JsonRecord):
    full_name: str = ""
    default_branch: str = ""


@dataclass(frozen=True)
class Head(JsonRecord):
    sha: str = ""
    repo: Repository | None = None


@dataclass(frozen=True)
class PullRequest(JsonRecord):
    number: int
    head: Head = Head()

    def __post_init__(self) -> None:
        if self.number <= 0:
            raise ValueError(f"pull_request.number must be positive, got {self.number}")


@dataclass(frozen=True)
class EventPayload(JsonRecord):
    """The few fields of ``$GITHUB_EVENT_PATH`` we use; the rest of the payload is ignored."""

    pull_request: PullRequest | None = None
    repository: Repository | None = None

    @property
    def default_branch(self) -> str:
        return self.repository.default_branch if self.repository else ""


@dataclass(frozen=True)
class BuildContext:
    """Where a run comes from: commit, branch, trigger, pull request and workflow run."""

    git_sha: str = ""
    branch: str = ""
    event: str = "local"
    pr_number: int | None = None
    run_url: str = ""

    def as_tags(self) -> dict[str, str]:
        """The ``ci.*`` run tags (empty values left out) plus MLflow's own commit tag."""
        tags = {
            TAG_GIT_SHA: self.git_sha,
            TAG_BRANCH: self.branch,
            TAG_EVENT: self.event,
            TAG_PR_NUMBER: "" if self.pr_number is None else str(self.pr_number),
            TAG_RUN_URL: self.run_url,
        }
        if self.git_sha:
            tags[MLFLOW_GIT_COMMIT] = self.git_sha
        return {key: value for key, value in tags.items() if value}


def build_context(env: Mapping[str, str], cwd: Path | None = None) -> BuildContext:
    """The context from GitHub Actions variables, else from the local git checkout.

    Raises RecordError when Actions names an event payload that is not a valid one.
    """
    if env.get("GITHUB_ACTIONS") != "true":
        return BuildContext(
            git_sha=_git(cwd, "rev-parse", "HEAD"),
            branch=_git(cwd, "rev-parse", "--abbrev-ref", "HEAD"),
        )
    run_url = ""
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
    pull = event_payload(env).pull_request
    return BuildContext(
        # For a pull request, its head commit rather than the merge commit Actions checks out.
        git_sha=(pull.head.sha if pull else "") or env.get("GITHUB_SHA", ""),
        branch=env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME", ""),
        event=env.get("GITHUB_EVENT_NAME", ""),
        pr_number=pull.number if pull else _number_from_ref(env.get("GITHUB_REF", "")),
        run_url=run_url,
    )


def event_payload(env: Mapping[str, str]) -> EventPayload:
    """The event payload Actions wrote, validated; empty when there is none."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return EventPayload()
    return EventPayload.from_dict(read_json(Path(path), EVENT_MAX_BYTES), f"event payload {path}")


def default_branch_refusal(env: Mapping[str, str]) -> str | None:
    """Why this Actions run is not on the repository's default branch, or None when it is.

    It is when ``GITHUB_REF`` is exactly ``refs/heads/<repository.default_branch>`` of the event
    payload, compared case-sensitively: GitHub's expressions compare strings ignoring case and
    git allows a branch `Main` beside `main`, so a workflow's own test would let `Main` promote.
    A payload that names no default branch proves nothing and is refused. Raises RecordError
    when the payload is malformed.
    """
    default = event_payload(env).default_branch
    ref = env.get("GITHUB_REF", "")
    if not default:
        return (
            "promotion is for the default branch only, and this run's event payload "
            f"({env.get('GITHUB_EVENT_PATH') or 'none'}) names no repository.default_branch"
        )
    if ref == f"refs/heads/{default}":
        return None
    shown = ref.removeprefix("refs/heads/")
    return f"promotion is for the default branch `{default}` only; this run is on `{shown}`"


def is_default_branch(env: Mapping[str, str]) -> bool:
    """Whether this Actions run is on the default branch (see default_branch_refusal)."""
    return default_branch_refusal(env) is None


def _number_from_ref(ref: str) -> int | None:
    """``refs/pull/N/merge`` → N (a pull_request run without a payload)."""
    match = re.fullmatch(r"refs/pull/(\d+)/merge", ref)
    return int(match.group(1)) if match else None


def _git(cwd: Path | None, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""

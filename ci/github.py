"""What GitHub Actions tells a job about itself, read from the environment it sets.

Kept free of heavy imports: the comment step runs with a minimal install.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


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
            "ci.git_sha": self.git_sha,
            "ci.branch": self.branch,
            "ci.event": self.event,
            "ci.pr_number": "" if self.pr_number is None else str(self.pr_number),
            "ci.run_url": self.run_url,
        }
        if self.git_sha:
            tags["mlflow.source.git.commit"] = self.git_sha
        return {key: value for key, value in tags.items() if value}


def build_context(env: Mapping[str, str], cwd: Path | None = None) -> BuildContext:
    """The context from GitHub Actions variables, else from the local git checkout."""
    if env.get("GITHUB_ACTIONS") != "true":
        return BuildContext(
            git_sha=_git(cwd, "rev-parse", "HEAD"),
            branch=_git(cwd, "rev-parse", "--abbrev-ref", "HEAD"),
        )
    run_url = ""
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
    return BuildContext(
        git_sha=_head_sha(env),
        branch=env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME", ""),
        event=env.get("GITHUB_EVENT_NAME", ""),
        pr_number=pull_request_number(env),
        run_url=run_url,
    )


def _event(env: Mapping[str, str]) -> dict:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _head_sha(env: Mapping[str, str]) -> str:
    """The commit that was pushed; for a pull request, its head rather than the merge commit."""
    head = _event(env).get("pull_request", {}).get("head", {}).get("sha")
    return head or env.get("GITHUB_SHA", "")


def pull_request_number(env: Mapping[str, str]) -> int | None:
    """The PR number of a pull_request event (payload, else ``refs/pull/N/merge``)."""
    number = _event(env).get("pull_request", {}).get("number")
    if isinstance(number, int):
        return number
    match = re.fullmatch(r"refs/pull/(\d+)/merge", env.get("GITHUB_REF", ""))
    return int(match.group(1)) if match else None


def _git(cwd: Path | None, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""

"""The simulated runs' shared story: a runner, a loopback GitHub, and the pushes they build on.

Each test asks for the earlier runs it depends on (``story.merged()``, ``story.second_push()``);
each of them runs once per module and is remembered, so any test runs alone (``-k``, ``--lf``)
or in any order, and the whole module still runs every job once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ci.comment import marker
from tests.github_server import FakeGitHub
from tests.workflows.harness import REPO_ROOT, Event, JobResult, Runner

TRAIN = REPO_ROOT / ".github/workflows/train.yml"
COMMENT = REPO_ROOT / ".github/workflows/pr-comment.yml"
BRANCH, PR = "feature/type-chart", 5
SHAS = {
    name: f"{i:x}" * 40
    for i, name in enumerate(
        ["first", "second", "merge", "regression", "fork", "dispatch"], start=1
    )
}


class Story:
    """A pretend repository on GitHub with its runner; earlier runs on demand, each once."""

    def __init__(self, home: Path, venv: Path) -> None:
        self.github = FakeGitHub().start()
        self.runner = Runner(
            home, self.github.url, self.github.token, self.github.repository, venv=venv
        )
        self.github.add_pull(PR, SHAS["first"])
        self._done: dict[str, JobResult] = {}

    def close(self) -> None:
        self.runner.cleanup()
        self.github.stop()

    def once(self, name: str, job: Callable[[], JobResult]) -> JobResult:
        if name not in self._done:
            self._done[name] = job()
        return self._done[name]

    def first_push(self) -> JobResult:
        """The PR's first push (run 101): bootstraps the branch's state."""
        return self.once("first", lambda: self.push(f"refs/heads/{BRANCH}", SHAS["first"], 101))

    def first_comment(self) -> JobResult:
        """The comment job of the first push: creates the PR's sticky comment."""
        self.first_push()
        return self.once("first comment", lambda: self.comment_on(101, SHAS["first"]))

    def second_push(self) -> JobResult:
        """The PR's second push (run 102), after the first; the PR's head moves to it."""
        self.first_push()

        def run() -> JobResult:
            self.github.push(PR, SHAS["second"])
            return self.push(f"refs/heads/{BRANCH}", SHAS["second"], 102)

        return self.once("second", run)

    def merged(self) -> JobResult:
        """The merge to main (run 103): promotes the first champion, v1."""
        return self.once("merge", lambda: self.push("refs/heads/main", SHAS["merge"], 103))

    def promoted_by_dispatch(self) -> JobResult:
        """After the merge, a dispatch on main with ``promote: true`` (run 111) trains the
        merge's model again: within noise of v1, so v2 becomes champion and v1
        previous-champion. Its ``n-trials`` reaches the run's params."""
        self.merged()
        inputs = {"model": "xgboost", "n-trials": 3, "promote": True}
        event = Event("workflow_dispatch", "refs/heads/main", SHAS["dispatch"], 111, inputs=inputs)
        return self.once("dispatch", lambda: self.runner.run(TRAIN, "train", event))

    def push(self, ref: str, sha: str, run_id: int) -> JobResult:
        payload = {"ref": ref, "after": sha, "head_commit": {"id": sha}}
        return self.runner.run(TRAIN, "train", Event("push", ref, sha, run_id, payload))

    def comment_on(self, train_run_id: int, sha: str, event: str = "push") -> JobResult:
        """pr-comment.yml for a finished train run (run id + 1000)."""
        payload = {
            "workflow_run": {
                "id": train_run_id,
                "head_sha": sha,
                "event": event,
                "conclusion": "completed",
            }
        }
        run = Event("workflow_run", "refs/heads/main", "0" * 40, train_run_id + 1000, payload)
        return self.runner.run(COMMENT, "comment", run)

    def artifact(self, run_id: int, name: str = "gate.json") -> dict:
        folder = self.runner.home / "artifacts" / str(run_id) / "train-report"
        return json.loads((folder / name).read_text())

    def our_comments(self, pr: int = PR) -> list[dict]:
        return [c for c in self.github.comments_on(pr) if marker("train") in c["body"]]


def failure_details(result: JobResult) -> str:
    return "\n".join(
        f"--- {s.name}: {s.outcome}\n{s.output[-2000:]}"
        for s in result.steps
        if s.outcome == "failure"
    )

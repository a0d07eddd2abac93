"""The simulated runs' shared story: a runner, a loopback GitHub, and the pushes they build on.

Each test asks for the earlier runs it depends on (``story.merged()``, ``story.second_push()``);
each of them runs once per module and is remembered, so any test runs alone (``-k``, ``--lf``)
or in any order, and the whole module still runs every job once. Every job runs under act
(tests/workflows/act.py).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ci.comment import marker
from tests.github_server import FakeGitHub
from tests.workflows.act import Event, JobResult, Runner, Toolbox

TRAIN, COMMENT = "train.yml", "pr-comment.yml"
BRANCH, PR = "feature/type-chart", 5


class Story:
    """A pretend repository on GitHub with its runner; earlier runs on demand, each once."""

    def __init__(self, toolbox: Toolbox, template: str) -> None:
        self.github = FakeGitHub().start()
        home = Path(tempfile.mkdtemp(prefix="story-", dir=toolbox.root))
        self.runner = Runner(home, self.github, toolbox, template)
        self.shas: dict[str, str] = {}
        self._done: dict[str, JobResult] = {}

    def close(self) -> None:
        try:
            self.runner.cleanup()
        finally:
            self.github.stop()
            shutil.rmtree(self.runner.home, ignore_errors=True)

    def once(self, name: str, job: Callable[[], JobResult]) -> JobResult:
        if name not in self._done:
            self._done[name] = job()
        return self._done[name]

    def first_push(self) -> JobResult:
        """The PR's first push (run 101): bootstraps the branch's state; opens the PR."""

        def run() -> JobResult:
            sha = self.runner.commit(f"refs/heads/{BRANCH}", "first")
            self.github.add_pull(PR, sha)
            return self.push(f"refs/heads/{BRANCH}", 101, "first", sha)

        return self.once("first", run)

    def first_comment(self) -> JobResult:
        """The comment job of the first push: creates the PR's sticky comment."""
        self.first_push()
        return self.once("first comment", lambda: self.comment_on(101, self.shas["first"]))

    def second_push(self) -> JobResult:
        """The PR's second push (run 102), after the first; the PR's head moves to it."""
        self.first_push()

        def run() -> JobResult:
            sha = self.runner.commit(f"refs/heads/{BRANCH}", "second")
            self.github.push(PR, sha)
            return self.push(f"refs/heads/{BRANCH}", 102, "second", sha)

        return self.once("second", run)

    def merged(self) -> JobResult:
        """The merge to main (run 103): promotes the first champion, v1."""
        return self.once("merge", lambda: self.push("refs/heads/main", 103, "merge"))

    def promoted_by_dispatch(self) -> JobResult:
        """After the merge, a dispatch on main with ``promote: true`` (run 111) trains the
        merge's model again: within noise of v1, so v2 becomes champion and v1
        previous-champion. Its ``n-trials`` reaches the run's params."""
        self.merged()
        inputs = {"model": "xgboost", "n-trials": 3, "promote": True}
        event = Event("workflow_dispatch", "refs/heads/main", 111, inputs=inputs)
        return self.once("dispatch", lambda: self.runner.run(TRAIN, "train", event))

    def push(self, ref: str, run_id: int, name: str, sha: str = "") -> JobResult:
        sha = sha or self.runner.commit(ref, name)
        self.shas[name] = sha
        return self.runner.run(TRAIN, "train", Event("push", ref, run_id, sha=sha))

    def comment_on(self, train_run_id: int, sha: str, event: str = "push") -> JobResult:
        """pr-comment.yml for a finished train run (run id + 1000), on the default branch."""
        payload = {
            "workflow_run": {
                "id": train_run_id,
                "head_sha": sha,
                "event": event,
                "conclusion": "completed",
            }
        }
        run = Event("workflow_run", "refs/heads/main", train_run_id + 1000, payload)
        return self.runner.run(COMMENT, "comment", run)

    def report_files(self, run_id: int) -> dict[str, bytes]:
        """The files of a train run's report artifact, by their path in the zip."""
        data = self.github.run_artifacts(run_id)["train-report"]
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def artifact(self, run_id: int, name: str = "gate.json") -> dict:
        return json.loads(self.report_files(run_id)[name])

    def forge_artifact(self, run_id: int, files: dict[str, bytes]) -> None:
        """A report artifact for ``run_id`` with the given files (an attacker's upload)."""
        folder = self.runner.home / "artifacts" / str(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(folder / "train-report.zip", "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)

    def our_comments(self, pr: int = PR) -> list[dict]:
        return [c for c in self.github.comments_on(pr) if marker("train") in c["body"]]


def failure_details(result: JobResult) -> str:
    details = [
        f"--- {s.name}: {s.outcome}\n{s.output[-2000:]}"
        for s in result.steps
        if s.outcome == "failure"
    ]
    return "\n".join(details) or result.log[-3000:]

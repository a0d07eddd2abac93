"""The push → PR comment pipeline end to end on this machine, each stage timed.

    uv run python benchmarks/pipeline.py [--save-comment benchmarks/pr-comment-example.md]

The train workflow's job runs through the workflow harness of the test suite (its own `run:`
steps, the native stack instead of compose, local cache and artifact folders), twice on the
same PR so the second push restores the first one's state; then pr-comment posts to a loopback
GitHub API. Prints each stage of the second push and the comment job. The first job also pays
for creating the harness's virtual environment, so only the second is reported.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.github_server import FakeGitHub
from tests.workflows.harness import REPO_ROOT, Event, Runner

STAGES = {
    "Start the stack": "stack up",
    "Restore MLflow state from the cache": "restore (cache)",
    "Load MLflow state": "restore (load)",
    "Train": "train",
    "Gate": "gate",
    "Report": "report",
    "Snapshot MLflow state": "save (snapshot)",
    "Save MLflow state to the cache": "save (cache)",
    "Stop the stack": "stack down",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save-comment", type=Path, help="write the posted comment here")
    args = parser.parse_args()
    github = FakeGitHub().start()
    home = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    runner = Runner(
        home, github.url, github.token, repository=github.repository, venv=home / "venv"
    )
    train = REPO_ROOT / ".github/workflows/train.yml"
    comment = REPO_ROOT / ".github/workflows/pr-comment.yml"
    try:
        for run_id, sha in ((1, "1" * 40), (2, "2" * 40)):
            github.add_pull(7, sha)
            job = runner.run(
                train,
                "train",
                Event("push", "refs/heads/feature/x", sha, run_id, {"ref": "refs/heads/feature/x"}),
            )
            assert job.conclusion == "success", [(s.name, s.output[-500:]) for s in job.steps]
            payload = {"workflow_run": {"id": run_id, "head_sha": sha, "event": "push"}}
            posted = runner.run(
                comment,
                "comment",
                Event("workflow_run", "refs/heads/main", "0" * 40, 100 + run_id, payload),
            )
            assert posted.conclusion == "success"
        rows = [(STAGES[s.name], s.seconds) for s in job.steps if s.name in STAGES]
        rows.append(("comment (pr-comment job)", sum(s.seconds for s in posted.steps)))
        total = sum(s.seconds for s in job.steps) + rows[-1][1]
        print("second push on a PR, native stack, loopback GitHub; seconds")
        for stage, seconds in rows:
            print(f"{stage:<26} {seconds:6.2f}")
        print(f"{'whole pipeline':<26} {total:6.2f}")
        if args.save_comment:
            body = next(iter(github.comments.values()))["body"]
            args.save_comment.write_text(body, encoding="utf-8")
    finally:
        runner.cleanup()
        github.stop()


if __name__ == "__main__":
    main()

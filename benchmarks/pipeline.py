"""The push → PR comment pipeline end to end on this machine, each stage timed.

    uv run python benchmarks/pipeline.py [--save-comment benchmarks/pr-comment-example.md]

The train workflow's job runs under act, as the test suite runs it (tests/workflows/act.py: the
runner's user, the native stack behind the docker stand-in, act's cache server), twice on the
same PR so the second push restores the first one's state; then pr-comment posts to a loopback
GitHub API. Prints each stage of the second push and the comment job.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.native_stack import DEFAULT_ADMIN_DSN, migrated_template
from tests.workflows.act import Toolbox
from tests.workflows.story import Story

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
    story = Story(Toolbox.prepare(), migrated_template(DEFAULT_ADMIN_DSN))
    try:
        story.first_comment()
        job = story.second_push()
        assert job.conclusion == "success", [(s.name, s.output[-500:]) for s in job.steps]
        posted = story.comment_on(102, story.shas["second"])
        assert posted.conclusion == "success", posted.log[-2000:]
        rows = [(STAGES[s.name], s.seconds) for s in job.steps if s.name in STAGES]
        rows.append(("comment (pr-comment job)", sum(s.seconds for s in posted.steps)))
        total = sum(s.seconds for s in job.steps) + rows[-1][1]
        print("second push on a PR, under act, native stack, loopback GitHub; seconds")
        for stage, seconds in rows:
            print(f"{stage:<26} {seconds:6.2f}")
        print(f"{'whole pipeline':<26} {total:6.2f}")
        if args.save_comment:
            body = next(iter(story.github.comments.values()))["body"]
            args.save_comment.write_text(body, encoding="utf-8")
    finally:
        story.close()


if __name__ == "__main__":
    main()

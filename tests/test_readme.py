"""The README documents every CLI command and the exact test command .ci/run executes."""

import re

import pytest

from ci.cli import build_parser as ci_parser
from machine_learning.cli import build_parser as training_parser
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "build"), [("machine_learning", training_parser), ("ci", ci_parser)]
)
def test_every_command_and_option_is_documented(module, build):
    commands = build()._subparsers._group_actions[0].choices  # argparse has no public API for it
    for name, command in commands.items():
        assert f"python -m {module} {name}" in README
        for action in command._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in README, f"{name} {option} is not in README.md"


def test_ci_runs_the_readme_test_command():
    match = re.search(r"```(?:bash|sh)\n(.*uv run --locked pytest.*)\n```", README)
    assert match, "README.md has no fenced test command"
    command = match.group(1).split("&&")[-1].strip()
    assert command in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")

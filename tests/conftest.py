"""Shared fixtures: every test starts from a clean environment."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOOR_LINES = pytest.StashKey[list[tuple[str, bool]]]()
# Least share of lines the whole suite must run, per package and per module where a miss hurts
# most (what decides, promotes, restores and posts).
COVERAGE_FLOORS = {
    "ci/*": 90.0,
    **dict.fromkeys(
        (
            f"ci/{name}.py"
            for name in ("gate", "verdict", "bootstrap", "comment", "state", "thresholds")
        ),
        95.0,
    ),
}
LEAKY_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking server, credentials or GitHub Actions context leaks in from the caller."""
    for name in list(os.environ):
        if name in LEAKY_VARIABLES or name.startswith("GITHUB_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("CI", raising=False)


def cli_env(**overrides: str) -> dict[str, str]:
    """The current (cleaned) environment plus overrides, for CLI subprocesses."""
    return dict(os.environ) | overrides


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, module: str = "machine_learning"
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <args>`` the way a user does."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def actions_env(
    tmp_path: Path, sha: str, pr: int = 12, head_ref: str = "feature/types", **extra: str
) -> dict[str, str]:
    """A CLI environment as GitHub Actions gives it to a pull_request job of ``pr`` whose head
    is ``sha`` (``extra`` overrides, e.g. GITHUB_SHA: the merge commit)."""
    event = tmp_path / f"event-{sha[:6]}.json"
    event.write_text(json.dumps({"pull_request": {"number": pr, "head": {"sha": sha}}}))
    github = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": sha,
        "GITHUB_HEAD_REF": head_ref,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "owner/repo",
        "GITHUB_RUN_ID": "777",
    }
    return cli_env(**(github | extra))


def load_workflow(path: Path) -> dict:
    """A workflow file as GitHub reads it (YAML 1.1 reads the key ``on`` as true)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


@cache
def stack_backend() -> str:
    from tests.native_stack import choose_backend

    return choose_backend(os.environ)


def pytest_report_header() -> list[str]:
    """Say which stack the integration tests run against."""
    if stack_backend() == "docker":
        return ["stack: docker compose (docker-compose.yml through pytest-docker)"]
    return [
        "stack: native (no Docker engine here: the machine's PostgreSQL + mlflow server "
        "subprocesses, flags read from docker-compose.yml)"
    ]


@pytest.fixture
def github():
    """A loopback GitHub REST API (see tests/github_server.py)."""
    from tests.github_server import FakeGitHub

    fake = FakeGitHub().start()
    yield fake
    fake.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session):
    """After pytest-cov has combined the data (its wrapper runs inside this one): check the
    floors, when the whole suite ran — a selection of tests would miss them by design."""
    result = yield
    plugin = session.config.pluginmanager.getplugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    config = session.config
    selected = ("keyword", "markexpr", "lf", "deselect")  # lf: absent with -p no:cacheprovider
    whole_suite = config.args_source == pytest.Config.ArgsSource.TESTPATHS and not any(
        config.getoption(name, default=None) for name in selected
    )
    if controller is None or not whole_suite or hasattr(config, "workerinput"):
        return result
    lines = []
    for pattern, floor in COVERAGE_FLOORS.items():
        covered = controller.cov.report(include=[str(REPO_ROOT / pattern)], file=io.StringIO())
        missed = covered < floor
        session.testsfailed += missed
        lines.append(
            (f"{'FAILED: ' if missed else ''}{pattern} {covered:.1f}% (floor {floor:.0f}%)", missed)
        )
    config.stash[FLOOR_LINES] = lines
    return result


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """The floors' verdicts, after pytest-cov's table."""
    lines = config.stash.get(FLOOR_LINES, [])
    if lines:
        terminalreporter.write_sep("=", "coverage floors")
    for line, missed in lines:
        terminalreporter.write_line(line, red=missed, bold=missed)

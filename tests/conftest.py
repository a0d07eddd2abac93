"""Shared fixtures: every test starts from a clean environment."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
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
    reporter = config.pluginmanager.getplugin("terminalreporter")
    for pattern, floor in COVERAGE_FLOORS.items():
        covered = controller.cov.report(include=[str(REPO_ROOT / pattern)], file=io.StringIO())
        line = f"coverage of {pattern}: {covered:.1f}% (floor {floor:.0f}%)"
        if covered < floor:
            reporter.write_line(f"ERROR: {line}", red=True, bold=True)
            session.testsfailed += 1
        else:
            reporter.write_line(line)
    return result

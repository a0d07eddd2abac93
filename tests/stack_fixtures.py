"""The stack as fixtures, once per test worker: PostgreSQL + a real ``mlflow server``.

With a Docker engine (GitHub's runners) it is docker-compose.yml itself, through pytest-docker;
without one (this project's CI machine) the same services start natively, with the flags read
from the compose file. Either way the database and volumes are removed afterwards. A plugin of
the root conftest, so the integration tests and the simulated runs (a team's server) share one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci.stack import COMPOSE_FILE
from tests.conftest import environment, stack_backend
from tests.docker_stack import AUTH_COMPOSE_FILE, ComposeStack
from tests.native_stack import NativeStack


@dataclass(frozen=True)
class PytestDockerCompose:
    """pytest-docker's compose executor, given the stack's environment for each command."""

    files: tuple[Path, ...]
    project: str

    def execute(self, subcommand: str, env: dict[str, str], success_codes=(0,)) -> bytes:
        from pytest_docker.plugin import DockerComposeExecutor

        executor = DockerComposeExecutor(
            "docker compose", [str(f) for f in self.files], self.project
        )
        with environment(dict(os.environ) | env):
            return executor.execute(subcommand, success_codes=success_codes)


def _running_stack(workdir: Path, name: str, env: dict[str, str], files: tuple[Path, ...]):
    if stack_backend() == "docker":
        env = env | {"POSTGRES_PASSWORD": secrets.token_urlsafe(16)}
        project = f"pbtest{os.getpid()}{name}"
        stack = ComposeStack(
            project, env=env, compose_files=files, executor=PytestDockerCompose(files, project)
        )
    else:
        stack = NativeStack(workdir, env=env, compose_files=files)
    try:
        yield stack.up()
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack | ComposeStack]:
    yield from _running_stack(tmp_path_factory.mktemp("stack"), "main", {}, (COMPOSE_FILE,))


@pytest.fixture(scope="session")
def admin_password() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory: pytest.TempPathFactory, admin_password: str):
    """The opt-in basic-auth variant (docker-compose.auth.yml), with secrets made per test run."""
    env = {
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
    }
    files = (COMPOSE_FILE, AUTH_COMPOSE_FILE)
    yield from _running_stack(tmp_path_factory.mktemp("auth-stack"), "auth", env, files)

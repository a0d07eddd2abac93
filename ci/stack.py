"""The compose stack as production runs it: ``docker compose`` with the project's files.

``ci stack-up``/``predictor-up``/``stack-down`` and the state commands drive docker-compose.yml
through :class:`ComposeCLI`; the test suite drives the same stack through pytest-docker (the
executor of :class:`DockerStack`; tests/docker_stack.py adds what only tests ask of it), or,
without a Docker engine, starts its services natively (tests/native_stack.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine_learning.contract.failures import Failure

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
COMPOSE_PROJECT = "pokemon-battle-mlops"  # the compose file's `name:`
SERVE_PROFILE = "serve"  # the compose profile of the predictor service
# Where compose publishes the two services on the host: the compose file's own variables, so a
# runner whose 5000 or 8000 is taken (or two stacks on one machine) can move them.
MLFLOW_PORT, PREDICTOR_PORT = ("MLFLOW_PORT", 5000), ("PREDICTOR_PORT", 8000)
LOG_TAIL_LINES = 30
# The compose stack's secrets, written to .env by write_env_file (see .env.example).
STACK_PASSWORDS = ("POSTGRES_PASSWORD", "INFERENCE_LOG_PASSWORD", "OUTCOMES_TOKEN")


class StackError(Failure):
    """A service of the stack failed to start; the message names it and shows its log."""


def published_port(env: Mapping[str, str], variable: tuple[str, int]) -> int:
    """The host port compose publishes a service on: ``$NAME`` when set, else the default."""
    name, default = variable
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 65_535:
        raise StackError(f"{name}={raw!r} is not a port (1 to 65,535)")
    return int(raw)


@dataclass
class DockerStack:
    """The compose stack itself: up (naming a failed service with its logs), the predictor,
    down. The tests drive it through pytest-docker's compose executor."""

    project: str
    env: dict[str, str] = field(default_factory=dict)
    compose_files: tuple[Path, ...] = (COMPOSE_FILE,)
    port: int = MLFLOW_PORT[1]
    executor: Any = None  # runs compose subcommands; default ComposeCLI
    predictor_port: int = PREDICTOR_PORT[1]

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> DockerStack:
        """``up --build --wait``; on failure, name the failed services and show their logs."""
        try:
            self._compose("up --build --wait --wait-timeout 300")
        except Exception as exc:  # ComposeFailed, or pytest-docker's bare Exception
            raise StackError(self._failure_report(exc)) from exc
        return self

    def start_predictor(self) -> None:
        """The predictor service (profile ``serve``): serves the champion from this stack."""
        try:
            self._compose(
                f"--profile {SERVE_PROFILE} up --build --wait --wait-timeout 300 predictor"
            )
        except Exception as exc:  # as for up(): name the failed service, show its logs
            raise StackError(self._failure_report(exc)) from exc

    def down(self) -> None:
        """Every service, the profile's too, and the volumes."""
        try:
            self._compose(f"--profile {SERVE_PROFILE} down -v")
        except ComposeFailed as error:
            raise StackError(str(error)) from None

    def _failure_report(self, error: Exception) -> str:
        """The failed services and their logs; the error itself when Docker cannot say more."""
        import json

        try:
            lines = self._compose("ps -a --format json", success_codes=(0, 1)).decode()
        except Exception:  # no docker at all, or no engine: the report would fail the same way
            return f"docker compose up failed: {error}"
        lines = lines.splitlines()
        failed = []
        for container in (json.loads(line) for line in lines if line.startswith("{")):
            healthy = container.get("Health") in ("", "healthy") and container["State"] == "running"
            completed = container["State"] == "exited" and container.get("ExitCode") == 0
            if not (healthy or completed):
                failed.append(container["Service"])
        if not failed:  # Docker could not name one: its own error is all there is
            return f"docker compose: a service failed to start: {error}"
        report = [f"docker compose: {', '.join(failed)} failed to start"]
        report += [f"--- {name}, last log lines:\n{self._logs(name)}" for name in failed]
        return "\n".join(report)

    def _logs(self, service: str) -> str:
        output = self._compose(
            f"logs --no-color --tail {LOG_TAIL_LINES} {service}", success_codes=(0, 1)
        )
        return output.decode(errors="replace")

    def _compose(self, subcommand: str, success_codes: tuple[int, ...] = (0,)) -> bytes:
        executor = self.executor or ComposeCLI(self.compose_files, self.project)
        ports = {MLFLOW_PORT[0]: str(self.port), PREDICTOR_PORT[0]: str(self.predictor_port)}
        return executor.execute(subcommand, self.env | ports, success_codes)


class ComposeFailed(RuntimeError):
    """A ``docker compose`` command exited with an unexpected code.

    Outside the failure hierarchy: DockerStack turns it into StackError, so it never leaves
    a command."""


@dataclass(frozen=True)
class ComposeCLI:
    """``docker compose -f … -p … <subcommand>`` with the stack's environment, no shell.

    The workflow's own runner; the test suite drives the same stack through pytest-docker.
    """

    files: tuple[Path, ...]
    project: str

    def command(self, args: Sequence[str]) -> list[str]:
        """The argv of ``docker compose`` with this project's files and name."""
        files = [arg for f in self.files for arg in ("-f", str(f))]
        return ["docker", "compose", *files, "-p", self.project, *args]

    def execute(
        self, subcommand: str, env: Mapping[str, str], success_codes: tuple[int, ...] = (0,)
    ) -> bytes:
        import shlex

        command = self.command(shlex.split(subcommand))
        try:
            done = subprocess.run(
                command,
                env=dict(os.environ) | dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        except OSError as error:
            raise ComposeFailed(f"cannot run docker: {error.strerror}") from None
        if done.returncode not in success_codes:
            output = done.stdout.decode(errors="replace")
            raise ComposeFailed(
                f"docker compose {subcommand} exited {done.returncode}: {_reason(output)}"
            )
        return done.stdout


def _reason(output: str) -> str:
    """One line for why a compose command failed: Docker's error line, else its last line."""
    if "unknown shorthand flag: 'f'" in output:  # `docker` without the compose plugin
        return "this docker has no compose plugin (install docker-compose-plugin)"
    lines = [line.strip() for line in output.splitlines() if line.strip()] or ["no output"]
    return next((line for line in lines if "error" in line.lower()), lines[-1])


def write_env_file(path: Path) -> None:
    """Give the compose stack fresh secrets in ``.env``: the PostgreSQL superuser's password,
    the inference log's role's, the predictor's outcomes token (each one already there is
    kept; a missing one is added).

    The masks are flushed before anything else can print: Actions masks a value only from the
    moment it reads ``::add-mask::``, and stderr is not buffered like stdout is.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.split("=", 1)[0].strip() for line in text.splitlines() if "=" in line}
    added = []
    for name in STACK_PASSWORDS:
        if name not in present:
            password = secrets.token_urlsafe(24)
            print(f"::add-mask::{password}", flush=True)
            added.append(f"{name}={password}\n")
    if added:
        separator = "" if not text or text.endswith("\n") else "\n"
        path.write_text(text + separator + "".join(added), encoding="utf-8")

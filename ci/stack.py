"""The MLflow stack without Docker: the compose file's services started as native processes.

Where no Docker engine runs (this project's own CI machine, a laptop without Docker), tests and
benchmarks still need "the stack". The mlflow server's flags and environment are read from
``docker-compose.yml`` so the native server runs exactly what the compose file deploys; only the
machine-specific ones (bind address, port, database URI, artifact folder) are replaced.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine_learning.tracking import server_is_healthy

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
AUTH_COMPOSE_FILE = REPO_ROOT / "docker-compose.auth.yml"
COMPOSE_PROJECT = "pokemon-battle-mlops"  # the compose file's `name:`
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Flags whose value depends on the machine; everything else comes from the compose file.
MACHINE_FLAGS = ("--host", "--port", "--artifacts-destination", "--backend-store-uri")
HEALTH_TIMEOUT_S = 90.0
LOG_TAIL_LINES = 30
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


class StackError(RuntimeError):
    """A service of the stack failed to start; the message names it and shows its log."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` substitution."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = env.get(name)
        unset = value is None or (value == "" and operator and operator.startswith(":"))
        if unset and operator and operator.endswith("?"):
            raise StackError(f"{name} is not set: {argument}")
        if unset and operator and operator.endswith("-"):
            return argument
        return value or ""

    return _VARIABLE.sub(substitute, text)


@dataclass(frozen=True)
class ServiceSpec:
    """A compose service's command and environment after interpolation."""

    command: list[str]
    environment: dict[str, str]


def compose_service(
    service: str, env: Mapping[str, str], compose_files: Sequence[Path] = (COMPOSE_FILE,)
) -> ServiceSpec:
    """The command and environment the compose files give ``service``.

    Later files override earlier ones as ``docker compose -f a -f b`` does: the command is
    replaced, the environment merged. The backend store URI is left out: it holds the compose
    database password, and the native stack passes its own.
    """
    import yaml

    command: list[str] = []
    environment: dict[str, str] = {}
    for path in compose_files:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))["services"].get(service, {})
        command = [str(arg) for arg in raw.get("command", command)]
        environment |= {key: str(value) for key, value in (raw.get("environment") or {}).items()}
    environment.pop("MLFLOW_BACKEND_STORE_URI", None)
    return ServiceSpec(
        [interpolate(arg, env) for arg in command],
        {key: interpolate(value, env) for key, value in environment.items()},
    )


def replace_flags(command: list[str], values: Mapping[str, str]) -> list[str]:
    """``command`` with each ``--flag=value`` in ``values`` replaced (or appended)."""
    kept = [arg for arg in command if arg.split("=", 1)[0] not in values]
    return kept + [f"{flag}={value}" for flag, value in values.items()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_interpreter() -> str:
    """A Python of this version that every user may execute, for servers run as another uid."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if candidate and _executable_by_others(Path(candidate).resolve()):
            return str(Path(candidate).resolve())
    raise StackError(f"no {version} that other users can execute; needed to run as another uid")


def _executable_by_others(path: Path) -> bool:
    """Every folder on the way is searchable by others, and the file executable by them."""
    if not path.is_file():
        return False
    return all(folder.stat().st_mode & 0o001 for folder in path.parents) and bool(
        path.stat().st_mode & 0o001
    )


def mlflow_executable() -> str:
    """The mlflow CLI of this interpreter's environment."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.exists() else shutil.which("mlflow") or "mlflow"


@dataclass
class NativeStack:
    """A PostgreSQL database of its own, its schema migrated, and an ``mlflow server`` process."""

    workdir: Path
    admin_dsn: str = DEFAULT_ADMIN_DSN
    database: str = field(default_factory=lambda: f"mlflow_test_{secrets.token_hex(4)}")
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    compose_files: tuple[Path, ...] = (COMPOSE_FILE,)
    user: int | None = None  # run the server as this uid, as the image does (uid 10001)
    _server: subprocess.Popen | None = None
    kind = "native"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_uri(self) -> str:
        base = self.admin_dsn.rsplit("/", 1)[0]
        return f"{base}/{self.database}"

    @property
    def artifacts_dir(self) -> Path:
        return self.workdir / "artifacts"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mlflow-server.log"

    def up(self) -> NativeStack:
        """Create the database, migrate it, start the server and wait for /health."""
        self.create_database()
        self.migrate()
        self.start_server()
        return self

    def create_database(self) -> None:
        """The postgres service's part: an empty database of this stack's own."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        if self.user is not None:  # the image's volume and home belong to its user
            (self.workdir / "home").mkdir(exist_ok=True)
            for owned in (self.artifacts_dir, self.workdir / "home"):
                os.chown(owned, self.user, self.user)
        self._admin(f'CREATE DATABASE "{self.database}"')

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server else None

    def migrate(self) -> None:
        """The mlflow-migrate service: ``mlflow db upgrade`` on the database."""
        done = subprocess.run(
            [mlflow_executable(), "db", "upgrade", self.backend_uri],
            capture_output=True,
            text=True,
            env=self._process_env(),
            check=False,
        )
        if done.returncode != 0:
            raise StackError(
                f"mlflow-migrate failed (exit {done.returncode}):\n"
                + _tail(done.stdout + done.stderr)
            )

    def server_spec(self) -> ServiceSpec:
        """The compose file's mlflow service with this machine's address, port and stores."""
        spec = compose_service("mlflow", self._process_env(), self.compose_files)
        machine = {
            "--host": "127.0.0.1",
            "--port": str(self.port),
            "--artifacts-destination": str(self.artifacts_dir),
            "--backend-store-uri": self.backend_uri,
        }
        flags = replace_flags(spec.command[1:], machine)
        if self.user is None:
            return ServiceSpec([mlflow_executable(), *flags], spec.environment)
        # This environment's packages, run by an interpreter the unprivileged user can execute
        # (a venv's interpreter often lives in root's home).
        packages = {
            "PYTHONPATH": sysconfig.get_paths()["purelib"],
            "HOME": str(self.workdir / "home"),
        }
        user = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups"]
        command = [*user, shared_interpreter(), "-m", "mlflow", *flags]
        return ServiceSpec(command, spec.environment | packages)

    def start_server(self) -> None:
        spec = self.server_spec()
        env = self._process_env() | spec.environment
        with self.log_path.open("ab") as log:
            self._server = subprocess.Popen(
                spec.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._wait_healthy()

    def stop_server(self) -> None:
        if self._server is None:
            return
        try:
            os.killpg(self._server.pid, 15)
        except ProcessLookupError:  # already gone (it failed to start, or was stopped)
            self._server = None
            return
        try:
            self._server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._server.pid, 9)
            self._server.wait()
        self._server = None

    def restart_server(self) -> None:
        """Stop the server (closing its database connections) and start it on the same stores."""
        self.stop_server()
        self.start_server()

    def artifact_exists(self, relative: str) -> bool:
        """Whether ``relative`` exists under the server's artifact destination."""
        return (self.artifacts_dir / relative).exists()

    def down(self) -> None:
        """Stop the server and drop the database (the ``down -v`` of the native stack)."""
        self.stop_server()
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._server is not None and self._server.poll() is not None:
                raise StackError(
                    f"mlflow exited with code {self._server.returncode} while "
                    f"starting; last log lines:\n{self.log_tail()}"
                )
            if server_is_healthy(self.tracking_uri):
                return
            time.sleep(0.2)
        self.stop_server()
        raise StackError(
            f"mlflow did not answer /health within {HEALTH_TIMEOUT_S:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        try:
            return _tail(self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return "(no log)"

    def _process_env(self) -> dict[str, str]:
        return dict(os.environ) | self.env

    def _admin(self, statement: str) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise StackError(f"postgres: {statement.split(' ')[0].lower()} failed: {exc}") from exc


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def docker_engine_available() -> bool:
    """True when a Docker engine answers (a client alone is not enough)."""
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@dataclass
class DockerStack:
    """The compose stack itself, driven through pytest-docker's compose executor.

    Same interface as NativeStack, so the stack tests run unchanged on either.
    """

    project: str
    env: dict[str, str] = field(default_factory=dict)
    compose_files: tuple[Path, ...] = (COMPOSE_FILE,)
    port: int = field(default_factory=free_port)
    executor: Any = None  # runs compose subcommands; default ComposeCLI
    kind = "docker compose"

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

    def restart_server(self) -> None:
        self._compose("restart mlflow")
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if server_is_healthy(self.tracking_uri):
                return
            time.sleep(0.5)
        raise StackError(f"mlflow did not come back after a restart:\n{self._logs('mlflow')}")

    def artifact_exists(self, relative: str) -> bool:
        probe = f"exec -T mlflow sh -c 'test -e /mlartifacts/{relative} && echo yes || echo no'"
        return self._compose(probe).decode().strip() == "yes"

    def down(self) -> None:
        try:
            self._compose("down -v")
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
        report = [f"docker compose: {', '.join(failed) or 'a service'} failed to start"]
        report += [f"--- {name}, last log lines:\n{self._logs(name)}" for name in failed]
        return "\n".join(report)

    def _logs(self, service: str) -> str:
        output = self._compose(
            f"logs --no-color --tail {LOG_TAIL_LINES} {service}", success_codes=(0, 1)
        )
        return output.decode(errors="replace")

    def _compose(self, subcommand: str, success_codes: tuple[int, ...] = (0,)) -> bytes:
        executor = self.executor or ComposeCLI(self.compose_files, self.project)
        return executor.execute(
            subcommand, self.env | {"MLFLOW_PORT": str(self.port)}, success_codes
        )


class ComposeFailed(RuntimeError):
    """A ``docker compose`` command exited with an unexpected code."""


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
            raise ComposeFailed(
                f"docker compose {subcommand} exited {done.returncode}: "
                + _tail(done.stdout.decode(errors="replace"), 5)
            )
        return done.stdout


def choose_backend(env: Mapping[str, str]) -> str:
    """``docker`` when an engine answers, else ``native``; STACK_BACKEND=native|docker forces it."""
    forced = env.get("STACK_BACKEND", "auto")
    if forced in ("native", "docker"):
        return forced
    return "docker" if docker_engine_available() else "native"


def write_env_file(path: Path) -> None:
    """Give the compose stack a fresh PostgreSQL password in ``.env`` (kept when present).

    The mask is flushed before anything else can print: Actions masks a value only from the
    moment it reads ``::add-mask::``, and stderr is not buffered like stdout is.
    """
    if path.exists():
        return
    password = secrets.token_urlsafe(24)
    print(f"::add-mask::{password}", flush=True)
    path.write_text(f"POSTGRES_PASSWORD={password}\n", encoding="utf-8")

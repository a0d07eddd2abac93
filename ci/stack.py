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
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
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
    service: str, env: Mapping[str, str], compose_file: Path = COMPOSE_FILE
) -> ServiceSpec:
    """The command and environment the compose file gives ``service``.

    The backend store URI is left out: it holds the compose database password, and the native
    stack passes its own.
    """
    import yaml

    services = yaml.safe_load(compose_file.read_text(encoding="utf-8"))["services"]
    raw = services[service]
    environment = {
        key: interpolate(str(value), env)
        for key, value in (raw.get("environment") or {}).items()
        if key != "MLFLOW_BACKEND_STORE_URI"
    }
    return ServiceSpec([interpolate(str(arg), env) for arg in raw["command"]], environment)


def replace_flags(command: list[str], values: Mapping[str, str]) -> list[str]:
    """``command`` with each ``--flag=value`` in ``values`` replaced (or appended)."""
    kept = [arg for arg in command if arg.split("=", 1)[0] not in values]
    return kept + [f"{flag}={value}" for flag, value in values.items()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    extra_flags: dict[str, str] = field(default_factory=dict)
    _server: subprocess.Popen | None = None

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
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        self._admin(f'CREATE DATABASE "{self.database}"')
        self.migrate()
        self.start_server()
        return self

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

    def server_command(self) -> list[str]:
        spec = compose_service("mlflow", self._process_env())
        machine = {
            "--host": "127.0.0.1",
            "--port": str(self.port),
            "--artifacts-destination": str(self.artifacts_dir),
            "--backend-store-uri": self.backend_uri,
        }
        return [mlflow_executable(), *replace_flags(spec.command[1:], machine | self.extra_flags)]

    def start_server(self) -> None:
        env = self._process_env() | compose_service("mlflow", self._process_env()).environment
        with self.log_path.open("ab") as log:
            self._server = subprocess.Popen(
                self.server_command(),
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
        os.killpg(self._server.pid, 15)
        try:
            self._server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._server.pid, 9)
            self._server.wait()
        self._server = None

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
            try:
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
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

"""The stack without Docker: the compose file's services started as native processes.

Test and benchmark support only (production runs docker-compose.yml, see ci/stack.py). Where no
Docker engine runs (this project's own CI machine, a laptop without Docker), the tests still
need "the stack". The mlflow server's flags and environment are read from docker-compose.yml so
the native server runs exactly what the compose file deploys; only the machine-specific ones
(bind address, port, database URI, artifact folder) are replaced. Every stack's database is a
copy of one migrated template (``CREATE DATABASE … TEMPLATE``: 0.1 s instead of a 4.5 s
``mlflow db upgrade``), made once per process and dropped at exit.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ci.stack import COMPOSE_FILE, StackError
from ci.state_stores import mlflow_executable
from tests.docker_stack import HEALTH_TIMEOUT_S, free_port, tail, wait_healthy

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Flags whose value depends on the machine; everything else comes from the compose file.
MACHINE_FLAGS = ("--host", "--port", "--artifacts-destination", "--backend-store-uri")
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


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
    replaced, the environment merged. The backend store URI, the inference log's URL and its
    PGPASSWORD are left out: they are the compose stack's databases, and the native stack
    passes its own.
    """
    import yaml

    command: list[str] = []
    environment: dict[str, str] = {}
    for path in compose_files:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))["services"].get(service, {})
        command = [str(arg) for arg in raw.get("command", command)]
        environment |= {key: str(value) for key, value in (raw.get("environment") or {}).items()}
    secrets = ("MLFLOW_BACKEND_STORE_URI", "INFERENCE_LOG_URL", "PGPASSWORD", "OUTCOMES_TOKEN")
    for holds_the_password in secrets:
        environment.pop(holds_the_password, None)
    return ServiceSpec(
        [interpolate(arg, env) for arg in command],
        {key: interpolate(value, env) for key, value in environment.items()},
    )


def replace_flags(command: list[str], values: Mapping[str, str]) -> list[str]:
    """``command`` with each ``--flag=value`` in ``values`` replaced (or appended)."""
    kept = [arg for arg in command if arg.split("=", 1)[0] not in values]
    return kept + [f"{flag}={value}" for flag, value in values.items()]


# What sudo resets even with --preserve-env (PATH to its secure_path; PYTHONPATH is among the
# variables it always removes), put back for a command that needs its environment.
SUDO_RESETS = ("PATH", "PYTHONPATH")


def as_root(command: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``command`` with root's rights: as it is when this process is root, else through
    passwordless ``sudo``, as a job on GitHub's hosted runner (the user ``runner``) does what
    needs root. The one place the suite asks for root; with ``env``, the command keeps the
    environment it is started with (sudo would reset it)."""
    if os.geteuid() == 0:
        return list(command)
    _check_sudo()
    if env is None:
        return ["sudo", "-n", "--", *command]
    kept = [f"{name}={env[name]}" for name in SUDO_RESETS if name in env]
    return ["sudo", "-n", "--preserve-env", "--", "env", *kept, *command]


@cache
def _check_sudo() -> None:
    """Fail at the first need, saying why, when this unprivileged process has no passwordless
    sudo: the tests that need root's rights fail rather than skip or hang on a password."""
    try:
        done = subprocess.run(
            ["sudo", "-n", "true"], capture_output=True, text=True, timeout=30, check=False
        )
        reason = done.stderr.strip() if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as error:
        reason = str(error)
    if reason:
        raise StackError(
            f"this needs root's rights: the suite runs as uid {os.geteuid()} and passwordless "
            f"sudo (as on GitHub's hosted runner) is not available: {reason}"
        )


def run_as_root(command: Sequence[str]) -> None:
    """Run ``command`` with root's rights (:func:`as_root`); StackError naming it if it fails."""
    done = subprocess.run(as_root(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def chown(paths: Sequence[Path], uid: int) -> None:
    """Give ``paths`` (not what they link to) to ``uid``: root's work, as Docker's engine does
    it for a container's volume."""
    if paths:
        run_as_root(["chown", "--no-dereference", f"{uid}:{uid}", *map(str, paths)])


def remove_tree(path: Path) -> None:
    """Remove a folder, with root's rights for what another uid wrote in it (a server run as
    the image's user) when this process cannot."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        run_as_root(["rm", "-rf", "--", str(path)])


def kill_group(pgid: int, signum: int) -> None:
    """Signal a process group of another uid's processes (a server run as the image's user).
    Root signals it itself; anyone else through sudo, because ``os.killpg`` would reach only
    the ``sudo`` that started the server, which relays a signal to its child alone (and cannot
    relay SIGKILL). ProcessLookupError when the group is gone."""
    if os.geteuid() == 0:
        os.killpg(pgid, signum)
        return
    done = subprocess.run(
        as_root(["kill", f"-{signum}", "--", f"-{pgid}"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and _group_exists(pgid):
        raise StackError(f"could not signal process group {pgid}: {done.stderr.strip()}")
    if done.returncode != 0:
        raise ProcessLookupError(pgid)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but none of it ours
        return True
    return True


def become(uid: int) -> list[str]:
    """The prefix that runs a command as ``uid`` (and its group, no other): root's right, so
    the command goes through :func:`as_root`."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


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
        """A copy of the migrated template database, then the server, then /health."""
        self.create_database(template=migrated_template(self.admin_dsn))
        self.start_server()
        return self

    def create_database(self, template: str | None = None) -> None:
        """The postgres service's part: a database of this stack's own (empty, or a copy of
        ``template``)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        if self.user is not None:  # the image's volume and home belong to its user
            (self.workdir / "home").mkdir(exist_ok=True)
            chown([self.artifacts_dir, self.workdir / "home"], self.user)
        copy = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{self.database}"{copy}')

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
                + tail(done.stdout + done.stderr)
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
        command = [*become(self.user), shared_interpreter(), "-m", "mlflow", *flags]
        return ServiceSpec(command, spec.environment | packages)

    def start_server(self) -> None:
        spec = self.server_spec()
        env = self._process_env() | spec.environment
        # Becoming another uid (setpriv) is root's right.
        command = spec.command if self.user is None else as_root(spec.command, env)
        with self.log_path.open("ab") as log:
            self._server = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._wait_healthy()

    def stop_server(self, signum: int = 15) -> None:
        """SIGTERM by default: uvicorn closes its connections and exits (then ``mlflow server``
        spends ~1 s of CPU in its interpreter's final garbage collection)."""
        if self._server is None:
            return
        try:
            self._signal(signum)
        except ProcessLookupError:  # already gone (it failed to start, or was stopped)
            self._server = None
            return
        try:
            self._server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._signal(9)
            self._server.wait()
        self._server = None

    def _signal(self, signum: int) -> None:
        """Signal the server's process group (its own session): a server run as another uid
        with root's rights."""
        assert self._server is not None
        if self.user is None:
            os.killpg(self._server.pid, signum)
        else:
            kill_group(self._server.pid, signum)

    def restart_server(self) -> None:
        """Stop the server (closing its database connections) and start it on the same stores."""
        self.stop_server()
        self.start_server()

    def state_env(self, tracking_uri: str | None = None) -> dict[str, str]:
        """What ``ci state`` reads to reach this stack's stores (and its tracking server, or
        ``tracking_uri``)."""
        return {
            "MLFLOW_TRACKING_URI": tracking_uri or self.tracking_uri,
            "MLFLOW_STATE_DATABASE": self.backend_uri,
            "MLFLOW_STATE_ARTIFACTS": str(self.artifacts_dir),
        }

    def artifact_exists(self, relative: str) -> bool:
        """Whether ``relative`` exists under the server's artifact destination."""
        return (self.artifacts_dir / relative).exists()

    def down(self) -> None:
        """Kill the server and drop the database (the ``down -v`` of the native stack). Nothing
        outlives it, so there is no graceful stop to wait for."""
        self.stop_server(signum=9)
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _wait_healthy(self) -> None:
        if not wait_healthy(self.tracking_uri, self._exited):
            self.stop_server()
            raise StackError(
                f"mlflow did not answer /health within {HEALTH_TIMEOUT_S:.0f} s; "
                f"last log lines:\n{self.log_tail()}"
            )

    def _exited(self) -> str | None:
        if self._server is None or self._server.poll() is None:
            return None
        return (
            f"mlflow exited with code {self._server.returncode} while starting; "
            f"last log lines:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        try:
            return tail(self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return "(no log)"

    def _process_env(self) -> dict[str, str]:
        """The environment of the stack's processes. They run none of this project's code, so
        the suite's coverage is not started in them (it made every server ~40% slower)."""
        env = dict(os.environ) | self.env
        env.pop("COVERAGE_PROCESS_CONFIG", None)
        return env

    def _admin(self, statement: str) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise StackError(f"postgres: {statement.split(' ')[0].lower()} failed: {exc}") from exc


def docker_engine_available() -> bool:
    """True when a Docker engine answers (a client alone is not enough)."""
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_backend(env: Mapping[str, str]) -> str:
    """``docker`` when an engine answers, else ``native``; STACK_BACKEND=native|docker forces it."""
    forced = env.get("STACK_BACKEND", "auto")
    if forced in ("native", "docker"):
        return forced
    return "docker" if docker_engine_available() else "native"


_TEMPLATES: dict[str, str] = {}  # admin DSN → this process's migrated template database


def migrated_template(admin_dsn: str) -> str:
    """A database migrated once (the mlflow-migrate service's work) for every stack of this
    process to copy; dropped when the process exits."""
    if admin_dsn not in _TEMPLATES:
        template = NativeStack(
            Path(tempfile.mkdtemp(prefix="mlflow-template-")),
            admin_dsn=admin_dsn,
            database=f"mlflow_test_template_{secrets.token_hex(4)}",
        )
        template.create_database()
        atexit.register(shutil.rmtree, template.workdir, ignore_errors=True)
        atexit.register(template.down)
        template.migrate()
        _TEMPLATES[admin_dsn] = template.database
    return _TEMPLATES[admin_dsn]


def predictor_command(
    tracking_uri: str, port: int, overrides: Mapping[str, str] | None = None
) -> list[str]:
    """The compose file's predictor service as a local command (this interpreter's
    ``python -m machine_learning``) on this machine's address, port and tracking server;
    ``overrides`` (e.g. ``--poll-interval``) replace the file's flags."""
    spec = compose_service("predictor", os.environ)
    machine = {"--host": "127.0.0.1", "--port": str(port), "--tracking-uri": tracking_uri}
    flags = replace_flags(spec.command, machine | dict(overrides or {}))
    return [sys.executable, "-m", "machine_learning", *flags]

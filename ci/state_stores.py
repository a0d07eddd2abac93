"""The stack's two stores as ``ci state`` reaches them: the MLflow database and the artifacts.

One code path for both stacks: PostgreSQL's own client tools (pg_dump, pg_restore, psql) run on
the host against a URL (native stack), or inside the compose project's postgres container
(``compose``); artifacts are a folder, or a service's path copied with ``docker compose cp
--archive`` (files land owned by the container's user, who must write beside them later).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from ci.stack import COMPOSE_FILE, COMPOSE_PROJECT, ComposeCLI
from machine_learning.contract.failures import BadInput, Failure

COMPOSE = "compose"
COMPOSE_DATABASE, COMPOSE_USER = "mlflow", "mlflow"  # the postgres service's POSTGRES_DB/USER
TOOL_TIMEOUT_S = 900


class StateError(Failure):
    """A snapshot could not be saved or restored; the message names the step."""


class UnusableState(BadInput, StateError):
    """A snapshot or database that cannot be used as given (exit 2): refused before anything
    is changed."""


def _default_compose() -> ComposeCLI:
    return ComposeCLI((COMPOSE_FILE,), COMPOSE_PROJECT)


@dataclass(frozen=True)
class Stores:
    """Where the stack keeps its database and artifacts: a URL and a folder, or ``compose``."""

    database: str
    artifacts: str
    compose_database: str = COMPOSE_DATABASE
    compose: ComposeCLI = field(default_factory=_default_compose)

    def describe(self) -> str:
        if self.database == COMPOSE:
            return f"{self.compose_database} (compose postgres service)"
        parts = urlsplit(self.database)
        return f"{parts.path.lstrip('/')} on {parts.hostname}:{parts.port or 5432}"

    def dump(self, path: Path) -> None:
        with path.open("wb") as out:
            self._tool("pg_dump", ["--format=custom", "--no-owner", "--no-privileges"], out=out)

    def load(self, path: Path) -> None:
        """Replace the database's content with a dump, in one transaction: all or nothing."""
        flags = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
        with path.open("rb") as dump:
            self._tool("pg_restore", flags, stdin=dump)

    def sql(self, statement: str) -> str:
        """One statement through psql; its unaligned, tuples-only output."""
        return self._tool("psql", ["-v", "ON_ERROR_STOP=1", "-tA", "-c", statement]).strip()

    @contextmanager
    def scratch_database(self) -> Iterator[Stores]:
        """A new, empty database on the same server, dropped afterwards whatever happens."""
        name = f"{self._name()}_scratch_{secrets.token_hex(4)}"
        self.sql(f'CREATE DATABASE "{name}"')
        try:
            if self.database == COMPOSE:
                yield replace(self, compose_database=name)
            else:
                yield replace(
                    self, database=urlunsplit(urlsplit(self.database)._replace(path=f"/{name}"))
                )
        finally:
            self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def schema_revision(self) -> str | None:
        """The database's Alembic revision (MLflow's schema version); None before migration."""
        if self.sql("SELECT to_regclass('public.alembic_version') IS NULL") == "t":
            return None
        return self.sql("SELECT string_agg(version_num, ',') FROM alembic_version") or None

    def dump_revision(self, path: Path) -> str | None:
        """The Alembic revision recorded in a dump, read without loading it anywhere."""
        args = ["--data-only", "--table=alembic_version", "--file=-"]
        with path.open("rb") as dump:
            script = self._tool("pg_restore", args, stdin=dump, connect=False)
        rows, copying = [], False
        for line in script.splitlines():
            if line.startswith("COPY ") and "alembic_version" in line:
                copying = True
            elif copying and line == "\\.":
                break
            elif copying and line:
                rows.append(line)
        return ",".join(rows) or None

    def upgrade(self) -> None:
        """``mlflow db upgrade`` on this database (compose: the mlflow-migrate service's image)."""
        if self.database == COMPOSE:
            script = f'exec mlflow db upgrade "${{MLFLOW_BACKEND_STORE_URI%/*}}/{self._name()}"'
            command = self.compose.command(
                ["run", "--rm", "--no-deps", "-T", "mlflow-migrate", "sh", "-c", script]
            )
        else:
            command = [mlflow_executable(), "db", "upgrade", self.database]
        _run(command, "mlflow db upgrade")

    def experiments(self) -> dict[str, str]:
        rows = self.sql(
            "SELECT coalesce(json_object_agg(experiment_id::text, name), '{}') FROM experiments"
        )
        return json.loads(rows or "{}")

    def count_runs(self, run_ids: set[str]) -> int:
        if not run_ids:
            return 0
        return int(self.sql(f"SELECT count(*) FROM runs WHERE run_uuid IN ({_list(run_ids)})"))

    def prune(self, keep: set[str], now_ms: int) -> int:
        """Mark every active run not in ``keep`` deleted (as MLflow's delete_run does)."""
        spared = f"AND run_uuid NOT IN ({_list(keep)})" if keep else ""
        return int(
            self.sql(
                "WITH pruned AS (UPDATE runs SET lifecycle_stage = 'deleted', "
                f"deleted_time = {int(now_ms)} WHERE lifecycle_stage = 'active' {spared} "
                "RETURNING 1) SELECT count(*) FROM pruned"
            )
        )

    def export_artifacts(self, target: Path, keep: set[str]) -> int:
        """Copy the kept subtrees (paths relative to the store root); returns the file count."""
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            root = self._local_copy(Path(scratch))
            copied = 0
            for relative in sorted(keep):
                source = root / relative
                if source.is_dir():
                    shutil.copytree(source, target / relative, symlinks=True, dirs_exist_ok=True)
                    copied += sum(1 for p in source.rglob("*") if p.is_file())
            return copied

    def import_artifacts(self, source: Path) -> None:
        """Copy a (checked) snapshot's artifacts into the store, owned by the store's owner."""
        if self.artifacts.startswith(f"{COMPOSE}:"):
            service_path = self.artifacts.split(":", 1)[1]
            command = self.compose.command(["cp", "--archive", f"{source}/.", service_path])
            _run(command, "docker compose cp")
            return
        root = Path(self.artifacts)
        try:
            owner = _owner_to_give(root)
            shutil.copytree(source, root, dirs_exist_ok=True)
            if owner is not None:
                for path in [root, *root.rglob("*")]:
                    os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except (OSError, shutil.Error) as error:
            raise StateError(f"copying the artifacts into {root} failed: {error}") from None

    def _local_copy(self, scratch: Path) -> Path:
        if not self.artifacts.startswith(f"{COMPOSE}:"):
            return Path(self.artifacts)
        service_path = self.artifacts.split(":", 1)[1]
        _run(self.compose.command(["cp", f"{service_path}/.", str(scratch)]), "docker compose cp")
        return scratch

    def _name(self) -> str:
        if self.database == COMPOSE:
            return self.compose_database
        return urlsplit(self.database).path.lstrip("/")

    def _tool(
        self,
        tool: str,
        args: list[str],
        stdin: IO[bytes] | None = None,
        out: IO[bytes] | None = None,
        connect: bool = True,
    ) -> str:
        """Run a PostgreSQL client tool on this database (``connect=False``: without one, e.g.
        pg_restore printing a dump's content)."""
        compose = self.database == COMPOSE
        database = [f"--dbname={self._name() if compose else self.database}"] if connect else []
        if compose:
            command = self.compose.command(
                ["exec", "-T", "postgres", tool, "-U", COMPOSE_USER, *database, *args]
            )
        else:
            command = [tool, *database, *args]
        return _run(command, tool, stdin=stdin, stdout=out)


def _owner_to_give(root: Path) -> os.stat_result | None:
    """The folder's owner, when the copied files must be given to it (this process is root,
    the folder another user's: the server's, who writes beside them later); None when the
    copies are already the owner's (this process owns the folder, or the folder is missing and
    is made by the copy). Anyone else is refused before a file is copied: their files would not
    be the server's to write beside, and changing an owner is root's right alone."""
    try:
        owner = root.stat()
    except FileNotFoundError:
        return None
    me = os.geteuid()
    if owner.st_uid == me:
        return None
    if me == 0:
        return owner
    raise StateError(
        f"cannot restore the artifacts into {root}: it belongs to {_user_name(owner.st_uid)} "
        f"and this is {_user_name(me)}; run the restore as {_user_name(owner.st_uid)} or as root"
    )


def _user_name(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` for a uid without an account (a container's user)."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _list(run_ids: set[str]) -> str:
    """A SQL list of run ids; each was checked to be 32 hex digits, so none needs escaping."""
    from machine_learning.contract.run_record import is_run_id

    if not all(is_run_id(run) for run in run_ids):
        raise ValueError("run ids must be 32 hex digits")
    return ", ".join(f"'{run}'" for run in sorted(run_ids))


def mlflow_executable() -> str:
    """The mlflow CLI of this interpreter's environment (not whichever is first on PATH)."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.exists() else shutil.which("mlflow") or "mlflow"


def _run(command: list[str], step: str, stdin=None, stdout=None) -> str:
    """Run a tool; its stdout (unless redirected); StateError naming the step when it fails."""
    try:
        done = subprocess.run(
            command,
            stdin=stdin,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except OSError as error:
        raise StateError(f"{step}: cannot run {command[0]}: {error.strerror}") from None
    except subprocess.TimeoutExpired:
        raise StateError(f"{step} did not finish within {TOOL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StateError(f"{step} failed (exit {done.returncode}): {message[0]}")
    return done.stdout.decode(errors="replace") if stdout is None else ""

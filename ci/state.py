"""MLflow state between ephemeral workflow runs: snapshot and restore of the stack's stores.

A snapshot is a folder (the Actions cache saves and restores it): ``mlflow.dump`` (pg_dump of
the MLflow database, custom format), ``artifacts/`` (the artifact store, pruned to what is still
referenced) and ``manifest.json``. What is kept: the runs and models behind the ``champion`` and
``previous-champion`` aliases and the last runs of the current branch; other runs are deleted
(soft: their metrics stay in the database) and their files are left out.

The stores are reached the same way for both stacks: a PostgreSQL URL with the host's pg_dump
(native stack) or ``compose`` (pg_dump inside the postgres container, ``docker compose cp`` for
the artifact volume).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ci.registry import CHAMPION, PREVIOUS_CHAMPION, version_by_alias
from ci.runs import tag_filter

if TYPE_CHECKING:
    from mlflow import MlflowClient

DUMP, ARTIFACTS, MANIFEST = "mlflow.dump", "artifacts", "manifest.json"
COMPOSE = "compose"
COMPOSE_ARTIFACTS = "mlflow:/mlartifacts"
KEEP_BRANCH_RUNS = 10


class StateError(RuntimeError):
    """A snapshot could not be saved or restored; the message names the step."""


@dataclass(frozen=True)
class Stores:
    """Where the stack keeps its database and artifacts: a URL and a folder, or ``compose``."""

    database: str
    artifacts: str

    def dump(self, path: Path) -> None:
        if self.database == COMPOSE:
            command = [
                "docker",
                "compose",
                "exec",
                "-T",
                "postgres",
                "pg_dump",
                "-U",
                "mlflow",
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "mlflow",
            ]
            with path.open("wb") as out:
                _run(command, "pg_dump", stdout=out)
        else:
            _run(
                [
                    "pg_dump",
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--file={path}",
                    self.database,
                ],
                "pg_dump",
            )

    def load(self, path: Path) -> None:
        flags = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
        if self.database == COMPOSE:
            with path.open("rb") as dump:
                _run(
                    [
                        "docker",
                        "compose",
                        "exec",
                        "-T",
                        "postgres",
                        "pg_restore",
                        "-U",
                        "mlflow",
                        "-d",
                        "mlflow",
                        *flags,
                    ],
                    "pg_restore",
                    stdin=dump,
                )
        else:
            _run(["pg_restore", *flags, f"--dbname={self.database}", str(path)], "pg_restore")

    def export_artifacts(self, target: Path, keep: set[str]) -> int:
        """Copy the kept subtrees (paths relative to the store root); returns the file count."""
        with tempfile.TemporaryDirectory() as scratch:
            root = self._local_copy(Path(scratch))
            copied = 0
            for relative in sorted(keep):
                source = root / relative
                if source.is_dir():
                    shutil.copytree(source, target / relative, dirs_exist_ok=True)
                    copied += sum(1 for p in source.rglob("*") if p.is_file())
            return copied

    def import_artifacts(self, source: Path) -> None:
        if self.artifacts.startswith(f"{COMPOSE}:"):
            service_path = self.artifacts.split(":", 1)[1]
            _run(["docker", "compose", "cp", f"{source}/.", service_path], "docker compose cp")
        else:
            shutil.copytree(source, self.artifacts, dirs_exist_ok=True)

    def _local_copy(self, scratch: Path) -> Path:
        if not self.artifacts.startswith(f"{COMPOSE}:"):
            return Path(self.artifacts)
        service_path = self.artifacts.split(":", 1)[1]
        _run(["docker", "compose", "cp", f"{service_path}/.", str(scratch)], "docker compose cp")
        return scratch


def keep_set(
    client: MlflowClient,
    experiments: list[str],
    model_name: str,
    branch: str,
    keep_runs: int = KEEP_BRANCH_RUNS,
) -> tuple[set[str], set[str]]:
    """(run ids, artifact subtrees) still referenced: champions and the branch's last runs."""
    run_ids: set[str] = set()
    for alias in (CHAMPION, PREVIOUS_CHAMPION):
        version = version_by_alias(client, model_name, alias)
        if version is not None and version.run_id:
            run_ids.add(version.run_id)
    if branch and experiments:
        recent = client.search_runs(
            experiments,
            tag_filter("ci.branch", branch),
            order_by=["attributes.start_time DESC"],
            max_results=keep_runs,
        )
        run_ids |= {run.info.run_id for run in recent}
    subtrees = set()
    for run_id in run_ids:
        run = client.get_run(run_id)
        subtrees.add(_relative(run.info.artifact_uri))
        for output in run.outputs.model_outputs if run.outputs else []:
            subtrees.add(_relative(client.get_logged_model(output.model_id).artifact_location))
    return run_ids, {s.removesuffix("/artifacts") for s in subtrees if s}


def prune(client: MlflowClient, experiments: list[str], keep: set[str]) -> int:
    """Soft-delete every active run that is not kept; returns how many.

    All pages are read before anything is deleted: search pages are offsets into the active
    runs, so deleting while paging would skip runs.
    """
    doomed, page_token = [], None
    while experiments:
        page = client.search_runs(experiments, max_results=1000, page_token=page_token)
        doomed += [run.info.run_id for run in page if run.info.run_id not in keep]
        page_token = page.token
        if not page_token:
            break
    for run_id in doomed:
        client.delete_run(run_id)
    return len(doomed)


def save(client: MlflowClient, stores: Stores, target: Path, model_name: str, branch: str) -> dict:
    """Prune, dump the database and copy the kept artifacts into ``target``."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs, subtrees = keep_set(client, experiments, model_name, branch)
    deleted = prune(client, experiments, runs)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    stores.dump(target / DUMP)
    files = stores.export_artifacts(target / ARTIFACTS, subtrees)
    manifest = {
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "branch": branch,
        "kept_runs": sorted(runs),
        "deleted_runs": deleted,
        "artifact_files": files,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def restore(stores: Stores, source: Path) -> dict | None:
    """Load a snapshot into the (freshly started) stack; None when there is none."""
    if not (source / DUMP).is_file():
        return None
    stores.load(source / DUMP)
    if (source / ARTIFACTS).is_dir():
        stores.import_artifacts(source / ARTIFACTS)
    try:
        return json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _relative(uri: str) -> str:
    """``mlflow-artifacts:/1/abc/artifacts`` → ``1/abc/artifacts`` (path in the store)."""
    return uri.split(":", 1)[1].lstrip("/") if uri.startswith("mlflow-artifacts:") else ""


def _run(command: list[str], step: str, **streams) -> None:
    try:
        done = subprocess.run(command, stderr=subprocess.PIPE, check=False, **streams)
    except OSError as error:
        raise StateError(f"{step}: cannot run {command[0]}: {error.strerror}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StateError(f"{step} failed (exit {done.returncode}): {message[0]}")

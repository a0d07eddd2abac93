"""MLflow state between ephemeral workflow runs: snapshot and restore of the stack's stores.

A snapshot is a folder (the Actions cache saves and restores it): ``mlflow.dump`` (pg_dump of
the MLflow database, custom format), ``artifacts/`` (the artifact store, only what the kept runs
and models reference) and ``manifest.json`` (machine_learning.contract.state_manifest). What
is kept: the runs and models behind the ``champion`` and ``previous-champion`` aliases and the
branch's last runs; other runs are marked deleted *in the snapshot* (their metrics stay) and
their files left out.

Nothing is changed before it is safe:
- save never touches the live server: it dumps, restores the dump into a scratch database,
  checks that it is the tracking server's store, prunes there, dumps the result into a folder
  beside the old snapshot, and only then swaps the folders;
- restore checks the snapshot (regular files only, no symlinks, a valid manifest), migrates it
  in a scratch database with ``mlflow db upgrade`` when its schema revision is not the server's
  (a snapshot from an older MLflow just works; one at the same revision skips the 3 to 4 s
  migration), copies the artifacts, and finally loads the database in one transaction.

The stores are reached the same way for both stacks: a PostgreSQL URL with the host's client
tools (native stack) or ``compose`` (the tools inside the postgres container, ``docker compose
cp --archive`` for the artifact volume, through the project's own compose runner).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ci.registry import version_by_alias
from ci.search_filters import tag_filter
from ci.state_stores import StateError, Stores, UnusableState
from machine_learning.contract.mlflow_names import CHAMPION, PREVIOUS_CHAMPION, TAG_BRANCH
from machine_learning.contract.records import RecordError
from machine_learning.contract.state_manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from mlflow import MlflowClient

DUMP, ARTIFACTS = "mlflow.dump", "artifacts"
KEEP_BRANCH_RUNS = 10


def keep_set(
    client: MlflowClient, experiments: list[str], model_name: str, branch: str
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
            tag_filter(TAG_BRANCH, branch),
            order_by=["attributes.start_time DESC"],
            max_results=KEEP_BRANCH_RUNS,
        )
        run_ids |= {run.info.run_id for run in recent}
    subtrees = set()
    for run_id in run_ids:
        run = client.get_run(run_id)
        subtrees.add(_relative(run.info.artifact_uri))
        for output in run.outputs.model_outputs if run.outputs else []:
            subtrees.add(_relative(client.get_logged_model(output.model_id).artifact_location))
    return run_ids, {s.removesuffix("/artifacts") for s in subtrees if s}


def save(client: MlflowClient, stores: Stores, target: Path, model_name: str, branch: str) -> str:
    """Write a new snapshot beside ``target``, verify it, then swap it in; returns a summary."""
    from mlflow.entities import ViewType

    experiments = client.search_experiments(view_type=ViewType.ALL)
    keep, subtrees = keep_set(client, [e.experiment_id for e in experiments], model_name, branch)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        stores.dump(scratch / "live.dump")
        with stores.scratch_database() as copy:
            copy.load(scratch / "live.dump")
            _check_same_store(copy, {e.experiment_id: e.name for e in experiments}, keep)
            deleted = copy.prune(keep, int(time.time() * 1000))
            copy.dump(scratch / DUMP)
        (scratch / "live.dump").unlink()
        files = stores.export_artifacts(scratch / ARTIFACTS, subtrees)
        manifest = Manifest(
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
            branch=branch,
            mlflow_version=metadata.version("mlflow"),
            kept_runs=sorted(keep),
            deleted_runs=deleted,
            artifact_files=files,
        )
        manifest.write(scratch / MANIFEST)
        _check_snapshot(scratch)
        _swap(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return (
        f"saved {len(keep)} runs ({files} artifact files) to {target}; "
        f"{deleted} older runs left out of the snapshot (the live server is unchanged)"
    )


def restore(stores: Stores, source: Path) -> str:
    """Load a snapshot into the (freshly started) stack; says so when there is none."""
    if not source.exists() or not any(source.iterdir()):
        return (
            f"no snapshot in {source}: starting from an empty MLflow (thresholds are seeded "
            "from ci/thresholds.toml, there is no champion yet)"
        )
    manifest = _check_snapshot(source)
    installed = metadata.version("mlflow")
    if _version_key(manifest.mlflow_version) > _version_key(installed):
        raise UnusableState(
            f"the snapshot was saved by MLflow {manifest.mlflow_version}, newer than the "
            f"installed {installed}: it cannot be migrated down; start without it"
        )
    migrated = _load_migrated(stores, source)
    return (
        f"restored the snapshot of {manifest.branch or 'unknown branch'} saved at "
        f"{manifest.saved_at} (MLflow {manifest.mlflow_version}, "
        + (f"migrated to {installed})" if migrated else "same schema as the server)")
    )


def _load_migrated(stores: Stores, source: Path) -> bool:
    """Copy the artifacts, then load the database in one transaction; a dump at another schema
    revision than the (freshly migrated) live database is migrated in a scratch database
    first. True when it was."""
    live = stores.schema_revision()
    migrate = live is None or stores.dump_revision(source / DUMP) != live
    work = Path(tempfile.mkdtemp(prefix="mlflow-restore-"))
    try:
        dump = source / DUMP
        if migrate:
            with stores.scratch_database() as copy:
                copy.load(dump)
                copy.upgrade()
                dump = work / DUMP
                copy.dump(dump)
        if (source / ARTIFACTS).is_dir():
            stores.import_artifacts(source / ARTIFACTS)
        stores.load(dump)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return migrate


def _check_same_store(copy: Stores, experiments: dict[str, str], keep: set[str]) -> None:
    """Refuse a dump that is not the tracking server's database: pruning it by the server's
    runs would delete the wrong ones."""
    try:
        dumped, kept = copy.experiments(), copy.count_runs(keep)
    except StateError:  # not even MLflow's tables
        dumped, kept = None, -1
    if dumped != experiments or kept != len(keep):
        raise UnusableState(
            f"the database {copy.describe()} does not hold the tracking server's experiments "
            "and runs: point --database at the tracking server's own database"
        )


def _check_snapshot(folder: Path) -> Manifest:
    """A snapshot we may load: its manifest, a dump, and only regular files and folders."""
    for path in (folder, folder / DUMP):
        if path.is_symlink():
            raise UnusableState(f"refusing the snapshot: {path} is a symlink")
    if not (folder / DUMP).is_file():
        raise UnusableState(f"refusing the snapshot: {folder / DUMP} is missing")
    try:
        manifest = Manifest.read(folder / MANIFEST)
    except RecordError as error:
        raise UnusableState(f"refusing the snapshot: {error}") from None
    for root, folders, files in os.walk(folder / ARTIFACTS):
        for name in folders + files:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise UnusableState(f"refusing the snapshot: {path} is a symlink or a special file")
    return manifest


def _swap(new: Path, target: Path) -> None:
    """Put ``new`` where ``target`` is; the old snapshot is removed only once ``new`` is in."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def _relative(uri: str) -> str:
    """``mlflow-artifacts:/1/abc/artifacts`` → ``1/abc/artifacts`` (path in the store)."""
    return uri.split(":", 1)[1].lstrip("/") if uri.startswith("mlflow-artifacts:") else ""


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)

"""MLflow state between workflow runs: snapshot on one stack, restore on a fresh one.

Every failure case checks that nothing was lost: the previous snapshot byte for byte, the live
server's active runs count for count, the live database's experiments. The servers run as an
unprivileged uid, as the image's does, so an ownership mistake in a restore fails here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from ci.cli import main
from machine_learning.contract.mlflow_names import TAG_BRANCH
from tests import fake_docker
from tests.conftest import REPO_ROOT, cli_env, exit_status, run_cli
from tests.integration.conftest import IMAGE_UID, unprivileged_stack
from tests.native_stack import NativeStack, as_root, become, remove_tree, shared_interpreter

pytestmark = pytest.mark.integration
OTHER_UID = IMAGE_UID + 1  # neither root nor the server's user


@pytest.fixture
def mlflow_client(live):
    import mlflow

    mlflow.set_tracking_uri(live.tracking_uri)
    yield mlflow.MlflowClient(live.tracking_uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture
def native_stores(monkeypatch, live):
    for name, value in live.state_env().items():
        monkeypatch.setenv(name, value)


def seed(client, name: str, runs: int = 3, branch: str = "main") -> list[str]:
    """An experiment with finished runs that each logged a file; the first becomes champion."""
    experiment = client.create_experiment(name)
    ids = []
    for i in range(runs):
        run = client.create_run(experiment, tags={TAG_BRANCH: branch})
        client.log_metric(run.info.run_id, "test_f1", 0.9 + i / 100)
        client.log_text(run.info.run_id, f"run {i}", "notes/run.txt")
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return ids


def active_runs(client) -> int:
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return len(client.search_runs(experiments, run_view_type=ViewType.ACTIVE_ONLY))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def ci(capsys, *args: str) -> tuple[int, str, str]:
    code = exit_status(main, args)
    out, err = capsys.readouterr()
    return code, out, err


def restore_as(
    stack: NativeStack, snapshot: Path, uid: int = 0
) -> subprocess.CompletedProcess[str]:
    """``ci state restore`` into ``stack`` as a real process of ``uid``: root by default, as an
    operator restores into a store its server's user owns (the files must become that
    user's, which only root can do); any other uid through ``setpriv`` with an interpreter and
    packages every user can read."""
    # No bytecode written by root (or anyone else) into this user's checkout.
    env = cli_env(PYTHONDONTWRITEBYTECODE="1", **stack.state_env())
    command = [sys.executable, "-m", "ci", "state", "restore", "--dir", str(snapshot)]
    if uid != 0:
        packages = os.pathsep.join((sysconfig.get_paths()["purelib"], str(REPO_ROOT)))
        env |= {"PYTHONPATH": packages, "HOME": str(snapshot.parent)}
        env.pop("COVERAGE_PROCESS_CONFIG", None)  # its data file is not that user's to write
        command = [*become(uid), shared_interpreter(), *command[1:]]
    return subprocess.run(
        as_root(command, env),
        env=env,
        cwd=snapshot.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_snapshot_carries_champion_and_branch_runs_to_another_stack(tmp_path, live):
    """Saved from a stack of its own, restored into the shared one (a restore replaces its
    database whatever it held)."""
    import mlflow

    first = NativeStack(tmp_path / "first").up()
    second = live
    try:
        env = cli_env(MLFLOW_TRACKING_URI=first.tracking_uri)
        for name, branch in (("main-run", "main"), ("other-run", "feature/x")):
            done = run_cli(
                "train",
                "--model",
                "logistic_regression",
                "--n-battles",
                "1000",
                "--n-test",
                "500",
                "--output-dir",
                name,
                cwd=tmp_path,
                env=env
                | {"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": branch, "GITHUB_SHA": "a" * 40},
            )
            assert done.returncode == 0, done.stderr
        main_run = json.loads((tmp_path / "main-run/run.json").read_text())
        other = json.loads((tmp_path / "other-run/run.json").read_text())
        client = mlflow.MlflowClient(first.tracking_uri)
        client.create_registered_model("pokemon-battle")
        version = client.create_model_version(
            "pokemon-battle",
            main_run["model_uri"],
            run_id=main_run["run_id"],
            model_id=main_run["model_uri"].removeprefix("models:/"),
        )
        client.set_registered_model_alias("pokemon-battle", "champion", version.version)

        env = cli_env(**first.state_env())
        args = ("state", "save", "--dir", str(tmp_path / "snapshot"), "--branch", "main")
        saved = run_cli(*args, cwd=tmp_path, env=env, module="ci")
        assert saved.returncode == 0, saved.stderr
        assert "saved 1 runs" in saved.stdout and "1 older runs left out" in saved.stdout
        assert client.get_run(other["run_id"]).info.lifecycle_stage == "active"  # live: untouched
        manifest = json.loads((tmp_path / "snapshot/manifest.json").read_text())
        assert manifest["kept_runs"] == [main_run["run_id"]]
        assert manifest["mlflow_version"] == mlflow.__version__
        assert not list((tmp_path / "snapshot/artifacts").rglob(f"*{other['run_id']}*"))

        restored = restore_as(second, tmp_path / "snapshot")  # its server's files: as root
        assert restored.returncode == 0, restored.stderr
        assert restored.stdout.startswith("restored the snapshot of main saved at")
        assert "same schema as the server" in restored.stdout  # no migration needed
        client = mlflow.MlflowClient(second.tracking_uri)
        champion = client.get_model_version_by_alias("pokemon-battle", "champion")
        assert champion.run_id == main_run["run_id"]
        mlflow.set_tracking_uri(second.tracking_uri)
        model = mlflow.pyfunc.load_model("models:/pokemon-battle@champion")
        assert model.metadata.run_id == main_run["run_id"]
        assert client.get_run(other["run_id"]).info.lifecycle_stage == "deleted"
    finally:
        mlflow.set_tracking_uri(None)
        first.down()


def test_restoring_without_a_snapshot_bootstraps(tmp_path, capsys, native_stores):
    code, out, _ = ci(capsys, "state", "restore", "--dir", str(tmp_path / "none"))
    assert code == 0
    assert out.startswith("no snapshot in") and "no champion yet" in out


def failing_pg_dump(tmp_path, monkeypatch) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "pg_dump"
    tool.write_text("#!/bin/sh\necho 'pg_dump: error: connection lost' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return "pg_dump failed (exit 1): pg_dump: error: connection lost"


def no_pg_dump(tmp_path, monkeypatch) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("psql", "pg_restore", "mlflow"):
        found = shutil.which(tool) or str(Path(sys.executable).parent / tool)
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    return "pg_dump: cannot run pg_dump: No such file or directory"


def another_database(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_STATE_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres")
    return "does not hold the tracking server's experiments and runs"


def compose_without_docker(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_STATE_DATABASE", "compose")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    return "pg_dump: cannot run docker: No such file or directory"


@pytest.mark.parametrize(
    "break_it", [failing_pg_dump, no_pg_dump, another_database, compose_without_docker]
)
def test_a_failing_save_keeps_the_old_snapshot_and_every_live_run(
    tmp_path, capsys, monkeypatch, native_stores, mlflow_client, saved, break_it
):
    seed(mlflow_client, f"save-{break_it.__name__}", runs=12, branch="gone")
    capsys.readouterr()  # MLflow's "View run" lines
    snapshot = good_snapshot(tmp_path, saved)
    before, runs = digest(snapshot), active_runs(mlflow_client)
    expected = break_it(tmp_path, monkeypatch)

    code, out, err = ci(capsys, "state", "save", "--dir", str(snapshot), "--branch", "main")
    assert code in (1, 2) and out == ""
    assert err.strip().splitlines()[-1] == f"error: {expected}" or expected in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert digest(snapshot) == before
    assert active_runs(mlflow_client) == runs
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".snapshot")) == []


@pytest.fixture(scope="module")
def saved(live, tmp_path_factory) -> Path:
    """One good snapshot of the shared stack, saved once: the tests copy it."""
    import mlflow

    seed(mlflow.MlflowClient(live.tracking_uri), "saved-once")
    snapshot = tmp_path_factory.mktemp("saved") / "snapshot"
    env = cli_env(**live.state_env())
    args = ("state", "save", "--dir", str(snapshot), "--branch", "main")
    done = run_cli(*args, cwd=snapshot.parent, env=env, module="ci")
    assert done.returncode == 0, done.stderr
    return snapshot


def good_snapshot(tmp_path: Path, saved: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "snapshot", symlinks=True))


def link_to_passwd(snapshot: Path) -> str:
    (snapshot / "artifacts" / "passwd").symlink_to("/etc/passwd")
    return "is a symlink or a special file"


def linked_folder(snapshot: Path) -> str:
    (snapshot / "artifacts" / "etc").symlink_to("/etc", target_is_directory=True)
    return "is a symlink or a special file"


def fifo(snapshot: Path) -> str:
    os.mkfifo(snapshot / "artifacts" / "pipe")
    return "is a symlink or a special file"


def manifest_list(snapshot: Path) -> str:
    (snapshot / "manifest.json").write_text("[]")
    return "manifest.json: the document must be an object"


def manifest_missing(snapshot: Path) -> str:
    (snapshot / "manifest.json").unlink()
    return "manifest.json: No such file or directory"


def dump_symlink(snapshot: Path) -> str:
    (snapshot / "mlflow.dump").unlink()
    (snapshot / "mlflow.dump").symlink_to("/etc/passwd")
    return "mlflow.dump is a symlink"


def newer_mlflow(snapshot: Path) -> str:
    manifest = json.loads((snapshot / "manifest.json").read_text())
    (snapshot / "manifest.json").write_text(json.dumps(manifest | {"mlflow_version": "99.0.0"}))
    return "saved by MLflow 99.0.0, newer than the installed"


@pytest.mark.parametrize(
    "forge",
    [
        link_to_passwd,
        linked_folder,
        fifo,
        manifest_list,
        manifest_missing,
        dump_symlink,
        newer_mlflow,
    ],
)
def test_a_forged_snapshot_is_refused_and_nothing_is_restored(
    tmp_path, capsys, native_stores, mlflow_client, live, saved, forge
):
    snapshot = good_snapshot(tmp_path, saved)
    expected = forge(snapshot)
    marker = mlflow_client.create_experiment(f"after-{forge.__name__}")
    files = digest(live.artifacts_dir)

    code, _, err = ci(capsys, "state", "restore", "--dir", str(snapshot))
    assert code == 2 and expected in err and err.count("error:") == 1, err
    assert mlflow_client.get_experiment(marker).lifecycle_stage == "active"  # database untouched
    assert digest(live.artifacts_dir) == files
    assert not (live.artifacts_dir / "passwd").exists()


def test_a_failed_artifact_copy_leaves_the_database_as_it_was(
    tmp_path, capsys, monkeypatch, native_stores, mlflow_client, saved
):
    snapshot = good_snapshot(tmp_path, saved)
    marker = mlflow_client.create_experiment("made-after-the-snapshot")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_STATE_ARTIFACTS", str(blocker))

    code, _, err = ci(capsys, "state", "restore", "--dir", str(snapshot))
    assert code == 1 and "copying the artifacts into" in err, err
    assert mlflow_client.get_experiment(marker).lifecycle_stage == "active"


def older_schema_snapshot(folder: Path, live: NativeStack) -> None:
    """A snapshot as an older MLflow (schema revision of August 2025) would have saved it."""
    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    name = f"{live.database}_old"
    base = live.backend_uri.rsplit("/", 1)[0]
    live._admin(f'CREATE DATABASE "{name}"')
    engine = sqlalchemy.create_engine(
        f"{base}/{name}".replace("postgresql:", "postgresql+psycopg:")
    )
    try:
        InitialBase.metadata.create_all(engine)
        config = _get_alembic_config(str(engine.url))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "71994744cf8e")
            connection.execute(
                sqlalchemy.text(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, "
                    "creation_time, last_update_time) VALUES ('from-mlflow-3.3', "
                    "'mlflow-artifacts:/old', 'active', 0, 0)"
                )
            )
    finally:
        engine.dispose()
    folder.mkdir()
    (folder / "artifacts").mkdir()
    from ci.state_stores import Stores

    Stores(f"{base}/{name}", str(folder / "artifacts")).dump(folder / "mlflow.dump")
    live._admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    manifest = {
        "saved_at": "2025-09-01T00:00:00+00:00",
        "branch": "main",
        "mlflow_version": "3.3.2",
        "kept_runs": [],
        "deleted_runs": 0,
        "artifact_files": 0,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_snapshot_from_an_older_mlflow_is_migrated_on_restore(
    tmp_path, capsys, native_stores, mlflow_client, live
):
    older_schema_snapshot(tmp_path / "old", live)
    done = restore_as(live, tmp_path / "old")
    assert done.returncode == 0, done.stderr
    assert "MLflow 3.3.2, migrated to" in done.stdout
    experiment = mlflow_client.get_experiment_by_name("from-mlflow-3.3")
    assert experiment is not None
    run = mlflow_client.create_run(experiment.experiment_id)  # the new schema serves writes
    mlflow_client.log_metric(run.info.run_id, "test_f1", 0.5)


@pytest.fixture
def compose_stand_in(tmp_path, monkeypatch):
    """``docker`` on PATH: tests/fake_docker.py, its engine told that the stack given to
    ``use`` is the compose project (its server runs as the image's user)."""
    import sysconfig

    from ci.stack import COMPOSE_PROJECT
    from tests.native_stack import shared_interpreter

    packages = sysconfig.get_paths()["purelib"]
    bin_dir = fake_docker.install(tmp_path / "docker-bin", shared_interpreter(), packages)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_HOME", str(tmp_path / "engine"))
    monkeypatch.setenv("MLFLOW_STATE_DATABASE", "compose")
    monkeypatch.delenv("MLFLOW_STATE_ARTIFACTS", raising=False)

    def use(stack: NativeStack) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
        record = {
            "database": stack.backend_uri,
            "port": stack.port,
            "artifacts": str(stack.artifacts_dir),
            "workdir": str(stack.workdir),
            "uid": stack.user,
            "pids": [],
        }
        fake_docker.register(tmp_path / "engine", COMPOSE_PROJECT, record)

    return use


def test_the_compose_path_restores_files_the_server_can_write_beside(
    tmp_path, capsys, compose_stand_in, live
):
    import mlflow

    compose_stand_in(live)
    client = mlflow.MlflowClient(live.tracking_uri)
    kept = seed(client, "compose-path")
    snapshot = tmp_path / "snapshot"
    code, _, err = ci(capsys, "state", "save", "--dir", str(snapshot), "--branch", "main")
    assert code == 0, err

    fresh = unprivileged_stack("fresh")
    try:
        compose_stand_in(fresh)
        code, _out, err = ci(capsys, "state", "restore", "--dir", str(snapshot))
        assert code == 0, err
        restored = mlflow.MlflowClient(fresh.tracking_uri)
        experiment = restored.get_experiment_by_name("compose-path")
        owners = {p.stat().st_uid for p in fresh.artifacts_dir.rglob("*")}
        assert owners == {IMAGE_UID}
        assert restored.download_artifacts(kept[0], "notes/run.txt", str(tmp_path))
        run = restored.create_run(experiment.experiment_id)  # the next workflow run's upload
        restored.log_text(run.info.run_id, "written by the server's user", "notes/new.txt")
        mode = stat.S_IMODE(fresh.artifacts_dir.stat().st_mode)
        assert mode & stat.S_IWUSR
    finally:
        fresh.down()
        remove_tree(fresh.workdir)


def test_a_restore_by_neither_root_nor_the_stores_owner_is_refused_before_a_copy(
    mlflow_client, live, saved
):
    """Its files would not be the server's to write beside: refused, naming the folder, its
    owner and what to do; the live database and artifacts stay as they were."""
    readable = Path(tempfile.mkdtemp(prefix="pb-other-"))
    readable.chmod(0o755)
    try:
        snapshot = good_snapshot(readable, saved)
        for path in [snapshot, *snapshot.rglob("*")]:  # saved private (mkdtemp): readable now
            path.chmod(0o755 if path.is_dir() else 0o644)
        marker = mlflow_client.create_experiment("made-before-a-refused-restore")
        files = digest(live.artifacts_dir)

        done = restore_as(live, snapshot, uid=OTHER_UID)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: cannot restore the artifacts into {live.artifacts_dir}: it belongs to uid "
            f"{IMAGE_UID} and this is uid {OTHER_UID}; run the restore as uid {IMAGE_UID} or "
            "as root"
        ]
        assert mlflow_client.get_experiment(marker).lifecycle_stage == "active"
        assert digest(live.artifacts_dir) == files
    finally:
        remove_tree(readable)

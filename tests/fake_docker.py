"""A ``docker`` stand-in for the compose commands the CI runs, backed by native processes.

No Docker engine exists here, so ``ci stack-up``, ``predictor-up``, ``stack-down`` and the
compose path of ``ci state`` run against this script, installed as ``docker`` on PATH. Like the
real client it talks to an "engine" that outlives it: a folder (``FAKE_DOCKER_HOME``) holding one
JSON record per compose project, naming its database, ports and the processes started for it.

- ``compose … up --build --wait [predictor]``: the postgres service is a database of its own on
  the machine's PostgreSQL (a copy of ``FAKE_DOCKER_TEMPLATE``, already migrated: the
  mlflow-migrate service's work), the mlflow service ``mlflow server`` with the compose file's
  flags on ``MLFLOW_PORT``, the predictor the compose file's command on ``PREDICTOR_PORT``;
  ``--wait`` waits for ``/health`` as the services' health checks do.
- ``compose … down -v``: stops the project's processes and drops its database.
- ``exec -T postgres <tool> -U mlflow --dbname=<db> …`` runs the PostgreSQL tool on the host
  against the project's database (``mlflow`` is the stack's own database, other names as given);
- ``run --rm --no-deps -T mlflow-migrate sh -c <script>`` runs the script with the service's
  ``MLFLOW_BACKEND_STORE_URI`` and an ``mlflow`` on PATH;
- ``FAKE_DOCKER_FAULT=unloadable-champion``: the predictor is started after the champion's
  model files were corrupted (the scenario of a champion that cannot be loaded);
  ``FAKE_DOCKER_PREDICTOR_WAIT_S`` bounds ``--wait`` on the predictor (default 120 s);
- ``cp [--archive] <src> <dest>`` copies into or out of the ``mlflow`` service's
  ``/mlartifacts`` with Docker's ownership rules: into a container, files keep a foreign owner
  (root) unless ``--archive`` makes them the container user's (docker/cli#6870); out of a
  container, they belong to the caller. Copying in and changing an owner are root's work: the
  engine is root on a runner; here they go through ``sudo`` when the caller is not root.

It runs with the environment the images are built from (this repository's locked packages),
through an interpreter every user may execute, whoever calls it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ARTIFACT_ROOT = "mlflow:/mlartifacts"
IMAGE_UID = 10001  # the user docker/Dockerfile.mlflow runs the server as
REPO_ROOT = Path(__file__).resolve().parent.parent


def install(bin_dir: Path, interpreter: str, packages: str) -> Path:
    """Put ``docker`` (this script) and ``mlflow`` (for the migrate service's scripts) into
    ``bin_dir``, both run by ``interpreter`` with ``packages`` and this repository importable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = f"{packages}{os.pathsep}{REPO_ROOT}"
    for name, module in (("docker", "tests.fake_docker"), ("mlflow", "mlflow")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nPYTHONPATH="{path}" exec "{interpreter}" -m {module} "$@"\n')
        script.chmod(0o755)
    return bin_dir


def register(home: Path, project: str, record: dict) -> None:
    """Describe a running project to the engine (for stacks the tests started themselves)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / f"{project}.json").write_text(json.dumps(record))


def main(argv: list[str]) -> int:
    project, args = _compose_args(argv)
    command, rest = args[0], args[1:]
    handlers = {"up": _up, "down": _down, "ps": _ps, "logs": _logs}
    handlers |= {"exec": _exec, "run": _run, "cp": _cp}
    if command not in handlers:
        print(f"fake docker: unsupported command {' '.join(argv)}", file=sys.stderr)
        return 1
    return handlers[command](project, rest)


def _compose_args(argv: list[str]) -> tuple[str, list[str]]:
    """``compose -f a -f b -p name [--profile p] <subcommand> …`` → (name, [subcommand, …])."""
    args = argv[1:] if argv[:1] == ["compose"] else argv
    project = "default"
    while args and args[0] in ("-f", "-p", "--profile"):
        if args[0] == "-p":
            project = args[1]
        args = args[2:]
    return project, args


def _home() -> Path:
    return Path(os.environ["FAKE_DOCKER_HOME"])


def _record(project: str) -> dict:
    path = _home() / f"{project}.json"
    if not path.exists():
        raise SystemExit(f"no such project: {project} (is the stack up?)")
    return json.loads(path.read_text())


# -- compose up / down -----------------------------------------------------------------------
def _up(project: str, args: list[str]) -> int:
    from tests.native_stack import NativeStack, predictor_command

    services = [a for a in args if not a.startswith("-") and not a.isdigit()]
    if "predictor" in services:
        record = _record(project)
        if os.environ.get("FAKE_DOCKER_FAULT") == "unloadable-champion":
            _break_the_champion(record)
        port = int(os.environ.get("PREDICTOR_PORT", "8000"))
        command = predictor_command(f"http://127.0.0.1:{record['port']}", port)
        pid = _spawn(command, Path(record["workdir"]) / "predictor.log")
        record["pids"].append(pid)
        record["predictor_port"] = port
        register(_home(), project, record)
        return _wait("predictor", f"http://127.0.0.1:{port}", pid, Path(record["workdir"]))
    workdir = _home() / project
    stack = NativeStack(workdir, port=int(os.environ.get("MLFLOW_PORT", "5000")))
    stack.create_database(template=os.environ["FAKE_DOCKER_TEMPLATE"])
    spec = stack.server_spec()
    pid = _spawn(spec.command, stack.log_path, spec.environment)
    register(
        _home(),
        project,
        {
            "database": stack.backend_uri,
            "port": stack.port,
            "artifacts": str(stack.artifacts_dir),
            "workdir": str(workdir),
            "uid": os.geteuid(),
            "pids": [pid],
        },
    )
    return _wait("mlflow", stack.tracking_uri, pid, workdir)


def _break_the_champion(record: dict) -> None:
    """A fault for the scenario "the new champion cannot be loaded": its MLmodel file in the
    artifact store stops being YAML, so the predictor's load fails as a corrupt upload would."""
    import mlflow

    client = mlflow.MlflowClient(f"http://127.0.0.1:{record['port']}")
    version = client.get_model_version_by_alias("pokemon-battle", "champion")
    model_id = version.model_id or version.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    relative = location.split("mlflow-artifacts:/", 1)[1].lstrip("/")
    (Path(record["artifacts"]) / relative / "MLmodel").write_text("{this is: [not yaml")


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start a service's process in a session of its own, so it outlives this command."""
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment | (env or {}),
            cwd=log.parent,
            start_new_session=True,
        )
    return process.pid


def _wait(service: str, url: str, pid: int, workdir: Path) -> int:
    """``--wait``: the service's health check passes, or the command fails as compose does."""
    from machine_learning.tracking import server_is_healthy

    # A scenario shortens the predictor's wait only: the mlflow server of a busy machine may
    # need longer than a predictor that will never turn healthy is given.
    bound = os.environ.get("FAKE_DOCKER_PREDICTOR_WAIT_S", "") if service == "predictor" else ""
    deadline = time.monotonic() + float(bound or 120)
    while time.monotonic() < deadline:
        if server_is_healthy(url):
            return 0
        if not _alive(pid):
            break
        time.sleep(0.2)
    log = workdir / ("predictor.log" if service == "predictor" else "mlflow-server.log")
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    print(f"{tail}\ndependency failed to start: container {service} is unhealthy", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by an earlier command)
        waited = 0
    if waited:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _down(project: str, args: list[str]) -> int:
    path = _home() / f"{project}.json"
    if not path.exists():
        return 0
    stop_project(json.loads(path.read_text()))
    path.unlink()
    return 0


def _ps(project: str, args: list[str]) -> int:
    """``ps -a --format json``: one JSON line per service, as compose prints them (the
    failure report of ``ci stack-up``/``predictor-up`` reads which service is unhealthy)."""
    from machine_learning.tracking import server_is_healthy

    path = _home() / f"{project}.json"
    record = json.loads(path.read_text()) if path.exists() else None
    if record is None:
        return 0
    services = {"mlflow": f"http://127.0.0.1:{record['port']}"}
    if "predictor_port" in record:
        services["predictor"] = f"http://127.0.0.1:{record['predictor_port']}"
    for service, url in services.items():
        health = "healthy" if server_is_healthy(url) else "unhealthy"
        print(json.dumps({"Service": service, "State": "running", "Health": health}))
    print(json.dumps({"Service": "mlflow-migrate", "State": "exited", "ExitCode": 0}))
    return 0


def _logs(project: str, args: list[str]) -> int:
    """``logs --no-color --tail N <service>``: the last lines of the service's log file."""
    service, tail = args[-1], int(args[args.index("--tail") + 1]) if "--tail" in args else 30
    name = "predictor.log" if service == "predictor" else "mlflow-server.log"
    log = Path(_record(project)["workdir"]) / name
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    print("\n".join(lines[-tail:]))
    return 0


def stop_project(record: dict) -> None:
    """Kill the project's processes and drop its database (``down -v``)."""
    import psycopg

    for pid in record["pids"]:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(pid, signal.SIGKILL)
    base, database = record["database"].rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# -- exec / run / cp -------------------------------------------------------------------------
def _exec(project: str, args: list[str]) -> int:
    args = [a for a in args if a != "-T"]
    service, tool = args[0], args[1:]
    if service != "postgres":
        return 1
    base, own = _record(project)["database"].rsplit("/", 1)
    out, skip = [], False
    for arg in tool:
        if skip:
            skip = False
        elif arg == "-U":
            skip = True
        elif arg.startswith("--dbname="):
            name = arg.split("=", 1)[1]
            out.append(f"--dbname={base}/{own if name == 'mlflow' else name}")
        else:
            out.append(arg)
    return subprocess.run(out, check=False).returncode


def _run(project: str, args: list[str]) -> int:
    args = [a for a in args if a not in ("--rm", "--no-deps", "-T")]
    if args[0] != "mlflow-migrate":
        return 1
    here = str(Path(sys.argv[0]).parent) if Path(sys.argv[0]).name == "docker" else ""
    bin_dir = os.environ.get("FAKE_DOCKER_BIN", here)
    env = os.environ | {
        "MLFLOW_BACKEND_STORE_URI": _record(project)["database"],
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(args[1:], env=env, check=False).returncode


def _cp(project: str, args: list[str]) -> int:
    archive = "--archive" in args or "-a" in args
    source, dest = [a for a in args if a not in ("--archive", "-a")]
    record = _record(project)
    if dest.startswith(ARTIFACT_ROOT):
        copied = _copy_in(source, _local(record, dest))
        owner = record["uid"] if archive else 0
        _chown(copied, owner)
        return 0
    if source.startswith(ARTIFACT_ROOT):
        _copy(str(_local(record, source)), Path(dest))
        return 0
    return 1


def _chown(paths: list[Path], owner: int) -> None:
    """The engine's ownership change: root's work (tests/native_stack.py's ``chown``)."""
    from tests.native_stack import chown

    if not all(p.lstat().st_uid == owner for p in paths):
        chown(paths, owner)


def _local(record: dict, container_path: str) -> Path:
    relative = container_path[len(ARTIFACT_ROOT) :].lstrip("/")
    return Path(record["artifacts"]) / relative


def _copy(source: str, target: Path) -> list[Path]:
    """Copy a file or a folder (``src/.``: its content) out of a container into ``target``
    (files the caller's, as the real client leaves them); the paths written."""
    origin = Path(source.removesuffix("/."))
    if origin.is_dir():
        shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
        return [target, *(target / path.relative_to(origin) for path in origin.rglob("*"))]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(origin, target)
    return [target]


def _copy_in(source: str, target: Path) -> list[Path]:
    """Copy a file or a folder (``src/.``: its content) into a container's ``target``: the
    engine's work, with root's rights (the volume belongs to the container's user), so the
    files are root's until chowned; the paths written."""
    from tests.native_stack import run_as_root

    origin = Path(source.removesuffix("/."))
    keep = ["--recursive", "--no-dereference", "--preserve=mode,timestamps"]
    if origin.is_dir():
        run_as_root(["mkdir", "-p", "--", str(target)])
        run_as_root(["cp", *keep, "--", f"{origin}/.", str(target)])
        return [target, *(target / path.relative_to(origin) for path in origin.rglob("*"))]
    run_as_root(["mkdir", "-p", "--", str(target.parent)])
    run_as_root(["cp", *keep, "--", str(origin), str(target)])
    return [target]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

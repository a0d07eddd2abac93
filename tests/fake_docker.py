"""A ``docker compose`` stand-in for the commands ``ci state`` runs, backed by a native stack.

No Docker engine exists here, so the compose path of ``ci state`` is executed against the native
stack through this script (installed as ``docker`` on PATH by tests/state_support.py):

- ``exec -T postgres <tool> -U mlflow --dbname=<db> …`` runs the PostgreSQL tool on the host
  against the stack's database (``mlflow`` is the stack's own database, other names as given);
- ``run --rm --no-deps -T mlflow-migrate sh -c <script>`` runs the script with the service's
  ``MLFLOW_BACKEND_STORE_URI`` and this environment's ``mlflow``;
- ``cp [--archive] <src> <dest>`` copies into or out of the ``mlflow`` service's
  ``/mlartifacts`` (the stack's artifact folder) with Docker's ownership rules: into a container,
  files keep a foreign owner (root here) unless ``--archive`` makes them the container user's
  (docker/cli#6870); out of a container, they belong to the caller.

Configured by FAKE_DOCKER_PG (server URL without a database), FAKE_DOCKER_DB (the stack's
database), FAKE_DOCKER_ARTIFACTS (its artifact folder), FAKE_DOCKER_UID (the image's user) and
FAKE_DOCKER_MLFLOW (the mlflow executable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ARTIFACT_ROOT = "mlflow:/mlartifacts"
IMAGE_UID = 10001  # the user docker/Dockerfile.mlflow runs the server as


def install(bin_dir: Path) -> Path:
    """Put a ``docker`` that runs this script into ``bin_dir``; returns the folder."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    script.chmod(0o755)
    return bin_dir


def environment(backend_uri: str, artifacts: Path) -> dict[str, str]:
    """The variables that point the stand-in at a native stack (its database URL, folder)."""
    base, database = backend_uri.rsplit("/", 1)
    return {
        "FAKE_DOCKER_PG": base,
        "FAKE_DOCKER_DB": database,
        "FAKE_DOCKER_ARTIFACTS": str(artifacts),
        "FAKE_DOCKER_UID": str(IMAGE_UID),
        "FAKE_DOCKER_MLFLOW": str(Path(sys.executable).parent / "mlflow"),
    }


def main(argv: list[str]) -> int:
    args = _strip_project(argv)
    command, rest = args[0], args[1:]
    if command == "exec":
        return _exec(rest)
    if command == "run":
        return _run(rest)
    if command == "cp":
        return _cp(rest)
    print(f"fake docker: unsupported command {' '.join(argv)}", file=sys.stderr)
    return 1


def _strip_project(argv: list[str]) -> list[str]:
    """``compose -f a -f b -p name <subcommand> …`` → ``<subcommand> …``."""
    args = argv[1:] if argv[:1] == ["compose"] else argv
    while args and args[0] in ("-f", "-p"):
        args = args[2:]
    return args


def _exec(args: list[str]) -> int:
    args = [a for a in args if a != "-T"]
    service, tool = args[0], args[1:]
    if service != "postgres":
        return 1
    out, skip = [], False
    for arg in tool:
        if skip:
            skip = False
        elif arg == "-U":
            skip = True
        elif arg.startswith("--dbname="):
            name = arg.split("=", 1)[1]
            name = os.environ["FAKE_DOCKER_DB"] if name == "mlflow" else name
            out.append(f"--dbname={os.environ['FAKE_DOCKER_PG']}/{name}")
        else:
            out.append(arg)
    return subprocess.run(out, check=False).returncode


def _run(args: list[str]) -> int:
    args = [a for a in args if a not in ("--rm", "--no-deps", "-T")]
    if args[0] != "mlflow-migrate":
        return 1
    mlflow_bin = str(Path(os.environ["FAKE_DOCKER_MLFLOW"]).parent)
    database = f"{os.environ['FAKE_DOCKER_PG']}/{os.environ['FAKE_DOCKER_DB']}"
    env = os.environ | {
        "MLFLOW_BACKEND_STORE_URI": database,
        "PATH": f"{mlflow_bin}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(args[1:], env=env, check=False).returncode


def _cp(args: list[str]) -> int:
    archive = "--archive" in args or "-a" in args
    source, dest = [a for a in args if a not in ("--archive", "-a")]
    if dest.startswith(ARTIFACT_ROOT):
        target = _local(dest)
        copied = _copy(source, target)
        owner = int(os.environ["FAKE_DOCKER_UID"]) if archive else 0
        for path in copied:
            os.chown(path, owner, owner, follow_symlinks=False)
        return 0
    if source.startswith(ARTIFACT_ROOT):
        _copy(str(_local(source)), Path(dest))
        return 0
    return 1


def _local(container_path: str) -> Path:
    relative = container_path[len(ARTIFACT_ROOT) :].lstrip("/")
    return Path(os.environ["FAKE_DOCKER_ARTIFACTS"]) / relative


def _copy(source: str, target: Path) -> list[Path]:
    """Copy a file or a folder (``src/.``: its content) into ``target``; the paths written."""
    origin = Path(source.removesuffix("/."))
    if origin.is_dir():
        shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
        return [target, *(target / path.relative_to(origin) for path in origin.rglob("*"))]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(origin, target)
    return [target]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Static checks of the stack definition: what cannot run here is at least validated here."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from ci.stack import AUTH_COMPOSE_FILE, COMPOSE_FILE, StackError
from tests.conftest import REPO_ROOT
from tests.native_stack import (
    MACHINE_FLAGS,
    NativeStack,
    compose_service,
    interpolate,
    replace_flags,
)

DOCKERFILES = sorted((REPO_ROOT / "docker").glob("Dockerfile.*"))
COMPOSE_FILES = [COMPOSE_FILE, AUTH_COMPOSE_FILE]
BIN = Path(sys.executable).parent


def flags(command: list[str]) -> list[str]:
    """The server's flags that do not depend on the machine."""
    return [arg for arg in command[2:] if arg.split("=", 1)[0] not in MACHINE_FLAGS]


def test_compose_files_follow_the_compose_spec():
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", *COMPOSE_FILES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfiles_have_no_hadolint_findings():
    assert len(DOCKERFILES) == 2
    done = subprocess.run(
        [BIN / "hadolint", *DOCKERFILES], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout


def test_the_native_server_runs_the_compose_files_flags(tmp_path):
    compose = compose_service("mlflow", {}).command
    native = NativeStack(tmp_path, port=5999).server_spec().command
    assert flags(native) == flags(compose)
    assert "--allowed-hosts=mlflow:*,localhost:*,127.0.0.1:*" in native
    assert "--host=127.0.0.1" in native and "--port=5999" in native


AUTH_ENV = {"MLFLOW_AUTH_ADMIN_PASSWORD": "x", "MLFLOW_FLASK_SERVER_SECRET_KEY": "y"}


def test_the_auth_variant_is_the_base_command_plus_the_auth_app(tmp_path):
    base = compose_service("mlflow", {}).command
    auth = compose_service("mlflow", AUTH_ENV, COMPOSE_FILES).command
    assert auth == [*base, "--app-name=basic-auth"]
    native = NativeStack(tmp_path, env=AUTH_ENV, compose_files=tuple(COMPOSE_FILES)).server_spec()
    assert flags(native.command) == flags(auth)


def test_lean_settings_by_default_and_overridable():
    lean = compose_service("mlflow", {})
    assert "--workers=1" in lean.command
    assert lean.environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    busy = compose_service(
        "mlflow", {"MLFLOW_WORKERS": "4", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    )
    assert "--workers=4" in busy.command
    assert busy.environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_the_database_password_never_reaches_the_native_server():
    spec = compose_service("mlflow", {"POSTGRES_PASSWORD": "hunter2"})
    assert "MLFLOW_BACKEND_STORE_URI" not in spec.environment
    assert not any("hunter2" in arg for arg in spec.command)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_security_rules_of_the_compose_files(path):
    text = path.read_text()
    assert not re.search(r"allowed-hosts[= ]+['\"]?\*", text)
    assert "--default-artifact-root" not in text
    services = yaml.safe_load(text)["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert str(value).startswith("${"), f"{name}.{key} holds a literal secret"


def test_every_secret_the_compose_files_need_is_in_env_example():
    needed = set()
    for path in COMPOSE_FILES:
        needed |= set(re.findall(r"\$\{(\w*(?:PASSWORD|SECRET)\w*):\?", path.read_text()))
    example = (REPO_ROOT / ".env.example").read_text()
    assert needed and all(re.search(rf"^{name}=", example, re.M) for name in needed)
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_unprivileged_from_pinned_bases(path):
    text = path.read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-\w+$", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "curl" not in text


def test_the_server_image_checks_health_without_curl():
    text = (REPO_ROOT / "docker/Dockerfile.mlflow").read_text()
    assert re.search(r"HEALTHCHECK .*\n\s+CMD \[\"python\".*/health", text)
    # One version: the image installs the MLflow pyproject.toml pins, read at build time.
    assert "COPY pyproject.toml" in text and '"mlflow[auth]==${version}"' in text
    assert "psycopg[binary]" in text and not re.search(r"mlflow\S*==\d", text)
    script = re.search(r'version="\$\(python -c "(.*)"\)"', text).group(1)
    read = subprocess.run(
        [sys.executable, "-c", script.replace("/tmp/pyproject.toml", "pyproject.toml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.strip() == metadata.version("mlflow")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("--workers=${MLFLOW_WORKERS:-1}", {}, "--workers=1"),
        ("--workers=${MLFLOW_WORKERS:-1}", {"MLFLOW_WORKERS": ""}, "--workers=1"),
        ("--workers=${MLFLOW_WORKERS-1}", {"MLFLOW_WORKERS": ""}, "--workers="),
        ("--workers=${MLFLOW_WORKERS:-1}", {"MLFLOW_WORKERS": "3"}, "--workers=3"),
        ('exec "$$URI" ${X}', {"X": "y"}, 'exec "$URI" y'),
    ],
)
def test_interpolation_follows_compose(text, env, expected):
    assert interpolate(text, env) == expected


def test_a_required_variable_that_is_missing_is_named():
    with pytest.raises(StackError, match=r"POSTGRES_PASSWORD is not set: set it in \.env"):
        interpolate("${POSTGRES_PASSWORD:?set it in .env}", {})


def test_replace_flags_swaps_machine_values_and_keeps_the_rest():
    assert replace_flags(["server", "--host=0.0.0.0", "--workers=1"], {"--host": "127.0.0.1"}) == [
        "server",
        "--workers=1",
        "--host=127.0.0.1",
    ]

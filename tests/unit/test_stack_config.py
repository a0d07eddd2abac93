"""Static checks of the stack definition: what cannot run here is at least validated here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from ci.stack import COMPOSE_FILE, DockerStack, StackError
from tests.conftest import REPO_ROOT, load_workflow
from tests.docker_stack import AUTH_COMPOSE_FILE
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


@pytest.mark.parametrize("service", ["mlflow", "predictor"])
def test_the_database_password_never_reaches_the_native_processes(service):
    spec = compose_service(service, {"POSTGRES_PASSWORD": "hunter2"})
    assert not any("hunter2" in value for value in spec.environment.values())
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


# -- one uv and one Python everywhere --------------------------------------------------------
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
PINNED_UV = re.compile(r"""\buv==([\w.]+)|ghcr\.io/astral-sh/uv:([\w.]+)""")


def _uv_pins(text: str) -> list[str]:
    return [pip or image for pip, image in PINNED_UV.findall(text)]


def _setup_uv_steps():
    for path in WORKFLOWS:
        for job_name, job in load_workflow(path)["jobs"].items():
            for index, step in enumerate(job.get("steps", [])):
                if step.get("uses", "").startswith("astral-sh/setup-uv@"):
                    yield f"{path.name} {job_name} step {index}", step.get("with") or {}


def uv_versions() -> dict[str, str | None]:
    """Each place that chooses uv's version, and the version it chooses (None: unpinned)."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    required = pyproject.get("tool", {}).get("uv", {}).get("required-version")
    found: dict[str, str | None] = {"pyproject.toml [tool.uv] required-version": required}
    if required and re.fullmatch(r"==[\w.]+", required):
        found["pyproject.toml [tool.uv] required-version"] = required.removeprefix("==")
    for where, with_ in _setup_uv_steps():
        found[f"{where}: setup-uv `version:`"] = with_.get("version")
    for path in DOCKERFILES:
        text = path.read_text(encoding="utf-8")
        if re.search(r"^RUN .*\buv\b", text, re.M):  # this image installs or runs uv
            pins = _uv_pins(text)
            for number, pin in enumerate(pins or [None]):
                found[f"docker/{path.name} uv pin {number + 1}"] = pin
    for name in (".ci/run", "README.md"):
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        # Every `pip install … uv`, pinned or not.
        installs = re.findall(r"pip install[^\n`]*?\s\"?uv(?:==([\w.]+))?\"?(?=[\s`]|$)", text)
        assert installs, f"{name} no longer installs uv: update this test"
        for number, pin in enumerate(installs):
            found[f"{name} `pip install uv` {number + 1}"] = pin or None
    # The README's prose ("uv 0.13.9", "[uv](…) 0.13.9").
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for number, said in enumerate(re.findall(r"\buv(?:\]\([^)]*\))? (\d+\.\d+\.\d+)", readme)):
        found[f"README.md says uv {number + 1}"] = said
    return found


def test_one_uv_version_everywhere():
    found = uv_versions()
    expected = found["pyproject.toml [tool.uv] required-version"]
    assert expected and re.fullmatch(r"\d+\.\d+\.\d+", expected), (
        f'pyproject.toml needs [tool.uv] required-version = "==X.Y.Z", has {expected!r}'
    )
    disagree = {where: pin for where, pin in found.items() if pin != expected}
    assert not disagree, f"uv {expected} (pyproject.toml), but: {disagree}"
    assert any("setup-uv" in where for where in found)
    assert any(where.startswith("docker/") for where in found)


def test_one_python_everywhere():
    path = REPO_ROOT / ".python-version"
    assert path.is_file(), ".python-version is missing: uv would use whichever Python it finds"
    python = path.read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"3\.\d+", python), f".python-version: a minor version, not {python!r}"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found: dict[str, str | None] = {}
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    found["pyproject.toml requires-python"] = python if python in requires else str(requires)
    target = pyproject["tool"]["ruff"]["target-version"]
    found["pyproject.toml [tool.ruff] target-version"] = f"{target[2]}.{target[3:]}"
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text(encoding="utf-8")
        for base in re.findall(r"^FROM python:(\d+\.\d+)", text, re.M) or [None]:
            found[f"docker/{dockerfile.name} base image"] = base
        if "uv sync" in text:  # uv in the image reads the same file (and may not download)
            copies = re.findall(r"^COPY (.*)", text, re.M)
            copied = any(".python-version" in line.split() for line in copies)
            found[f"docker/{dockerfile.name} COPY .python-version"] = python if copied else None
            no_downloads = re.search(r"\bUV_PYTHON_DOWNLOADS=never\b", text)
            found[f"docker/{dockerfile.name} UV_PYTHON_DOWNLOADS=never"] = (
                python if no_downloads else None
            )
    # The workflows' uv reads .python-version: nothing may choose another interpreter.
    for where, with_ in _setup_uv_steps():
        found[f"{where}: setup-uv `python-version:`"] = with_.get("python-version", python)
    for workflow in WORKFLOWS:
        text = workflow.read_text(encoding="utf-8")
        if "UV_PYTHON:" in text or "actions/setup-python@" in text:
            found[f"{workflow.name} UV_PYTHON or setup-python"] = None
    disagree = {where: value for where, value in found.items() if value != python}
    assert not disagree, f"Python {python} (.python-version), but: {disagree}"


# -- each image built once, and there whenever a service needs it ----------------------------
# Options that take a value, before and after the subcommand (docker compose up/run --help).
VALUE_OPTIONS = {
    *("-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory"),
    *("--wait-timeout", "-t", "--timeout", "--scale", "--pull", "--exit-code-from"),
    *("--attach", "--no-attach", "-e", "--env", "-u", "--user", "-w", "--workdir", "--name"),
    *("--entrypoint", "-v", "--volume", "-l", "--label", "--publish"),
}


@dataclass(frozen=True)
class ComposeInvocation:
    """``docker compose [-f F]… [--profile P]… up|run [options] [SERVICE…]``, parsed."""

    text: str
    files: tuple[Path, ...]
    profiles: frozenset[str]
    subcommand: str
    targets: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, files: tuple[Path, ...] = ()) -> ComposeInvocation:
        args, named, profiles, positional, subcommand = shlex.split(text), [], set(), [], ""
        while args:
            arg = args.pop(0)
            if arg in VALUE_OPTIONS:
                value = args.pop(0)
                if not subcommand and arg in ("-f", "--file"):
                    named.append(REPO_ROOT / value)
                elif not subcommand and arg == "--profile":
                    profiles.add(value)
            elif arg.startswith("-"):
                continue
            elif not subcommand:
                subcommand = arg
            else:
                positional.append(arg)
        # `run SERVICE COMMAND…` starts one service; `up SERVICE…` those named.
        targets = positional[:1] if subcommand == "run" else positional
        return cls(text, tuple(named) or files, frozenset(profiles), subcommand, tuple(targets))

    def started(self, services: dict[str, dict]) -> set[str]:
        """The services compose creates: those named (else every one whose profile is active)
        and, transitively, what they depend on."""
        chosen = set(self.targets) or {
            name
            for name, service in services.items()
            if not service.get("profiles") or self.profiles & set(service["profiles"])
        }
        pending = list(chosen)
        while pending:
            for dependency in services[pending.pop()].get("depends_on") or ():
                if dependency not in chosen:
                    chosen.add(dependency)
                    pending.append(dependency)
        return chosen


def merged_services(files: Sequence[Path]) -> dict[str, dict]:
    """The services as ``docker compose -f a -f b`` sees them (each key of a later file wins:
    enough for build, image, pull_policy, profiles and depends_on)."""
    services: dict[str, dict] = {}
    for path in files:
        for name, service in yaml.safe_load(path.read_text(encoding="utf-8"))["services"].items():
            services.setdefault(name, {}).update(service)
    return services


class RecordingExecutor:
    def __init__(self) -> None:
        self.subcommands: list[str] = []

    def execute(self, subcommand: str, env: dict, success_codes: tuple[int, ...] = (0,)) -> bytes:
        self.subcommands.append(subcommand)
        return b""


def stack_invocations() -> list[ComposeInvocation]:
    """Every ``up`` ci/stack.py runs (stack-up, predictor-up; with and without the auth
    file), and every ``up``/``run`` the README and the compose files' comments document."""
    invocations = []
    for files in ((COMPOSE_FILE,), (COMPOSE_FILE, AUTH_COMPOSE_FILE)):
        recorder = RecordingExecutor()
        stack = DockerStack("pins", compose_files=files, executor=recorder)
        stack.up()
        stack.start_predictor()
        invocations += [ComposeInvocation.parse(text, files) for text in recorder.subcommands]
    for path in (REPO_ROOT / "README.md", *COMPOSE_FILES):
        for text in re.findall(r"docker compose((?: +[^\s`#]+)+)", path.read_text()):
            invocations.append(ComposeInvocation.parse(text, (COMPOSE_FILE,)))
    started = [i for i in invocations if i.subcommand in ("up", "run")]
    assert len(started) >= 8, [i.text for i in invocations]
    return started


@pytest.mark.parametrize(
    "files", [(COMPOSE_FILE,), (COMPOSE_FILE, AUTH_COMPOSE_FILE)], ids=["base", "auth"]
)
def test_each_image_is_built_by_one_service(files):
    """Two services building one tag race in Bake ("image … already exists") on every first
    build, and a fresh runner only has first builds."""
    builders: dict[str, list[str]] = {}
    for name, service in merged_services(files).items():
        if "build" in service:
            builders.setdefault(service.get("image", f"{name} (no image:)"), []).append(name)
    shared = {image: names for image, names in builders.items() if len(names) > 1}
    assert not shared, f"built by more than one service: {shared}"


def test_a_service_using_a_built_image_starts_with_its_builder():
    """A service that only names an image another service builds never pulls it, and every
    ``up``/``run`` that starts it also starts (so builds first) the builder."""
    checked = 0
    for invocation in stack_invocations():
        services = merged_services(invocation.files)
        builder = {s["image"]: n for n, s in services.items() if "build" in s and "image" in s}
        started = invocation.started(services)
        for name in started:
            service = services[name]
            if "build" in service or service.get("image") not in builder:
                continue
            assert service.get("pull_policy") == "never", f"{name} would pull {service['image']}"
            assert builder[service["image"]] in started, (
                f"`{invocation.text.strip()}` starts {name} but not {builder[service['image']]}, "
                f"which builds {service['image']}"
            )
            checked += 1
    assert checked, "no service uses an image another one builds: update this test"

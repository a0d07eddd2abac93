"""Shared fixtures: every test starts from a clean environment."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import chdir, contextmanager, redirect_stderr, redirect_stdout
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.stack_fixtures"]
FLOOR_LINES = pytest.StashKey[list[tuple[str, bool]]]()
# Least share of lines the whole suite must run, per package and per module where a miss hurts
# most (what decides, promotes, restores and posts).
COVERAGE_FLOORS = {
    "ci/*": 90.0,
    **dict.fromkeys(
        (
            f"ci/{name}.py"
            for name in ("gate", "verdict", "bootstrap", "comment", "state", "thresholds")
        ),
        95.0,
    ),
}
LEAKY_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
)


# The suite runs a worker per core, and each worker's processes (XGBoost's n_jobs=2, OpenBLAS)
# start OpenMP threads that spin for their next task by default, on the core another worker's
# process is waiting for: measured on `train` beside two busy cores, 8.5 CPU-s spinning, 7.0
# asleep, for the same result. Every process the suite starts, act's jobs included, sleeps.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking server, credentials or GitHub Actions context leaks in from the caller."""
    for name in list(os.environ):
        # MLflow's HTTP retry settings too: a command sets its defaults in os.environ, and an
        # in-process one must not hand them to the next test.
        if name in LEAKY_VARIABLES or name.startswith(("GITHUB_", "MLFLOW_HTTP_REQUEST_")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("CI", raising=False)


def cli_env(**overrides: str) -> dict[str, str]:
    """The current (cleaned) environment plus overrides, for CLI subprocesses."""
    return dict(os.environ) | overrides


def spawn_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, module: str = "machine_learning"
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <args>`` in a new interpreter, the way a user does: for the
    tests about the process boundary (start-up, imports, stray output, real exit status)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, module: str = "machine_learning"
) -> subprocess.CompletedProcess[str]:
    """``spawn_cli`` without the new interpreter: the same ``main`` with the same environment,
    folder, streams (not a terminal) and warning display, in this process. What a command
    decides does not depend on the interpreter starting; its ~2 s of imports do, once per
    process instead of once per call. Every command also runs as a real process in the
    simulated workflow runs."""
    import importlib

    main = importlib.import_module(f"{module}.cli").main
    out, err = _text_stream(), _text_stream()
    with (
        environment(env or cli_env()),
        chdir(cwd),
        _mlflow_globals_kept(),
        warnings.catch_warnings(),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        warnings.simplefilter("default")  # printed to stderr, as an interpreter does
        warnings.showwarning = _print_warning
        code = exit_status(main, args)
    return subprocess.CompletedProcess(
        [module, *args], code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()
    )


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``env`` inside, and what it was again after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def exit_status(main: Callable[[list[str]], int], args: Sequence[str]) -> int:
    """``main(args)``'s exit status as the interpreter reports it (argparse ends with
    ``SystemExit``: 2 for bad arguments, 0 for ``--help``)."""
    try:
        return main(list(args))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _text_stream() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)


@contextmanager
def _mlflow_globals_kept() -> Iterator[None]:
    """Put back what a command changes in MLflow's module state (its tracking URI, active
    experiment and run): an exiting interpreter would drop them, the caller's stay."""
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    saved = utils._tracking_uri, fluent._active_experiment_id
    try:
        yield
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        utils._tracking_uri, fluent._active_experiment_id = saved


def actions_env(
    tmp_path: Path, sha: str, pr: int = 12, head_ref: str = "feature/types", **extra: str
) -> dict[str, str]:
    """A CLI environment as GitHub Actions gives it to a pull_request job of ``pr`` whose head
    is ``sha`` (``extra`` overrides, e.g. GITHUB_SHA: the merge commit)."""
    event = tmp_path / f"event-{sha[:6]}.json"
    event.write_text(json.dumps({"pull_request": {"number": pr, "head": {"sha": sha}}}))
    github = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": sha,
        "GITHUB_HEAD_REF": head_ref,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "owner/repo",
        "GITHUB_RUN_ID": "777",
    }
    return cli_env(**(github | extra))


def load_workflow(path: Path) -> dict:
    """A workflow file as GitHub reads it (YAML 1.1 reads the key ``on`` as true)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


@cache
def stack_backend() -> str:
    from tests.native_stack import choose_backend

    return choose_backend(os.environ)


def pytest_report_header() -> list[str]:
    """Say which stack the integration tests run against."""
    if stack_backend() == "docker":
        return ["stack: docker compose (docker-compose.yml through pytest-docker)"]
    return [
        "stack: native (no Docker engine here: the machine's PostgreSQL + mlflow server "
        "subprocesses, flags read from docker-compose.yml)"
    ]


@pytest.fixture
def github():
    """A loopback GitHub REST API (see tests/github_server.py)."""
    from tests.github_server import FakeGitHub

    fake = FakeGitHub().start()
    yield fake
    fake.stop()


# The order modules reach the workers (``--dist loadfile --no-loadscope-reorder``: the first
# module to each worker, then a second to each, then one to whichever runs short). The two long
# simulated stories go to different workers, and the pull-request story only after a module of
# other work there, so its worker is not idle while the main story's builds the runners' venv;
# then the rest longest first, so the end is short modules filling both workers.
SCHEDULE = (
    "tests/workflows/test_main_runs.py",
    "tests/integration/test_serving.py",
    "tests/workflows/test_static.py",
    "tests/workflows/test_pull_request_runs.py",
    "tests/workflows/test_monitoring_loop.py",
    "tests/workflows/test_github_rules.py",
    "tests/integration/test_state.py",
    "tests/workflows/test_standalone_runs.py",
    "tests/integration/test_gate.py",
    "tests/integration/test_stack.py",
    "tests/integration/test_train_tracking.py",
    "tests/integration/test_registry_moves.py",
    "tests/integration/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next(
            (i for i, start in enumerate(SCHEDULE) if path.startswith(start)), len(SCHEDULE)
        )

    items.sort(key=rank)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session):
    """After pytest-cov has combined the data (its wrapper runs inside this one): check the
    floors, when the whole suite ran — a selection of tests would miss them by design."""
    result = yield
    plugin = session.config.pluginmanager.getplugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    config = session.config
    selected = ("keyword", "markexpr", "lf", "deselect")  # lf: absent with -p no:cacheprovider
    whole_suite = config.args_source == pytest.Config.ArgsSource.TESTPATHS and not any(
        config.getoption(name, default=None) for name in selected
    )
    worker = hasattr(config, "workerinput")
    if controller is None or not whole_suite or worker or config.option.collectonly:
        return result
    lines = []
    for pattern, floor in COVERAGE_FLOORS.items():
        covered = controller.cov.report(include=[str(REPO_ROOT / pattern)], file=io.StringIO())
        missed = covered < floor
        session.testsfailed += missed
        lines.append(
            (f"{'FAILED: ' if missed else ''}{pattern} {covered:.1f}% (floor {floor:.0f}%)", missed)
        )
    config.stash[FLOOR_LINES] = lines
    return result


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """The floors' verdicts, after pytest-cov's table."""
    lines = config.stash.get(FLOOR_LINES, [])
    if lines:
        terminalreporter.write_sep("=", "coverage floors")
    for line, missed in lines:
        terminalreporter.write_line(line, red=missed, bold=missed)


CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver") or shutil.which(
    "chromedriver", path=os.environ.get("CHROMEWEBDRIVER", "")
)
IN_CI = os.environ.get("CI") == "true"  # read at import: the autouse fixture clears CI later


@pytest.fixture
def browser():
    """A headless chromium driven by selenium, for the pages people look at."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "needs Debian's chromium and chromium-driver (apt; .ci/run installs them)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=900,700",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()

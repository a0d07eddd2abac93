import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from tests.workflows.harness import REPO_ROOT
from tests.workflows.story import Story


@pytest.fixture(scope="session")
def runner_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runners' venv, shared by every simulated job of the test run (each job's Install
    step then syncs it in 0.7 s instead of building it in 8 s with its bytecode). Built here,
    once, under a lock the xdist workers share: uv locks a venv while it installs into it, but
    not its creation by two jobs whose checkouts differ (the second saw a half-made folder)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    venv = shared / "runner-venv"
    with (shared / "runner-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "pyvenv.cfg").exists():
            env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
            subprocess.run(
                ["uv", "sync", "--locked", "--no-dev", "--quiet"],
                cwd=REPO_ROOT,
                env=env | {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_COMPILE_BYTECODE": "1"},
                check=True,
            )
    return venv


@pytest.fixture(scope="module")
def story(tmp_path_factory, runner_venv):
    """One pretend repository per module: its runs are shared by the module's tests."""
    story = Story(tmp_path_factory.mktemp("runner"), runner_venv)
    yield story
    story.close()

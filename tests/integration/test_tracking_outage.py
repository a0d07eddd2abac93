"""Training through a tracking-server outage: the real ``mlflow server`` of a stack of its own,
stopped and started again on the same port while ``train`` runs as a real process.

A restart is ridden out (MLflow's retries, as shipped for train: failures.OUTAGE_TOLERANCE_S);
a run whose logging fails all the same is marked FAILED as soon as the server answers again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from machine_learning.contract.failures import TRAINING_MLFLOW_DEFAULTS
from tests.conftest import cli_env
from tests.native_stack import NativeStack

pytestmark = pytest.mark.integration
OUTAGE_S = 3.0  # down for this long, then the ~4 s the server takes to answer /health again
# A fit of ~2 s: the server is stopped before it ends, and the logging starts against it.
TRAINING = ["--model", "random_forest", "--n-battles", "8000", "--n-test", "500"]


class StderrLines:
    """A process's stderr read as it comes, each line with the time it arrived."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[tuple[float, str]] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        with process.stderr:
            for line in process.stderr:
                with self._arrived:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                    self._arrived.notify_all()

    def wait_for(self, text: str, timeout: float = 120) -> float:
        """When the first line containing ``text`` arrived."""
        with self._arrived:
            found = self._arrived.wait_for(lambda: self.when(text), timeout)
        assert found, f"no line with {text!r} in:\n{self.text}"
        return found

    def when(self, text: str) -> float | None:
        return next((at for at, line in self.lines if text in line), None)

    @property
    def text(self) -> str:
        self._reader.join(timeout=5)
        return "\n".join(line for _, line in self.lines)


@pytest.fixture
def own_stack(tmp_path):
    """A stack whose server this test may stop (the shared one serves other tests)."""
    stack = NativeStack(tmp_path / "stack").up()
    yield stack
    stack.down()
    shutil.rmtree(stack.workdir, ignore_errors=True)


def train(stack: NativeStack, folder: Path, experiment: str, **env: str) -> subprocess.Popen:
    """``python -m machine_learning train`` against the stack, with MLflow's retries as shipped
    for training unless ``env`` sets them (as a user can)."""
    base = {k: v for k, v in cli_env().items() if k not in TRAINING_MLFLOW_DEFAULTS}
    return subprocess.Popen(
        [sys.executable, "-m", "machine_learning", "train", *TRAINING, "--experiment", experiment],
        cwd=folder,
        env=base
        | {"CI": "true", "MLFLOW_TRACKING_URI": stack.tracking_uri}
        | {"MLFLOW_EXPERIMENT_NAME": experiment}
        | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_json(folder: Path) -> dict:
    return json.loads((folder / "outputs/run.json").read_text(encoding="utf-8"))


def test_train_rides_out_a_server_restart_and_finishes_its_run(own_stack, tmp_path):
    import mlflow

    process = train(own_stack, tmp_path, "outage")
    stderr = StderrLines(process)
    stderr.wait_for("• simulating")  # the /health probe is behind it
    own_stack.stop_server()
    down = time.monotonic()
    # Down until the logging has begun against the dead server, then OUTAGE_S more: the
    # overlap is certain whatever the machine's speed (a fast fit once outran a fixed sleep).
    logging_started = stderr.wait_for("logging the run to MLflow")
    time.sleep(OUTAGE_S)
    own_stack.start_server()
    back = time.monotonic()
    assert process.wait(timeout=120) == 0, stderr.text
    assert logging_started < back, "the outage did not overlap the logging: nothing was proved"
    record = run_json(tmp_path)
    assert record["status"] == "logged", stderr.text
    run = mlflow.MlflowClient(own_stack.tracking_uri).get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_f1"] > 0.8 and run.outputs.model_outputs  # all of it logged
    print(f"server down {back - down:.1f} s, {back - logging_started:.1f} s of it while logging")


def test_a_run_whose_logging_fails_is_marked_failed_once_the_server_is_back(own_stack, tmp_path):
    """The server dies once the run exists (held there by a lock on its params table, so the
    moment is certain) and MLflow's retries (set short here, as a user may) give up: the run
    is marked FAILED when the server answers again, not left RUNNING."""
    import mlflow
    import psycopg

    with (
        psycopg.connect(own_stack.backend_uri) as holder,
        psycopg.connect(own_stack.backend_uri, autocommit=True) as watcher,
    ):
        holder.execute("LOCK TABLE params IN EXCLUSIVE MODE")  # reads pass, writes wait
        process = train(own_stack, tmp_path, "dies", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        stderr = StderrLines(process)
        blocked_on_params(watcher)
        own_stack.stop_server(signum=9)  # a crash, mid-request
        stderr.wait_for("to mark run", timeout=30)  # logging failed; train waits for /health
        holder.rollback()
    own_stack.start_server()
    assert process.wait(timeout=120) == 3, stderr.text
    assert stderr.text.splitlines()[-1].startswith("error: tracking failed: ")
    record = run_json(tmp_path)
    assert record["status"] == "tracking failed" and record["run_id"], stderr.text
    run = mlflow.MlflowClient(own_stack.tracking_uri).get_run(record["run_id"])
    assert run.info.status == "FAILED"


def blocked_on_params(watcher, timeout: float = 120) -> None:
    """Wait until a run exists and the server waits on the lock to log its params."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = watcher.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()
        waiting = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE '%params%'"
        ).fetchone()
        if running[0] and waiting[0]:
            return
        time.sleep(0.1)
    raise AssertionError("train never reached logging its params")

"""The traffic generator against a real predictor (``serve`` as a subprocess, real HTTP).

The predictor here keeps no inference log: the predictions are asked and summed up, and asking
for outcomes is refused in one line saying how to start the predictor.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import cli_env, run_cli
from tests.docker_stack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """``serve`` of a small model folder, without an inference log; its URL."""
    root = tmp_path_factory.mktemp("traffic")
    done = run_cli(
        "train", "--n-battles", "1000", "--n-test", "200",
        "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}", cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    port = free_port()
    command = [sys.executable, "-m", "machine_learning", "serve", "--model-uri",
               str(root / "outputs" / "model"), "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, cwd=root, env=cli_env(), stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if json.loads(answer.read())["status"] == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout_s} s")


def test_battles_are_asked_in_requests_and_summed_up(predictor, tmp_path):
    done = run_cli(
        "traffic", "--predictor-url", predictor, "--battles", "1200",
        "--scenario-type", "balanced", "--seed", "5", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"1,200 battles asked of {predictor} (model version unregistered); no outcomes posted"
    )


def test_outcomes_need_a_predictor_that_keeps_a_log(predictor, tmp_path):
    done = run_cli(
        "traffic", "--predictor-url", predictor, "--battles", "10", "--outcomes", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: the predictor at {predictor} keeps no inference log (its answers carry no "
        "battle_id), so outcomes cannot be posted: start it with serve --inference-log URL"
    )


def test_a_predictor_that_does_not_answer_is_exit_3(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_cli("traffic", "--predictor-url", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert done.returncode == 3
    assert done.stderr.strip().startswith(
        f"error: the predictor at http://127.0.0.1:{port} does not answer:"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ("--predictor-url", "ftp://host"),
        ("--predictor-url", "http://127.0.0.1:1", "--battles", "0"),
        ("--predictor-url", "http://127.0.0.1:1", "--scenario-type", "close"),
        ("--battles", "10"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(tmp_path, arguments):
    done = run_cli("traffic", *arguments, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_the_battles_are_training_s_draw():
    """The generator draws and labels with datasets.battles: same seed, same battles."""
    from machine_learning.datasets import battles
    from machine_learning.simulator import Scenario
    from machine_learning.traffic import REQUEST_BATTLES, _chunks

    table = battles(1_234, Scenario.BALANCED, 9)
    chunks = list(_chunks(table, REQUEST_BATTLES))
    assert [len(chunk) for chunk in chunks] == [500, 500, 234]
    assert table.equals(battles(1_234, Scenario.BALANCED, 9))

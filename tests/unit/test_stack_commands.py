"""`ci stack-up` / `ci stack-down`, the compose path the workflow runs on GitHub.

No Docker engine exists here, so ``docker`` is a stand-in script on PATH that records each call
and answers like the real client would (JSON lines for ``ps``, log text for ``logs``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from ci.stack import COMPOSE_FILE
from tests.conftest import cli_env

FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_DOCKER_LOG"
printf 'MLFLOW_PORT=%s\n' "$MLFLOW_PORT" >> "$FAKE_DOCKER_LOG"
case "$*" in
  *" up "*) [ "$FAKE_DOCKER_MODE" = fail ] && { echo "dependency failed to start" >&2; exit 1; }
    [ "$FAKE_DOCKER_MODE" = leak ] && { echo "invalid interpolation: $(cat .env)" >&2; exit 1; } ;;
  *" ps -a --format json"*)
    echo '{"Service":"postgres","State":"running","Health":"healthy","ExitCode":0}'
    echo '{"Service":"mlflow-migrate","State":"exited","Health":"","ExitCode":1}'
    echo '{"Service":"mlflow","State":"created","Health":"","ExitCode":0}' ;;
  *" logs "*"mlflow-migrate"*) echo "alembic: can't locate revision boom" ;;
  *" logs "*"postgres"*) [ "$FAKE_DOCKER_MODE" = leak ] && cat .env ;;
  *" logs "*) echo "(no output)" ;;
esac
exit 0
"""


@pytest.fixture
def docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER)
    script.chmod(0o755)
    log = tmp_path / "docker.log"
    log.write_text("")
    return bin_dir, log


def ci(command: str, cwd, docker, mode: str = "ok") -> subprocess.CompletedProcess[str]:
    bin_dir, log = docker
    github_env = cwd / "github_env"
    env = cli_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_DOCKER_LOG=str(log),
        FAKE_DOCKER_MODE=mode,
        GITHUB_ENV=str(github_env),
    )
    return subprocess.run(
        [sys.executable, "-m", "ci", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_stack_up_writes_a_masked_password_starts_compose_and_exports_the_uri(tmp_path, docker):
    done = ci("stack-up", tmp_path, docker)
    assert done.returncode == 0, done.stderr
    written = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert set(written) == {"POSTGRES_PASSWORD", "INFERENCE_LOG_PASSWORD", "OUTCOMES_TOKEN"}
    assert len(set(written.values())) == 3  # the log's role never shares the superuser's
    for password in written.values():
        assert len(password) >= 24 and f"::add-mask::{password}" in done.stdout
    calls = docker[1].read_text().splitlines()
    assert calls[0] == (
        f"compose -f {COMPOSE_FILE} -p pokemon-battle-mlops up --build --wait --wait-timeout 300"
    )
    assert calls[1] == "MLFLOW_PORT=5000"
    assert (tmp_path / "github_env").read_text() == "MLFLOW_TRACKING_URI=http://127.0.0.1:5000\n"


def test_stack_up_keeps_an_existing_env_file_and_adds_only_what_it_lacks(tmp_path, docker):
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=chosen-by-the-team")  # no final newline
    assert ci("stack-up", tmp_path, docker).returncode == 0
    kept, *added = (tmp_path / ".env").read_text().splitlines()
    assert kept == "POSTGRES_PASSWORD=chosen-by-the-team"
    assert [line.split("=")[0] for line in added] == ["INFERENCE_LOG_PASSWORD", "OUTCOMES_TOKEN"]
    before = (tmp_path / ".env").read_text()
    assert ci("stack-up", tmp_path, docker).returncode == 0
    assert (tmp_path / ".env").read_text() == before


def test_a_failed_start_names_the_service_and_shows_its_logs(tmp_path, docker):
    done = ci("stack-up", tmp_path, docker, mode="fail")
    assert done.returncode == 1
    assert "docker compose: mlflow-migrate, mlflow failed to start" in done.stderr
    assert "--- mlflow-migrate, last log lines:\nalembic: can't locate revision boom" in done.stderr
    assert not (tmp_path / "github_env").exists()


def test_stack_down_removes_the_volumes(tmp_path, docker):
    assert ci("stack-down", tmp_path, docker).returncode == 0
    calls = docker[1].read_text().splitlines()
    assert calls[0].endswith("-p pokemon-battle-mlops --profile serve down -v")


def test_predictor_up_starts_the_serve_profile_and_exports_its_url(tmp_path, docker):
    done = ci("predictor-up", tmp_path, docker)
    assert done.returncode == 0, done.stderr
    calls = docker[1].read_text().splitlines()
    assert calls[0] == (
        f"compose -f {COMPOSE_FILE} -p pokemon-battle-mlops --profile serve up --build --wait "
        "--wait-timeout 300 predictor"
    )
    assert (tmp_path / "github_env").read_text() == "PREDICTOR_URL=http://127.0.0.1:8000\n"


def test_server_mode_chooses_the_team_server_when_the_variable_is_set(tmp_path):
    for team, expected in (("https://mlflow.example.com", "true"), ("", "false")):
        output, github_env = tmp_path / f"out-{expected}", tmp_path / f"env-{expected}"
        done = subprocess.run(
            [sys.executable, "-m", "ci", "server-mode"],
            capture_output=True,
            text=True,
            env=cli_env(
                TEAM_TRACKING_URI=team, GITHUB_OUTPUT=str(output), GITHUB_ENV=str(github_env)
            ),
            check=True,
        )
        mlflow = metadata.version("mlflow")  # the state cache's key: one MLflow's snapshots
        assert output.read_text() == (
            f"team={expected}\nstate-key=mlflow-state-{mlflow}--0-1\n"
            f"state-restore-keys<<RESTORE_KEYS\nmlflow-state-{mlflow}--\n"
            f"mlflow-state-{mlflow}-refs/heads/main-\nRESTORE_KEYS\ndefault-branch=false\n"
        )
        assert github_env.exists() == (expected == "true")
        assert ("team mode" if team else "ephemeral mode") in done.stdout
    assert (tmp_path / "env-true").read_text() == "MLFLOW_TRACKING_URI=https://mlflow.example.com\n"


@pytest.mark.parametrize(
    ("ref", "key", "restore_keys"),
    [
        (
            "refs/heads/main",
            "mlflow-state-3-refs/heads/main-7-2",
            ["mlflow-state-3-refs/heads/main-"],
        ),
        (
            "refs/heads/feature/x",
            "mlflow-state-3-refs/heads/feature/x-7-2",
            ["mlflow-state-3-refs/heads/feature/x-", "mlflow-state-3-refs/heads/main-"],
        ),
        (
            "refs/heads/a,b",
            "mlflow-state-3-refs/heads/a_b-8dc9bfb0-7-2",
            ["mlflow-state-3-refs/heads/a_b-8dc9bfb0-", "mlflow-state-3-refs/heads/main-"],
        ),
    ],
)
def test_state_cache_keys_hold_no_comma_and_stay_unique(tmp_path, ref, key, restore_keys):
    from ci.server_mode import state_cache_keys

    event = tmp_path / "event.json"
    event.write_text('{"repository": {"default_branch": "main"}}')
    env = {"GITHUB_REF": ref, "GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "2"}
    env["GITHUB_EVENT_PATH"] = str(event)
    assert state_cache_keys(env, "3") == (key, restore_keys)
    other = state_cache_keys(env | {"GITHUB_REF": "refs/heads/a_b"}, "3")[0]
    assert other != key and "," not in key


def test_build_info_describes_a_pull_request_build(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 4, "head": {"sha": "ab" * 20}}}))
    subprocess.run(
        [sys.executable, "-m", "ci", "build-info", "--output", "build.json"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env=cli_env(
            GITHUB_ACTIONS="true",
            GITHUB_EVENT_PATH=str(event),
            GITHUB_EVENT_NAME="pull_request",
            GITHUB_HEAD_REF="feat",
        ),
    )
    info = json.loads((tmp_path / "build.json").read_text())
    assert info == {
        "head_sha": "ab" * 20,
        "pr_number": 4,
        "branch": "feat",
        "event": "pull_request",
        "run_url": "",
    }


def test_the_password_is_masked_before_anything_can_print_it(tmp_path, docker):
    """Actions masks a value from the line that registers it on: a compose error that echoes
    the password must come after the mask, in the one log stdout and stderr share."""
    from tests.workflows.act import leaked_masks

    bin_dir, log = docker
    env = cli_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_DOCKER_LOG=str(log),
        FAKE_DOCKER_MODE="leak",
        GITHUB_ENV=str(tmp_path / "github_env"),
    )
    env.pop("PYTHONUNBUFFERED", None)  # a runner's Python buffers stdout into a pipe
    done = subprocess.run(
        [sys.executable, "-m", "ci", "stack-up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    password = (tmp_path / ".env").read_text().splitlines()[0].removeprefix("POSTGRES_PASSWORD=")
    assert done.returncode == 1 and password in done.stdout  # the error did echo it
    assert done.stdout.startswith(f"::add-mask::{password}\n")
    assert leaked_masks(done.stdout) == []

"""What act does not model, held to GitHub's documented behaviour: token permissions, forks,
dispatch inputs, and the two stand-in actions (tests/workflows/stand_ins/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ci.server_mode import describe_mode
from tests.conftest import load_workflow
from tests.github_server import scoped
from tests.workflows.act import (
    REPO_ROOT,
    STAND_INS,
    Event,
    _from_fork,
    _write_scopes,
    leaked_masks,
)

FORK = {"pull_request": {"number": 9, "head": {"sha": "f" * 40, "repo": {"full_name": "eve/b"}}}}
SAME = {"pull_request": {"number": 9, "head": {"sha": "f" * 40, "repo": {"full_name": "o/b"}}}}


def test_a_jobs_token_writes_only_what_its_permissions_grant_and_never_for_a_fork():
    workflows = REPO_ROOT / ".github/workflows"
    comment = load_workflow(workflows / "pr-comment.yml")["jobs"]["comment"]
    train = load_workflow(workflows / "train.yml")["jobs"]["train"]
    push = Event("push", "refs/heads/main", 1)
    fork = Event("pull_request", "refs/pull/9/merge", 2, FORK)
    assert _write_scopes(comment, push, "o/b") == {"pull-requests"}
    assert _write_scopes(train, push, "o/b") == {"deployments"}
    assert _write_scopes(comment, fork, "o/b") == set()
    assert _from_fork(fork, "o/b") and not _from_fork(
        Event("pull_request", "refs/pull/9/merge", 2, SAME), "o/b"
    )


def test_the_loopback_github_refuses_writes_outside_the_tokens_scopes(github):
    from ci.github import GitHubClient, GitHubError

    github.add_pull(5, "a" * 40)
    deployments = f"/repos/{github.repository}/deployments"
    for writes, comment_ok, deployment_ok in (
        ({"pull-requests"}, True, False),
        ({"deployments"}, False, True),
        (set(), False, False),
    ):
        client = GitHubClient(github.repository, scoped(github.token, writes), github.url)
        calls = {
            comment_ok: [("POST", f"/repos/{github.repository}/issues/5/comments", {"body": "x"})],
        }
        calls.setdefault(deployment_ok, []).append(("POST", deployments, {"ref": "a" * 40}))
        for ok, requests in calls.items():
            for method, path, body in requests:
                if ok:
                    client.request(method, path, body, retry=False)
                else:
                    with pytest.raises(GitHubError, match="403"):
                        client.request(method, path, body, retry=False)


@pytest.mark.parametrize(
    ("env", "team", "says"),
    [
        ({"TEAM_TRACKING_URI": "https://mlflow.example"}, True, "the team server"),
        (
            {"TEAM_TRACKING_URI": "https://mlflow.example", "GITHUB_ACTOR": "dependabot[bot]"},
            True,
            "Dependabot runs get no Actions secrets",
        ),
        ({"GITHUB_EVENT_NAME": "pull_request", "fork": "1"}, False, "from forks get no"),
        ({}, False, "no `MLFLOW_TRACKING_URI` repository variable"),
    ],
)
def test_the_job_summary_says_which_mlflow_and_why(tmp_path, env, team, says):
    if env.pop("fork", None):
        event = tmp_path / "event.json"
        event.write_text(json.dumps(FORK))
        env |= {"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "o/b"}
    assert describe_mode(env | {"GITHUB_ACTIONS": "true"})[0] is team
    assert says in describe_mode(env)[1]


def _step(script: Path, workspace: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a stand-in's step script as act would: in the workspace, with the runner's files."""
    files = {name: workspace.parent / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_PATH")}
    files |= {"GITHUB_ENV": workspace.parent / "github_env"}
    for path in files.values():
        path.write_text("")
    variables = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    variables |= {name: str(path) for name, path in files.items()}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=workspace,
        env=variables | {"GITHUB_WORKSPACE": str(workspace)} | env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done, {name: path.read_text() for name, path in files.items()}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    (folder / "outputs").mkdir(parents=True)
    (folder / "report.md").write_text("# report")
    (folder / "outputs" / "run.json").write_text("{}")
    (folder / "outputs" / ".hidden").write_text("secret")
    return folder


def _upload(workspace: Path, paths: str, **inputs: str) -> subprocess.CompletedProcess:
    env = {"NAME": "train-report", "PATHS": paths, "GITHUB_RUN_ID": "7"}
    env |= {"STAND_IN_ARTIFACTS": str(workspace.parent / "store")}
    return _step(STAND_INS / "upload-artifact" / "upload.py", workspace, **env | inputs)[0]


def test_upload_stand_in_keeps_paths_below_their_common_folder_and_skips_hidden_files(
    workspace,
):
    done = _upload(workspace, "report.md\noutputs/\n", IF_NO_FILES_FOUND="warn")
    assert done.returncode == 0, done.stdout + done.stderr
    archive = zipfile.ZipFile(workspace.parent / "store" / "7" / "train-report.zip")
    assert sorted(archive.namelist()) == ["outputs/run.json", "report.md"]
    again = _upload(workspace, "report.md")  # a second upload of one name is refused …
    assert again.returncode == 1 and "already exists" in again.stdout
    assert _upload(workspace, "report.md", OVERWRITE="true").returncode == 0  # … unless asked
    only_outputs = _upload(workspace, "outputs/*", OVERWRITE="true", INCLUDE_HIDDEN_FILES="true")
    assert only_outputs.returncode == 0
    names = zipfile.ZipFile(workspace.parent / "store" / "7" / "train-report.zip").namelist()
    assert sorted(names) == [".hidden", "run.json"]  # relative to their common folder


@pytest.mark.parametrize(
    ("mode", "code", "says"),
    [
        ("", 0, "::warning::No files were found"),  # the documented default: warn
        ("warn", 0, "::warning::No files were found"),
        ("error", 1, "::error::No files were found"),
        ("ignore", 0, ""),
    ],
)
def test_upload_stand_in_with_no_files_does_what_if_no_files_found_says(
    workspace, mode, code, says
):
    done = _upload(workspace, "missing.json", IF_NO_FILES_FOUND=mode)
    assert done.returncode == code
    assert (says in done.stdout) if says else done.stdout == ""
    assert not (workspace.parent / "store" / "7").exists()


def test_setup_uv_stand_in_puts_the_machines_uv_on_path_and_refuses_another_version(
    workspace, tmp_path
):
    folder = tmp_path / "uv-bin"
    folder.mkdir()
    (folder / "uv").symlink_to(Path(sys.executable).parent / "uv")
    script = STAND_INS / "setup-uv" / "setup.py"
    version = subprocess.run(
        [folder / "uv", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    done, files = _step(
        script, workspace, STAND_IN_UV_DIR=str(folder), WANTED=version, PYTHON_VERSION="3.11"
    )
    assert done.returncode == 0, done.stdout
    assert files["GITHUB_PATH"] == f"{folder}\n"
    assert f"uv-version={version}" in files["GITHUB_OUTPUT"]
    assert files["GITHUB_ENV"] == "UV_PYTHON=3.11\n"
    refused, files = _step(script, workspace, STAND_IN_UV_DIR=str(folder), WANTED="0.1.0")
    assert refused.returncode == 1 and "uv 0.1.0 was asked for" in refused.stdout
    assert files["GITHUB_PATH"] == ""


def test_a_value_printed_before_its_mask_is_a_leak():
    assert leaked_masks("::add-mask::s3cret\nusing s3cret\n") == []
    assert leaked_masks("error: password s3cret refused\n::add-mask::s3cret\n") == ["s3cret"]

"""The default branch's state lineage (ci/lineage.py) against the loopback GitHub: the cache's
snapshot is kept, a lost one comes back from the durable artifact, and a lineage that existed
is never restarted silently."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from ci.github import GitHubClient
from ci.lineage import LineageLost, record_promotion, recover


def _zip(files: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture
def client(github) -> GitHubClient:
    return GitHubClient(github.repository, github.token, github.url, sleep=lambda s: None)


def _store(github, tmp_path: Path, run_id: int, branch: str, data: bytes) -> None:
    """An mlflow-state artifact of a run on ``branch``, as the upload stand-in leaves it."""
    github.artifact_dir = tmp_path / "artifacts"
    folder = github.artifact_dir / str(run_id)
    folder.mkdir(parents=True)
    (folder / "mlflow-state.zip").write_bytes(data)
    (folder / "run.json").write_text(json.dumps({"head_branch": branch, "head_sha": "a" * 40}))


def test_a_snapshot_the_cache_restored_is_kept_without_asking_github(client, github, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "manifest.json").write_text("{}")
    assert "nothing to recover" in recover(client, tmp_path / "state", "main").line
    assert github.requests == []


def test_a_lost_snapshot_comes_back_from_the_newest_artifact_of_the_default_branch(
    client, github, tmp_path
):
    _store(github, tmp_path, 7, "main", _zip({"manifest.json": b'{"run": 7}'}))
    _store_more = tmp_path / "artifacts"
    (_store_more / "9").mkdir()  # newer, but of a branch: never the default branch's state
    (_store_more / "9" / "mlflow-state.zip").write_bytes(_zip({"manifest.json": b"{}"}))
    (_store_more / "9" / "run.json").write_text('{"head_branch": "feature"}')
    (_store_more / "8").mkdir()
    (_store_more / "8" / "mlflow-state.zip").write_bytes(
        _zip({"manifest.json": b'{"run": 8}', "artifacts/1/a.txt": b"x"})
    )
    (_store_more / "8" / "run.json").write_text('{"head_branch": "main"}')
    target = tmp_path / "state"
    done = recover(client, target, "main")
    assert "restored the `mlflow-state` artifact of run 8" in done.line
    assert json.loads((target / "manifest.json").read_text()) == {"run": 8}
    assert (target / "artifacts" / "1" / "a.txt").read_text() == "x"
    zips = [r for r in github.requests if r.path.startswith("/_blobs/")]
    assert zips and "authorization" not in zips[0].headers  # storage never sees the token


def test_no_snapshot_where_a_champion_was_promoted_is_refused_unless_asked(
    client, github, tmp_path
):
    record_promotion(client, "c" * 40, "4", "pokemon-battle")
    assert github.deployments[0]["statuses"] == [
        {"state": "success", "description": "pokemon-battle v4"}
    ]
    with pytest.raises(LineageLost, match="refusing to start a new lineage silently"):
        recover(client, tmp_path / "state", "main")
    assert not (tmp_path / "state").exists()
    done = recover(client, tmp_path / "state", "main", start_afresh=True)
    assert "starting afresh, as asked" in done.line and "ccccccc" in done.line


def test_no_snapshot_and_no_promotion_ever_starts_a_lineage(client, tmp_path):
    assert "a new lineage starts" in recover(client, tmp_path / "state", "main").line


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_zip({"../outside": b"x"}), "a path outside it"),
        (_zip({"manifest.json": b"{}"}, symlink="artifacts/link"), "non-regular file"),
        (b"not a zip", "not a zip"),
    ],
)
def test_a_forged_artifact_is_refused_and_nothing_is_written(client, github, tmp_path, data, says):
    _store(github, tmp_path, 3, "main", data)
    with pytest.raises(LineageLost, match=says):
        recover(client, tmp_path / "state", "main")
    assert not (tmp_path / "state").exists() and not (tmp_path / "outside").exists()


def test_check_lineage_refuses_to_save_over_a_snapshot_another_run_saved(tmp_path):
    from tests.conftest import run_cli

    same = ("state", "check-lineage", "--restored", "k-1", "--newest", "k-1")
    done = run_cli(*same, cwd=tmp_path, module="ci")
    assert done.returncode == 0 and "still the one this run restored (k-1)" in done.stdout
    moved = run_cli(*same[:-1], "k-2", cwd=tmp_path, module="ci")
    assert moved.returncode == 1
    (line,) = moved.stderr.strip().splitlines()
    assert "another run saved the MLflow state while this one ran (newest k-2" in line


def _dispatch_env(github, tmp_path: Path, token: str, event: dict) -> dict[str, str]:
    from tests.conftest import cli_env

    (tmp_path / "event.json").write_text(json.dumps(event))
    return cli_env() | {
        "GITHUB_TOKEN": token,
        "GITHUB_REPOSITORY": github.repository,
        "GITHUB_API_URL": github.url,
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_EVENT_NAME": "schedule",
        "GITHUB_REF_NAME": "trunk",
    }


def test_a_retraining_is_dispatched_on_the_default_branch_with_inputs_train_yml_declares(
    github, tmp_path
):
    """The loopback GitHub checks the inputs against train.yml as GitHub does (an input the
    workflow does not declare, or a choice outside its options, is a 422)."""
    from tests.conftest import REPO_ROOT, run_cli
    from tests.github_server import scoped

    github.workflows_dir = REPO_ROOT / ".github" / "workflows"
    token = scoped(github.token, {"actions"})
    args = ("dispatch-retraining", "--reason", "2 of 5 windows breached: diff_bst.psi 6.0")
    done = run_cli(*args, cwd=tmp_path, module="ci", env=_dispatch_env(github, tmp_path, token, {}))
    assert done.returncode == 0, done.stderr
    assert "dispatched train.yml on trunk" in done.stdout  # a schedule runs on the default branch
    (dispatch,) = github.dispatches
    assert dispatch == {
        "workflow": "train.yml",
        "ref": "trunk",
        "inputs": {
            "action": "train",
            "with-inference-log": "true",
            "promote": "true",
            "reason": "2 of 5 windows breached: diff_bst.psi 6.0",
        },
    }


@pytest.mark.parametrize(
    ("writes", "event", "code", "says"),
    [
        (set(), {}, 1, "the retraining was not dispatched: POST"),  # no actions: write
        ({"actions"}, {"repository": {"default_branch": "main"}}, 1, "404"),  # no such workflow
    ],
)
def test_a_dispatch_github_refuses_says_so(github, tmp_path, writes, event, code, says):
    from tests.conftest import run_cli
    from tests.github_server import scoped

    github.workflows_dir = tmp_path  # holds no train.yml
    env = _dispatch_env(github, tmp_path, scoped(github.token, writes), event)
    done = run_cli("dispatch-retraining", "--reason", "r", cwd=tmp_path, module="ci", env=env)
    assert done.returncode == code and says in done.stderr
    assert github.dispatches == []


def test_a_dispatch_without_a_default_branch_is_bad_input(github, tmp_path):
    from tests.conftest import run_cli

    env = _dispatch_env(github, tmp_path, github.token, {}) | {"GITHUB_EVENT_NAME": "push"}
    done = run_cli("dispatch-retraining", "--reason", "r", cwd=tmp_path, module="ci", env=env)
    assert done.returncode == 2 and "pass --ref BRANCH" in done.stderr

"""The privileged comment path against artifact folders a fork could forge (hypothesis).

Whatever the folder holds — symlinks out of it, FIFOs, folders where files should be, huge or
non-UTF-8 files, build.json of any shape, bodies with markers and mentions — ``ci comment
--artifact-dir`` keeps to its exit codes, leaves at most one comment of ours on the PR, and
never posts anything read from outside the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci.cli import main
from ci.comment import ACTIONS_BOT, marker

SHA = "a" * 40
PR = 7
CANARY = "canary-outside-the-artifact-5f3b"
KINDS = ["missing", "link", "fifo", "folder", "bytes", "text"]
BUILD_TEXTS = st.one_of(
    st.builds(
        lambda pr, sha: json.dumps({"head_sha": sha, "pr_number": pr}),
        st.sampled_from([PR, None, 0, -1, "7", 10**30, True, 8]),
        st.sampled_from([SHA, "b" * 40, "", None, SHA.upper()]),
    ),
    st.text(max_size=200),
    st.recursive(st.none() | st.integers() | st.text(max_size=10), st.lists, max_leaves=5).map(
        json.dumps
    ),
)
BODY_TEXTS = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda text: f"{marker('eval')}{text}<!-- x -->@octocat @org/team",
        st.text(max_size=50),
    ),
    st.just("x" * 70_000),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.github_server import FakeGitHub

    github = FakeGitHub().start()
    github.add_pull(PR, SHA)
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text(CANARY)
    yield github, outside
    github.stop()


def plant(folder: Path, name: str, kind: str, text: str, outside: Path) -> None:
    path = folder / name
    if kind == "link":
        path.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
        (path / "x").write_text(CANARY)
    elif kind == "bytes":
        path.write_bytes(b"\xff\xfe" + text.encode("utf-16"))
    elif kind == "text":
        path.write_text(text, encoding="utf-8")


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    build_kind=st.sampled_from(KINDS),
    build_text=BUILD_TEXTS,
    report_kind=st.sampled_from(KINDS),
    report_text=BODY_TEXTS,
)
def test_a_forged_artifact_never_breaks_the_contract(
    world, monkeypatch, capsys, build_kind, build_text, report_kind, report_text
):
    github, outside = world
    monkeypatch.setenv("GITHUB_TOKEN", github.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", github.repository)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    folder = Path(tempfile.mkdtemp())
    try:
        plant(folder, "build.json", build_kind, build_text, outside)
        plant(folder, "report.md", report_kind, report_text, outside)
        code = main(["comment", "--artifact-dir", str(folder), "--head-sha", SHA])
    finally:
        shutil.rmtree(folder)
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), err
    assert "Traceback" not in out + err
    if code:
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    ours = [
        c
        for c in github.comments_on(PR)
        if c["user"]["login"] == ACTIONS_BOT and c["body"].startswith(marker("train"))
    ]
    assert len(ours) <= 1
    for comment in github.comments_on(PR):
        assert CANARY not in comment["body"]
        assert comment["body"].count("<!--") == 1
        assert "@octocat" not in comment["body"]


def test_a_genuine_artifact_is_posted_once_and_edited_after(world, monkeypatch, capsys, tmp_path):
    github, outside = world
    monkeypatch.setenv("GITHUB_TOKEN", github.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", github.repository)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    plant(tmp_path, "build.json", "text", json.dumps({"head_sha": SHA, "pr_number": PR}), outside)
    plant(tmp_path, "report.md", "text", "### ✅ Gate passed, cc @octocat", outside)
    for _ in range(2):
        assert main(["comment", "--artifact-dir", str(tmp_path), "--head-sha", SHA]) == 0
    ours = [c for c in github.comments_on(PR) if c["user"]["login"] == ACTIONS_BOT]
    assert len(ours) == 1 and "Gate passed, cc @\u200boctocat" in ours[0]["body"]
    github.push(PR, "b" * 40)  # the PR moved on: superseded, not a failure
    assert main(["comment", "--artifact-dir", str(tmp_path), "--head-sha", SHA]) == 0
    assert "::notice title=No PR comment::PR #7 has moved on" in capsys.readouterr().out
    github.push(PR, SHA)

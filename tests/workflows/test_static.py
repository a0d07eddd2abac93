"""Static checks of .github/: zizmor, the workflow schema, shellcheck, pinning, permissions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, load_workflow
from tests.workflows.act import Event

GITHUB = REPO_ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def steps(path: Path):
    for job_name, job in load_workflow(path)["jobs"].items():
        for index, step in enumerate(job.get("steps", [])):
            yield job_name, index, step


def test_zizmor_finds_nothing():
    done = subprocess.run(
        [BIN / "zizmor", "--no-progress", "--offline", str(GITHUB)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_workflows_and_dependabot_follow_their_schemas():
    for schema, files in (
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.dependabot", [GITHUB / "dependabot.yml"]),
    ):
        done = subprocess.run(
            [BIN / "check-jsonschema", "--builtin-schema", schema, *files],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_blocks_pass_shellcheck_and_hold_no_expressions(path, tmp_path):
    scripts = []
    for job, index, step in steps(path):
        if "run" not in step:
            continue
        assert "${{" not in step["run"], f"{job} step {index}: pass values through env:"
        script = tmp_path / f"{job}-{index}.sh"
        script.write_text(f"#!/usr/bin/env bash\nset -e\n{step['run']}\n")
        scripts.append(script)
    assert scripts
    done = subprocess.run(
        [BIN / "shellcheck", "--shell=bash", *scripts], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_commit_with_a_version_comment(path):
    uses = re.findall(r"uses:\s*(\S+)(.*)", path.read_text())
    assert uses
    for action, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{action}: version comment"


# The first major of each action that runs on Node 24 (GitHub retires Node 20 on its hosted
# runners in 2026), read from each action's action.yml across its tags.
NODE24_MAJORS = {
    "actions/checkout": 5,
    "actions/cache": 5,
    "actions/upload-artifact": 6,
    "actions/download-artifact": 5,
    "astral-sh/setup-uv": 7,
}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_run_on_node_24(path):
    for action, major in re.findall(
        r"uses:\s*([\w-]+/[\w-]+)[^@]*@\S+\s*# v(\d+)", path.read_text()
    ):
        assert int(major) >= NODE24_MAJORS[action], f"{action} v{major} runs on Node 20"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path):
    workflow = load_workflow(path)
    assert workflow["permissions"] == {}
    assert "pull_request_target" not in workflow["on"]
    assert "write-all" not in path.read_text()
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{name} has no permissions block"
    for job, index, step in steps(path):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, f"{job} step {index}"
            assert "ref" not in step["with"], f"{job} step {index} checks out another ref"


def test_each_job_asks_only_for_what_its_steps_use():
    train, comment, tests, monitor = (
        load_workflow(GITHUB / "workflows" / f"{n}.yml")
        for n in ("train", "pr-comment", "tests", "monitor")
    )
    assert {n: j["permissions"] for n, j in train["jobs"].items()} == {
        # actions: read finds the mlflow-state artifact; deployments: write records promotions
        "train": {"contents": "read", "actions": "read", "deployments": "write"},
        "champion": {"contents": "read", "actions": "read"},
    }
    assert comment["jobs"]["comment"]["permissions"] == {
        "actions": "read",
        "contents": "read",  # checkout fails on private and internal repositories without it
        "pull-requests": "write",
    }
    assert "workflow_run.head_branch" in comment["concurrency"]["group"]
    assert comment["concurrency"]["cancel-in-progress"] is False
    assert tests["jobs"]["tests"]["permissions"] == {"contents": "read"}
    assert {n: j["permissions"] for n, j in monitor["jobs"].items()} == {
        "monitor": {"contents": "read"},
        "retrain": {"contents": "read", "actions": "write"},  # dispatches train.yml, nothing else
    }


def test_train_triggers_and_typed_dispatch_inputs():
    train = load_workflow(GITHUB / "workflows" / "train.yml")
    assert train["on"]["push"] == {"branches": ["**"]}
    assert "pull_request" in train["on"]
    assert "head.repo.full_name != github.repository" in train["jobs"]["train"]["if"]
    inputs = train["on"]["workflow_dispatch"]["inputs"]
    assert {name: spec["type"] for name, spec in inputs.items()} == {
        "action": "choice",
        "model": "choice",
        "dataset-version": "choice",
        "scenario": "choice",
        "tune": "boolean",
        "n-trials": "number",
        "promote": "boolean",
        "start-afresh": "boolean",
        "with-inference-log": "boolean",
        "reason": "string",
    }
    assert inputs["model"]["options"] == ["xgboost", "random_forest", "logistic_regression"]
    assert inputs["start-afresh"]["default"] is False


def test_concurrency_never_drops_a_dispatch_nor_leaves_a_main_commit_unpromoted():
    """act does not model concurrency: GitHub keeps one running and one pending run per group
    and a new run cancels the pending one. A dispatch gets a group of its own (its run id);
    pushes queue per ref and are never cancelled mid-run on the default branch."""
    concurrency = load_workflow(GITHUB / "workflows" / "train.yml")["concurrency"]
    group = " ".join(concurrency["group"].split())
    assert "github.event_name == 'workflow_dispatch'" in group
    assert "format('dispatch-{0}', github.run_id)" in group
    assert "format('{0}-{1}', github.event_name, github.ref)" in group
    cancel = " ".join(concurrency["cancel-in-progress"].split())
    assert "github.event_name != 'workflow_dispatch'" in cancel
    assert (
        "github.ref != format('refs/heads/{0}', github.event.repository.default_branch)" in cancel
    )
    for path in WORKFLOWS:
        for name, job in load_workflow(path)["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int), (
                f"{path.name}: {name} has no timeout"
            )


def test_a_default_branch_run_saves_its_state_only_if_no_other_run_saved_meanwhile():
    """Runs of the default branch may overlap (a dispatch beside a push): the cache save and
    the durable copy wait on the lineage check, which compares what was restored with the
    newest snapshot now."""
    train = load_workflow(GITHUB / "workflows" / "train.yml")
    for job in ("train", "champion"):
        steps = {step.get("name"): step for step in train["jobs"][job]["steps"]}
        check = steps["Check that no other run saved the state meanwhile"]
        assert "ci state check-lineage" in check["run"]
        assert steps["Look up the newest state snapshot"]["with"]["lookup-only"] is True
        assert "steps.lineage.outcome != 'failure'" in steps["Save MLflow state to the cache"]["if"]
        durable = " ".join(steps["Keep a durable copy of the state"]["if"].split())
        assert "steps.lineage.outcome != 'failure'" in durable


def test_the_comment_job_never_runs_pull_request_code():
    comment = load_workflow(GITHUB / "workflows" / "pr-comment.yml")
    assert comment["on"] == {"workflow_run": {"workflows": ["train"], "types": ["completed"]}}
    job = comment["jobs"]["comment"]
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == ['python3 -m ci comment --artifact-dir "$REPORT_DIR" --head-sha "$HEAD_SHA"']
    assert not any("uv " in run or "pip " in run for run in runs)  # nothing installed


def _jobs_that_run(story, path: Path, event_name: str, head_repository: str) -> list[str]:
    """The jobs act would run for an event of octo/battles (a dry run: no step runs)."""
    payload = {}
    ref = "refs/heads/feature"
    if event_name == "pull_request":
        head = {"sha": "f" * 40, "ref": "feature", "repo": {"full_name": head_repository}}
        payload = {"pull_request": {"number": 7, "head": head}}
        ref = "refs/pull/7/merge"
    jobs = load_workflow(path)["jobs"]
    event = Event(event_name, ref, 1, payload)
    ran = {job: story.runner.run(path.name, job, event, dry_run=True) for job in jobs}
    return [job for job, result in ran.items() if result.conclusion != "skipped"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_one_run_per_commit(story, path):
    """A pushed tag runs nothing, and a pull request from this repository runs no job (its
    commits ran on push); one from a fork does."""
    workflow = load_workflow(path)
    triggers = workflow["on"]
    if "push" in triggers:
        push = triggers["push"] or {}
        # Only a branch filter: GitHub then never runs the workflow for tags.
        assert {"branches", "branches-ignore"} & set(push), f"{path.name}: a bare push runs on tags"
        assert not {"tags", "tags-ignore"} & set(push), f"{path.name} runs on tags"
        assert _jobs_that_run(story, path, "push", "")
    if "pull_request" in triggers:
        same_repository = _jobs_that_run(story, path, "pull_request", "octo/battles")
        assert not same_repository, f"{path.name}: {same_repository} run twice on a same-repo PR"
        assert _jobs_that_run(story, path, "pull_request", "someone/battles"), "forks never tested"


def test_the_monitor_dispatches_a_training_only_from_the_default_branch_and_when_asked():
    """A dispatched monitor run is a look at the dashboard unless `retrain` is ticked, and a
    run of another branch's code or thresholds never starts a production training; a failed
    upload of the report does not hold back a decided one."""
    monitor = load_workflow(GITHUB / "workflows" / "monitor.yml")
    assert monitor["on"]["workflow_dispatch"]["inputs"]["retrain"]["default"] is False
    condition = " ".join(monitor["jobs"]["retrain"]["if"].split())
    assert condition.startswith("!cancelled() && needs.monitor.outputs.retrain == 'true'")
    assert "needs.monitor.outputs.default-branch == 'true'" in condition
    assert "(github.event_name == 'schedule' || inputs.retrain)" in condition


@pytest.mark.parametrize(("age_days", "warned"), [(50, True), (44, False), (0, False)])
def test_the_scheduled_monitor_warns_before_github_disables_its_schedule(
    tmp_path, age_days, warned
):
    """The step's own script, in a checkout whose newest commit is ``age_days`` old."""
    monitor = load_workflow(GITHUB / "workflows" / "monitor.yml")
    (step,) = [s for s in monitor["jobs"]["monitor"]["steps"] if "disables" in s.get("name", "")]
    assert step["if"] == "github.event_name == 'schedule'"
    when = f"@{int(time.time()) - age_days * 86400 - 60} +0000"
    identity = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.com"}
    env = os.environ | identity | {"GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@x.org"}
    env |= {"GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when}
    for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "old"]):
        subprocess.run(["git", *command], cwd=tmp_path, env=env, check=True)
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith(f"::warning::the newest commit is {age_days} days old") is warned
    assert bool(done.stdout) is warned

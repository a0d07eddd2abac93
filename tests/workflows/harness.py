"""Runs a workflow job's steps on this machine the way a GitHub Actions runner would.

``run:`` steps execute in order with ``bash --noprofile --norc -eo pipefail``, the step's
``env:`` and the ``${{ }}`` expressions resolved from the event payload, inputs, vars, secrets
and earlier steps' outputs, and the runner's files (GITHUB_OUTPUT, GITHUB_ENV,
GITHUB_STEP_SUMMARY, GITHUB_EVENT_PATH). ``uses:`` steps are replaced by named local stand-ins
(checkout: the working tree; cache: a folder scoped per ref like GitHub's; upload/download
artifact: a folder per run), and the step with id ``stack-up`` by the native stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine_learning.tracking import server_is_healthy
from tests import fake_docker
from tests.conftest import load_workflow
from tests.github_server import read_only
from tests.native_stack import NativeStack, free_port, predictor_command
from tests.workflows.expressions import Evaluator, condition, interpolate, standard_functions

REPO_ROOT = Path(__file__).resolve().parents[2]


class InvalidInputs(ValueError):
    """workflow_dispatch inputs GitHub itself would refuse (unknown, wrong type, not a choice)."""


class StepFailed(RuntimeError):
    pass


@dataclass
class StepResult:
    name: str
    outcome: str  # success, failure, skipped
    output: str = ""
    seconds: float = 0.0


@dataclass
class JobResult:
    conclusion: str  # success, failure, skipped
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)


@dataclass
class Event:
    """What triggered the run: name, payload, ref, commit, run id, dispatch inputs."""

    name: str
    ref: str
    sha: str
    run_id: int
    payload: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    head_ref: str = ""
    actor: str = "octocat"


@dataclass
class Runner:
    """A pretend runner with a cache and an artifact store that persist across jobs."""

    home: Path
    github_api: str
    token: str
    repository: str = "octo/battles"
    default_branch: str = "main"
    venv: Path | None = None
    vars: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    stacks: list[NativeStack] = field(default_factory=list)

    def run(self, workflow: Path, job_name: str, event: Event) -> JobResult:
        spec = load_workflow(workflow)
        inputs = validate_inputs(spec["on"], event)
        job = spec["jobs"][job_name]
        work = self.home / f"run-{event.run_id}-{job_name}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "workspace").mkdir(parents=True)
        (work / "temp").mkdir()
        state = _JobState(self, event, inputs, work)
        # A job that installs nothing gets the runner's bare python3: no site-packages at all,
        # so "standard library only" is enforced, not assumed.
        state.bare_python = not any("setup-uv" in s.get("uses", "") for s in job["steps"])
        if not _can_write(job, event, self.repository):
            state.contexts["github"]["token"] = read_only(self.token)
        # GitHub's rules: a fork's pull request gets no secrets (but GITHUB_TOKEN) and no
        # variables; a Dependabot run gets the variables but no Actions secrets.
        if _from_fork(event, self.repository):
            state.contexts["secrets"], state.contexts["vars"] = {}, {}
        if event.actor == "dependabot[bot]":
            state.contexts["secrets"] = {}
        contexts = state.contexts
        evaluator = Evaluator(contexts, standard_functions(state.status))
        if "if" in job and not condition(job["if"], evaluator):
            return JobResult("skipped")
        contexts["env"] = {
            k: interpolate(v, evaluator)
            for k, v in {**spec.get("env", {}), **job.get("env", {})}.items()
        }
        result = JobResult("success")
        for index, step in enumerate(job["steps"]):
            name = step.get("name") or step.get("uses") or f"step {index}"
            if not condition(step.get("if", "success()"), evaluator):
                result.steps.append(StepResult(name, "skipped"))
                state.record(step, "skipped", {})
                continue
            started = time.perf_counter()
            outcome, outputs, output = state.execute(step, evaluator)
            result.steps.append(StepResult(name, outcome, output, time.perf_counter() - started))
            state.record(step, outcome, outputs)
            if outcome == "failure" and not step.get("continue-on-error"):
                state.failed = True
        result.conclusion = "failure" if state.failed else "success"
        result.summary = state.summary()
        leaks = leaked_masks("".join(state.log))
        assert not leaks, f"a value reached the job log before its ::add-mask:: ({len(leaks)})"
        return result

    def cleanup(self) -> None:
        for stack in self.stacks:
            stack.down()


def _can_write(job: dict, event: Event, repository: str) -> bool:
    """Whether the job's GITHUB_TOKEN may write comments: its ``permissions:`` grant
    pull-requests (or issues) write, and the run is not a fork's pull request (always
    read-only, whatever the workflow asks)."""
    if _from_fork(event, repository):
        return False
    granted = job.get("permissions", {})
    return "write" in (granted.get("pull-requests"), granted.get("issues"))


def _from_fork(event: Event, repository: str) -> bool:
    head = event.payload.get("pull_request", {}).get("head", {}).get("repo", {})
    return event.name == "pull_request" and head.get("full_name", repository) != repository


def _bare_python(home: Path) -> Path:
    """A folder whose ``python3`` is this Python without any site-packages (``-S -E``)."""
    folder = home / "bare-python"
    folder.mkdir(exist_ok=True)
    script = folder / "python3"
    script.write_text(f'#!/bin/sh\nexec "{sys._base_executable}" -S -E "$@"\n')
    script.chmod(0o755)
    return folder


def leaked_masks(log: str) -> list[str]:
    """Values printed before the ``::add-mask::`` that hides them: Actions masks a value only
    from the line that registers it on, so an earlier line shows it in the clear."""
    lines = log.splitlines()
    return [
        value
        for index, line in enumerate(lines)
        if line.startswith("::add-mask::")
        and (value := line.removeprefix("::add-mask::"))
        and any(value in earlier for earlier in lines[:index])
    ]


def validate_inputs(triggers: dict, event: Event) -> dict:
    """Fill defaults and refuse what GitHub would refuse for a workflow_dispatch."""
    if event.name != "workflow_dispatch":
        return {}
    definitions = (triggers.get("workflow_dispatch") or {}).get("inputs", {})
    unknown = set(event.inputs) - set(definitions)
    if unknown:
        raise InvalidInputs(f"unexpected inputs {sorted(unknown)}")
    values = {}
    for name, spec in definitions.items():
        value = event.inputs.get(name, spec.get("default"))
        kind = spec.get("type", "string")
        if kind == "choice" and value not in spec["options"]:
            raise InvalidInputs(f"{name}: {value!r} is not one of {spec['options']}")
        if kind == "boolean" and not isinstance(value, bool):
            raise InvalidInputs(f"{name}: {value!r} is not a boolean")
        if kind == "number" and not isinstance(value, int | float):
            raise InvalidInputs(f"{name}: {value!r} is not a number")
        values[name] = value
    return values


class _JobState:
    """The moving parts of one job: contexts, env written by steps, files, stand-ins."""

    def __init__(self, runner: Runner, event: Event, inputs: dict, work: Path) -> None:
        self.runner, self.event, self.work = runner, event, work
        self.workspace, self.temp = work / "workspace", work / "temp"
        self.failed = False
        self.stack: NativeStack | None = None
        self.predictor: subprocess.Popen | None = None
        self.exported_env: dict[str, str] = {}
        self.summaries: list[str] = []
        self.log: list[str] = []  # every run step's output, in order: the job log
        self.bare_python = False
        # GitHub's push, dispatch and pull_request payloads all carry the repository
        event.payload.setdefault(
            "repository", {"default_branch": runner.default_branch, "full_name": runner.repository}
        )
        event_file = work / "event.json"
        event_file.write_text(json.dumps(event.payload))
        self.runner_env = {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event.name,
            "GITHUB_EVENT_PATH": str(event_file),
            "GITHUB_SHA": event.sha,
            "GITHUB_REF": event.ref,
            "GITHUB_REF_NAME": event.ref.split("/", 2)[-1],
            "GITHUB_HEAD_REF": event.head_ref,
            "GITHUB_REPOSITORY": runner.repository,
            "GITHUB_RUN_ID": str(event.run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_ACTOR": event.actor,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": runner.github_api,
            "GITHUB_WORKSPACE": str(self.workspace),
            "RUNNER_TEMP": str(self.temp),
        }
        self.contexts: dict[str, Any] = {
            "github": {
                "event_name": event.name,
                "event": event.payload,
                "sha": event.sha,
                "ref": event.ref,
                "ref_name": event.ref.split("/", 2)[-1],
                "head_ref": event.head_ref,
                "repository": runner.repository,
                "run_id": str(event.run_id),
                "run_attempt": "1",
                "token": runner.token,  # narrowed by Runner.run to the job's permissions
            },
            "inputs": inputs,
            "vars": runner.vars,
            "secrets": runner.secrets,
            "runner": {"temp": str(self.temp), "os": "Linux"},
            "steps": {},
            "env": {},
        }

    def status(self) -> str:
        return "failure" if self.failed else "success"

    def record(self, step: dict, outcome: str, outputs: dict) -> None:
        if "id" in step:
            self.contexts["steps"][step["id"]] = {
                "outcome": outcome,
                "outputs": outputs,
                "conclusion": outcome,
            }

    def summary(self) -> str:
        return "".join(self.summaries)

    def execute(self, step: dict, evaluator: Evaluator) -> tuple[str, dict, str]:
        env = {k: interpolate(v, evaluator) for k, v in step.get("env", {}).items()}
        files = {
            name: self.work / f"{name.lower()}-{id(step)}"
            for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")
        }
        for path in files.values():
            path.write_text("")
        try:
            if step.get("id") in STEP_STAND_INS:
                output = STEP_STAND_INS[step["id"]](self, files)
            elif "uses" in step:
                action = step["uses"].split("@")[0]
                with_ = {k: interpolate(v, evaluator) for k, v in step.get("with", {}).items()}
                output = ACTION_STAND_INS[action](self, with_, files)
            else:
                script = interpolate(step["run"], evaluator)
                output = self._bash(script, env, files, step.get("shell"))
            outcome = "success"
        except StepFailed as failure:
            output, outcome = str(failure), "failure"
        outputs = _parse_pairs(files["GITHUB_OUTPUT"].read_text())
        self.exported_env |= _parse_pairs(files["GITHUB_ENV"].read_text())
        self.summaries.append(files["GITHUB_STEP_SUMMARY"].read_text())
        return outcome, outputs, output

    def process_env(self, step_env: dict, files: dict) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
        for name in ("MLFLOW_TRACKING_URI", "PYTEST_CURRENT_TEST", "VIRTUAL_ENV"):
            base.pop(name, None)
        if self.runner.venv:
            base["UV_PROJECT_ENVIRONMENT"] = str(self.runner.venv)
        merged = base | self.runner_env | {k: str(v) for k, v in self.contexts["env"].items()}
        merged |= self.exported_env | {k: str(v) for k, v in step_env.items()}
        if self.stack is not None:
            docker = fake_docker.install(self.runner.home / "docker-bin")
            merged["PATH"] = f"{docker}{os.pathsep}{merged['PATH']}"
        if self.bare_python:
            merged["PATH"] = f"{_bare_python(self.runner.home)}{os.pathsep}{merged['PATH']}"
        return merged | {name: str(path) for name, path in files.items()}

    def _bash(self, script: str, env: dict, files: dict, shell: str | None) -> str:
        """Run a step as a runner does: ``shell: bash`` is ``bash --noprofile --norc -eo
        pipefail {0}``, no ``shell:`` is ``bash -e {0}`` (no pipefail!). stdout and stderr share
        one pipe, in the order the step wrote them, as in the job log."""
        path = self.work / "step.sh"
        path.write_text(script)
        flags = ["--noprofile", "--norc", "-eo", "pipefail"] if shell == "bash" else ["-e"]
        done = subprocess.run(
            ["bash", *flags, str(path)],
            cwd=self.workspace,
            env=self.process_env(env, files),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
            check=False,
        )
        output = done.stdout
        self.log.append(output)
        if done.returncode != 0:
            raise StepFailed(output)
        return output


def _parse_pairs(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` blocks, as Actions reads them."""
    pairs, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            for inner in lines:
                if inner == delimiter:
                    break
                block.append(inner)
            pairs[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            pairs[name] = value
    return pairs


# -- stand-ins for actions ------------------------------------------------------------------
def _checkout(job: _JobState, with_: dict, files: dict) -> str:
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for relative in filter(None, tracked):
        source = REPO_ROOT / relative
        if source.is_file():
            target = job.workspace / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return f"checked out {len(tracked)} files"


def _setup_uv(job: _JobState, with_: dict, files: dict) -> str:
    return "uv from this machine"


def _scopes(job: _JobState) -> list[Path]:
    """Caches a run may read: its own ref's, then the default branch's (GitHub's isolation)."""
    root = job.runner.home / "cache"
    own = root / job.event.ref.replace("/", "_")
    default = root / f"refs_heads_{job.runner.default_branch}"
    return [own] if own == default else [own, default]


def _cache_restore(job: _JobState, with_: dict, files: dict) -> str:
    key = with_["key"]
    prefixes = [p.strip() for p in with_.get("restore-keys", "").splitlines() if p.strip()]
    for scope in _scopes(job):
        candidates = sorted(scope.glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
        match = next((c for c in candidates if c.name == _safe(key)), None)
        for prefix in prefixes:
            match = match or next((c for c in candidates if c.name.startswith(_safe(prefix))), None)
        if match:
            shutil.copytree(match, job.workspace / with_["path"], dirs_exist_ok=True)
            files["GITHUB_OUTPUT"].write_text(
                f"cache-hit={'true' if match.name == _safe(key) else 'false'}\n"
                f"cache-matched-key={match.name}\n"
            )
            return f"restored {match.name} from {scope.name}"
    files["GITHUB_OUTPUT"].write_text("cache-hit=false\n")
    return "no cache"


def _cache_save(job: _JobState, with_: dict, files: dict) -> str:
    target = _scopes(job)[0] / _safe(with_["key"])
    if target.exists():
        return "cache exists: not saved (keys are immutable)"
    shutil.copytree(job.workspace / with_["path"], target)
    return f"saved {target.name}"


def _safe(key: str) -> str:
    return re.sub(r"[^\w.-]", "_", key)


def _upload(job: _JobState, with_: dict, files: dict) -> str:
    target = job.runner.home / "artifacts" / str(job.event.run_id) / with_["name"]
    paths = [p.strip() for p in with_["path"].splitlines() if p.strip()]
    for relative in paths:
        source = job.workspace / relative
        if source.is_dir():
            shutil.copytree(source, target / relative, dirs_exist_ok=True)
        elif source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    if not target.exists():
        raise StepFailed("no files found to upload")
    return f"uploaded {with_['name']}"


def _download(job: _JobState, with_: dict, files: dict) -> str:
    run_id = with_.get("run-id") or job.event.run_id
    source = job.runner.home / "artifacts" / str(run_id) / with_["name"]
    if not source.exists():
        raise StepFailed(f"artifact {with_['name']} of run {run_id} not found")
    destination = Path(with_.get("path") or job.workspace)
    if not destination.is_absolute():
        destination = job.workspace / destination
    shutil.copytree(source, destination, dirs_exist_ok=True)
    return f"downloaded {with_['name']}"


ACTION_STAND_INS: dict[str, Callable[[_JobState, dict, dict], str]] = {
    "actions/checkout": _checkout,
    "astral-sh/setup-uv": _setup_uv,
    "actions/cache/restore": _cache_restore,
    "actions/cache/save": _cache_save,
    "actions/upload-artifact": _upload,
    "actions/download-artifact": _download,
}


# -- stand-ins for steps ---------------------------------------------------------------------
def _stack_up(job: _JobState, files: dict) -> str:
    """The compose stack → the same services started natively, announced like stack-up does."""
    stack = NativeStack(job.work / "stack").up()
    job.runner.stacks.append(stack)
    job.stack = stack
    # Later steps reach it as the compose project: `docker` is tests/fake_docker.py.
    exported = {"MLFLOW_TRACKING_URI": stack.tracking_uri}
    exported |= fake_docker.environment(stack.backend_uri, stack.artifacts_dir)
    files["GITHUB_ENV"].write_text("".join(f"{k}={v}\n" for k, v in exported.items()))
    return f"native stack at {stack.tracking_uri}"


def _predictor_up(job: _JobState, files: dict) -> str:
    """The compose predictor service → the same command as a local process on the job's
    stack, awaited like ``up --wait`` and announced like ``ci predictor-up``."""
    assert job.stack is not None, "predictor-up before stack-up"
    port = free_port()
    log = job.work / "predictor.log"
    with log.open("wb") as out:
        job.predictor = subprocess.Popen(
            predictor_command(job.stack.tracking_uri, port),
            cwd=job.workspace,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not server_is_healthy(url):
        if job.predictor.poll() is not None or time.monotonic() > deadline:
            raise StepFailed(f"the predictor did not become healthy:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    files["GITHUB_ENV"].write_text(f"PREDICTOR_URL={url}\n")
    return f"predictor up: {url}"


def _stack_down(job: _JobState, files: dict) -> str:
    if job.predictor is not None:
        job.predictor.terminate()
        job.predictor.wait(timeout=20)
        job.predictor = None
    if job.stack is not None:
        job.stack.down()
        job.runner.stacks.remove(job.stack)
        job.stack = None
    return "stack down"


STEP_STAND_INS: dict[str, Callable[[_JobState, dict], str]] = {
    "stack-up": _stack_up,
    "stack-down": _stack_down,
    "predictor-up": _predictor_up,
}

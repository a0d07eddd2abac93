"""What each ``python -m ci`` command does, between the parsed arguments and the modules.

Handlers stay thin: they read the boundary files and call the module that decides. The modules
raise failures that carry their exit code (machine_learning.contract.failures); a handler only
catches one to add what it was doing, and ``main`` reports whatever escapes. Imports are
deferred so that ``comment`` (privileged job, bare interpreter) never loads mlflow, xgboost or
pandas.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from machine_learning.contract.arguments import NAME_LIMIT
from machine_learning.contract.failures import EXIT_FAILED, BadInput, Refused, first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ci.github import GitHubClient
    from ci.monitor_log import LogReader
    from ci.monitor_record import MonitorRecord


def run_comment(args: argparse.Namespace) -> int:
    from ci.comment import CommentError, Superseded, find_pull_request, upsert, upsert_from_artifact
    from machine_learning.contract.records import read_text

    github = _github(args.repo, "or --repo owner/name")
    if args.artifact_dir and not args.head_sha:
        raise BadInput("--artifact-dir needs --head-sha (the workflow run's head commit)")
    sha = args.sha or os.environ.get("GITHUB_SHA", "")
    if args.body and not args.pr and not sha:
        raise BadInput("give --pr, or --sha (or $GITHUB_SHA) to find the PR by")
    try:
        if args.artifact_dir:
            posted = upsert_from_artifact(
                github, args.artifact_dir, args.head_sha, args.kind, args.author
            )
            if posted is None:
                print(f"commit {args.head_sha[:12]} belongs to no open pull request: no comment")
                return 0
            pr, result = posted
        else:
            body = read_text(args.body)
            pr = args.pr or find_pull_request(github, sha)
            result = upsert(github, pr, body, args.kind, args.author)
    except Superseded as superseded:
        print(f"::notice title=No PR comment::{superseded}")
        return 0
    except CommentError as error:
        if not (error.read_only and args.read_only_ok):
            raise
        print(f"::warning title=No PR comment::{error}")
        return 0
    print(f"{result.action} comment {result.comment_id} on PR #{pr} {result.url}".rstrip())
    return 0


def run_gate(args: argparse.Namespace) -> int:
    from ci.gate import annotations, evaluate_gate, load_candidate, record_verdict
    from machine_learning.contract.run_record import RunRecord, is_run_id

    record = RunRecord.read(args.run_json) if args.run_json else None
    run_id = record.run_id if record else args.run_id
    if not run_id or not is_run_id(run_id):
        where = (
            f"{args.run_json} has no run id (status: {record.status!r})"
            if record
            else (f"--run-id {str(run_id)[:40]!r} is not an MLflow run id (32 hex digits)")
        )
        raise BadInput(where)
    client = _client(args, mutating=False)
    candidate = load_candidate(client, run_id, record)
    result = evaluate_gate(client, candidate, args.model_name, args.resamples)
    record_verdict(client, candidate.run_id, result)  # first: a pass MLflow lacks is never used
    result.write(args.output)
    for row in result.metrics:
        print(f"{row.metric:>14}  {row.candidate:.4f}  {row.verdict:<12}  {row.reason}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print("\n".join(annotations(result)))
    print(f"gate {result.verdict}; written to {args.output}")
    return 0 if result.passed else EXIT_FAILED


def run_report(args: argparse.Namespace) -> int:
    from ci.report import branch_history, render
    from machine_learning.contract.gate_record import GateRecord

    gate = GateRecord.read(args.gate_json)
    history = []
    if args.history > 0:
        history = branch_history(_client(args, mutating=False), gate, args.history)
    text = render(gate, history)
    args.output.write_text(text, encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(f"report written to {args.output} ({len(text):,} characters)")
    return 0


def run_thresholds(args: argparse.Namespace) -> int:
    from ci.thresholds_command import family_of, requested_changes, show, sync, update

    family = family_of(args)
    if args.action == "show":
        lines = show(_client(args, mutating=False), args.model_name, family)
    elif args.action == "sync":
        rules = list(family.from_seed_file(args.file or family.seed_file))
        lines = sync(_client(args, mutating=True), args.model_name, rules, family)
    else:
        changes = requested_changes(args, family)
        client = _client(args, mutating=True)
        lines = update(client, args.model_name, args.metric, changes, family)
    print("\n".join(lines))
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from ci.monitor import PassRules, describe, monitoring_pass
    from ci.monitor_log import LogReader
    from ci.monitor_profiles import ReferenceProfiles, champion_version
    from ci.monitor_summary import render
    from ci.monitor_thresholds import MONITOR
    from ci.monitor_tracking import log_pass
    from ci.registry import load_thresholds
    from machine_learning.contract.mlflow_names import monitoring_experiment

    if not args.inference_log:
        raise BadInput("name the inference log: --inference-log URL, or set $INFERENCE_LOG_URL")
    if args.min_breaches > args.windows:
        raise BadInput(
            f"--min-breaches {args.min_breaches} is more than --windows {args.windows}: "
            "K breaching windows must be among the last N"
        )
    rules = PassRules(args.window, args.windows, args.min_breaches, args.min_rows)
    with LogReader(args.inference_log) as log:
        client = _client(args, mutating=False)
        _require_registered_model(client, args.model_name)
        thresholds, source = load_thresholds(client, args.model_name, MONITOR)
        profiles = ReferenceProfiles(client, args.model_name)
        champion = champion_version(client, args.model_name)
        now = datetime.now(UTC)
        record = monitoring_pass(log, profiles, thresholds, rules, now, source, champion)
        record.write(args.output)  # first: the decision is on disk whatever happens next
        _workflow_outputs(record)
        if args.dashboard:
            _write_dashboard(log, record, args.dashboard)
    summary = render(record)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(summary + "\n")
    print("\n".join(describe(record)))
    print(f"monitor.json written to {args.output}")
    record_text = args.output.read_text(encoding="utf-8")
    run_id = log_pass(client, record, record_text, summary)
    print(f"MLflow run {run_id} in {monitoring_experiment(args.model_name)}")
    return record.exit_code


def _workflow_outputs(record: MonitorRecord) -> None:
    """``retrain=true|false`` and the reason, for monitor.yml's retrain job (Actions only)."""
    from ci.github import append_github_file

    if os.environ.get("GITHUB_OUTPUT"):
        reason = " ".join(record.decision.reason.split())[:NAME_LIMIT]  # one line, a dispatch input
        retrain = str(record.decision.retrain).lower()
        append_github_file("GITHUB_OUTPUT", f"retrain={retrain}", os.environ)
        append_github_file("GITHUB_OUTPUT", f"reason={reason}", os.environ)


def _write_dashboard(log: LogReader, record: MonitorRecord, path: Path) -> None:
    from datetime import datetime

    from ci import monitor_dashboard

    start = datetime.fromisoformat(record.windows[0].start)
    end = datetime.fromisoformat(record.windows[-1].end)
    changes = monitor_dashboard.served_changes(log, start, end)
    print(f"dashboard written to {monitor_dashboard.write(path, record, changes)}")


def _require_registered_model(client: MlflowClient, name: str) -> None:
    """The monitor judges a registered model's versions; it never creates one (a misspelt
    --model-name would otherwise make a model and report its log as unknown versions)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise BadInput(f"{name} is not a registered model: nothing to monitor") from None
        raise


def run_promote(args: argparse.Namespace) -> int:
    from ci.github import append_github_file
    from ci.promote import PromotionRefused, check_promotable, promote
    from ci.registry_lock import RegistryBusy
    from machine_learning.contract.gate_record import GateRecord
    from machine_learning.contract.provenance import build_context, default_branch_refusal
    from machine_learning.contract.run_record import RunRecord

    if os.environ.get("GITHUB_ACTIONS") == "true":  # a person at a laptop promotes what they mean
        refusal = default_branch_refusal(os.environ)
        if refusal:
            raise Refused(refusal)
    gate, record = GateRecord.read(args.gate_json), RunRecord.read(args.run_json)
    sha = args.sha or build_context(os.environ).git_sha
    try:
        check_promotable(gate, record.run_id or "", sha)
        move = promote(_client(args, mutating=True), args.model_name, gate, str(args.pr or ""))
    except (PromotionRefused, RegistryBusy) as error:
        raise Refused(f"promotion refused: {error}") from None
    print(move.describe(f"promoted run {gate.candidate.run_id}"))
    if os.environ.get("GITHUB_OUTPUT"):  # for the step that records the promotion
        append_github_file("GITHUB_OUTPUT", f"version={move.champion}", os.environ)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from ci.promote import PromotionRefused, rollback
    from ci.registry_lock import RegistryBusy

    try:
        move = rollback(_client(args, mutating=True), args.model_name, args.expect_champion)
    except (PromotionRefused, RegistryBusy) as error:
        raise Refused(f"rollback refused: {error}") from None
    print(move.describe("rolled back"))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ci.github import append_github_file
    from ci.promote import PromotionRefused, rollback
    from ci.registry import load_thresholds, version_by_alias
    from ci.registry_lock import RegistryBusy
    from ci.verify import (
        PredictorClient,
        VerifyFailed,
        canary_scores,
        judge_canary,
        smoke,
        wait_for_version,
    )
    from machine_learning.contract.mlflow_names import CHAMPION, PARAM_SCENARIO_TYPE

    predictor_url = _predictor_url(args.predictor_url, os.environ)
    client = _client(args, mutating=True)
    champion = version_by_alias(client, args.model_name, CHAMPION)
    expected = args.expect_version or (str(champion.version) if champion else "")
    if not expected:
        raise BadInput(f"{args.model_name} has no {CHAMPION}: nothing to verify")
    service = PredictorClient(predictor_url, synthetic=True)
    try:
        wait_for_version(service, expected, args.timeout)
        smoke(service, expected)
        run_id = client.get_model_version(args.model_name, expected).run_id
        scenario = client.get_run(run_id).data.params.get(PARAM_SCENARIO_TYPE, "random")
        rules, _ = load_thresholds(client, args.model_name)
        lines = judge_canary(canary_scores(service, expected, scenario, args.canary_battles), rules)
    except VerifyFailed as failed:
        try:
            move = rollback(client, args.model_name, expected)
            outcome = move.describe(f"rolled back v{expected}")
        except (PromotionRefused, RegistryBusy) as refused:
            outcome = f"could not roll back: {refused}; {_champion_now(client, args.model_name)}"
        print(f"::error title=Verification of v{expected} failed::{failed}; {outcome}")
        summary = f"### ❌ v{expected} failed verification\n\n{failed}\n\n{outcome}\n"
        append_github_file("GITHUB_STEP_SUMMARY", summary, os.environ)
        return EXIT_FAILED
    print("\n".join(lines))
    print(f"verified: the predictor serves v{expected} and it meets every floor")
    return 0


def _champion_now(client: MlflowClient, name: str) -> str:
    """What the registry says now, re-read after a refused rollback: another move (or a
    concurrent verify's rollback) may have changed the champion since this one was read."""
    from ci.registry import version_by_alias
    from machine_learning.contract.mlflow_names import CHAMPION

    try:
        champion = version_by_alias(client, name, CHAMPION)
    except Exception as error:  # the line is already about a failure: say this one too
        return f"the registry could not be re-read ({first_line(error)})"
    return f"v{champion.version} is {CHAMPION} now" if champion else f"{name} has no {CHAMPION}"


def _predictor_url(given: str | None, env: Mapping[str, str]) -> str:
    """The predictor to verify. In a workflow it must be named: a team-mode run without the
    PREDICTOR_URL variable would otherwise verify whatever answers on the runner (nothing)."""
    if given:
        return given
    if env.get("GITHUB_ACTIONS") == "true":
        raise BadInput(
            "no predictor to verify: in team mode set the repository variable PREDICTOR_URL "
            "to the team's predictor (ci predictor-up sets it for the stack)"
        )
    from ci.stack import PREDICTOR_PORT

    return f"http://127.0.0.1:{PREDICTOR_PORT[1]}"


def run_state(args: argparse.Namespace) -> int:
    from ci.state import restore, save
    from ci.state_stores import Stores
    from machine_learning.contract.provenance import build_context

    if args.action == "recover":
        return _recover_state(args)
    if args.action == "check-lineage":
        return _check_lineage(args.restored, args.newest)
    stores = Stores(args.database, args.artifacts)
    if args.action == "restore":
        print(restore(stores, args.dir))
        return 0
    branch = args.branch or build_context(os.environ).branch
    print(save(_client(args, mutating=True), stores, args.dir, args.model_name, branch))
    return 0


def _github(repo: str | None = None, hint: str = "a workflow step's env") -> GitHubClient:
    """The repository's REST API with the job's token, as Actions hands them to a step
    (``repo`` overrides $GITHUB_REPOSITORY; ``hint`` says where else they may come from)."""
    from ci.github import GitHubClient

    token = os.environ.get("GITHUB_TOKEN", "")
    repo = repo or os.environ.get("GITHUB_REPOSITORY", "")
    if not token or not repo:
        raise BadInput(f"set GITHUB_TOKEN and GITHUB_REPOSITORY ({hint})")
    return GitHubClient(repo, token, os.environ.get("GITHUB_API_URL", "https://api.github.com"))


def _recover_state(args: argparse.Namespace) -> int:
    """``state recover``: on the default branch, the lineage's snapshot or a refusal."""
    from ci.github import GitHubError
    from ci.lineage import recover
    from machine_learning.contract.provenance import event_payload, is_default_branch

    if not is_default_branch(os.environ):
        print("not the default branch: a branch starts from the default branch's snapshot")
        return 0
    branch = event_payload(os.environ).default_branch
    try:
        done = recover(_github(), args.dir, branch, start_afresh=args.start_afresh == "true")
    except GitHubError as error:
        raise Refused(f"cannot tell whether the state's lineage survives: {error}") from None
    print(done.line)
    return 0


def _check_lineage(restored: str, newest: str) -> int:
    """``state check-lineage``: this run's snapshot may replace the newest one only if that is
    the one it started from (runs of the default branch may overlap: see train.yml)."""
    if newest != restored:
        raise Refused(
            f"another run saved the MLflow state while this one ran (newest {newest or 'none'}, "
            f"this run restored {restored or 'none'}): this run's snapshot is not saved, so a "
            "promotion or rollback it made is lost with its stack; re-run it"
        )
    print(f"the newest snapshot is still the one this run restored ({restored})")
    return 0


def run_record_promotion(args: argparse.Namespace) -> int:
    from ci.github import GitHubError
    from ci.lineage import record_promotion
    from machine_learning.contract.provenance import build_context

    sha = build_context(os.environ).git_sha
    try:
        url = record_promotion(_github(), sha, args.version, args.model_name)
    except GitHubError as error:
        raise Refused(f"the promotion of v{args.version} was not recorded: {error}") from None
    print(
        f"recorded: {args.model_name} v{args.version} at {sha[:7]} is deployed to champion ({url})"
    )
    return 0


def run_dispatch_retraining(args: argparse.Namespace) -> int:
    """Ask train.yml for a training on the default branch, with the inference log as data."""
    from ci.github import GitHubError

    ref = args.ref or _default_branch(os.environ)
    inputs = {
        "action": "train",
        "with-inference-log": "true",
        "promote": "true",
        "reason": args.reason,
    }
    try:
        _github().dispatch_workflow(args.workflow, ref, inputs)
    except GitHubError as error:
        raise Refused(f"the retraining was not dispatched: {error}") from None
    print(f"dispatched {args.workflow} on {ref}: {args.reason}")
    return 0


def _default_branch(env: Mapping[str, str]) -> str:
    """The repository's default branch, from the event (a scheduled run is on it)."""
    from machine_learning.contract.provenance import event_payload

    branch = event_payload(env).default_branch
    if not branch and env.get("GITHUB_EVENT_NAME") == "schedule":
        branch = env.get("GITHUB_REF_NAME", "")
    if not branch:
        raise BadInput("the event names no default branch: pass --ref BRANCH")
    return branch


def run_server_mode(args: argparse.Namespace) -> int:
    from ci.github import append_github_file
    from ci.server_mode import describe_mode, state_cache_keys
    from machine_learning.contract.provenance import is_default_branch

    team, summary = describe_mode(os.environ)
    append_github_file("GITHUB_OUTPUT", f"team={'true' if team else 'false'}", os.environ)
    # The state cache's keys: a snapshot is restored only by the MLflow that saved it.
    key, restore_keys = state_cache_keys(os.environ, metadata.version("mlflow"))
    append_github_file("GITHUB_OUTPUT", f"state-key={key}", os.environ)
    block = "\n".join(["state-restore-keys<<RESTORE_KEYS", *restore_keys, "RESTORE_KEYS"])
    append_github_file("GITHUB_OUTPUT", block, os.environ)
    # For the workflow's `if:`s: its own comparison of refs ignores case (`Main` passes).
    on_default = "true" if is_default_branch(os.environ) else "false"
    append_github_file("GITHUB_OUTPUT", f"default-branch={on_default}", os.environ)
    if team:
        uri = os.environ["TEAM_TRACKING_URI"]
        append_github_file("GITHUB_ENV", f"MLFLOW_TRACKING_URI={uri}", os.environ)
    append_github_file("GITHUB_STEP_SUMMARY", summary, os.environ)
    print(
        "team mode: training against the MLFLOW_TRACKING_URI variable"
        if team
        else "ephemeral mode: the repository's compose stack, state carried by the cache"
    )
    return 0


def run_stack_up(args: argparse.Namespace) -> int:
    from ci.github import append_github_file
    from ci.stack import write_env_file

    write_env_file(Path(".env"))
    stack = _on_compose_stack("up")
    append_github_file("GITHUB_ENV", f"MLFLOW_TRACKING_URI={stack.tracking_uri}", os.environ)
    print(f"stack up: MLflow at {stack.tracking_uri}")
    return 0


def run_predictor_up(args: argparse.Namespace) -> int:
    from ci.github import append_github_file
    from ci.stack import PREDICTOR_PORT, published_port

    # Exported first: if the predictor fails to come up (it cannot load the new champion),
    # the verify step still knows where to look, finds out why, and rolls back.
    url = f"http://127.0.0.1:{published_port(os.environ, PREDICTOR_PORT)}"
    append_github_file("GITHUB_ENV", f"PREDICTOR_URL={url}", os.environ)
    _on_compose_stack("start_predictor")
    print(f"predictor up: {url}")
    return 0


def run_stack_down(args: argparse.Namespace) -> int:
    _on_compose_stack("down")
    return 0


def _on_compose_stack(step: str):
    """``step`` (a DockerStack method) on the project's compose stack, published on the ports
    ``$MLFLOW_PORT`` / ``$PREDICTOR_PORT`` name (5000 / 8000 by default); a failure is exit 1."""
    from ci.stack import (
        COMPOSE_PROJECT,
        MLFLOW_PORT,
        PREDICTOR_PORT,
        DockerStack,
        published_port,
    )

    stack = DockerStack(
        COMPOSE_PROJECT,
        port=published_port(os.environ, MLFLOW_PORT),
        predictor_port=published_port(os.environ, PREDICTOR_PORT),
    )
    getattr(stack, step)()
    return stack


def run_build_info(args: argparse.Namespace) -> int:
    from machine_learning.contract.build_info import BuildInfo
    from machine_learning.contract.provenance import build_context

    try:
        info = BuildInfo.of(build_context(os.environ))
    except ValueError as error:
        raise BadInput(f"cannot describe this build: {error}") from None
    info.write(args.output)
    print(f"build info written to {args.output}")
    return 0


COMMANDS = {
    "server-mode": run_server_mode,
    "stack-up": run_stack_up,
    "stack-down": run_stack_down,
    "predictor-up": run_predictor_up,
    "build-info": run_build_info,
    "record-promotion": run_record_promotion,
    "dispatch-retraining": run_dispatch_retraining,
    "state": run_state,
    "comment": run_comment,
    "gate": run_gate,
    "report": run_report,
    "thresholds": run_thresholds,
    "promote": run_promote,
    "rollback": run_rollback,
    "verify": run_verify,
    "monitor": run_monitor,
}


def _client(args: argparse.Namespace, mutating: bool):
    """An MLflow client for the resolved tracking URI; a command that changes state never
    falls back to the embedded store (it would report success on the wrong store)."""
    from machine_learning.tracking import command_client

    return command_client(args.tracking_uri, allow_fallback=not mutating)

"""Command line of the CI toolkit: ``python -m ci <command>``.

Each command is one workflow step and runs the same on a laptop. The parser checks every
argument it can; the modules decide; ``main`` turns whatever escapes into one line and an exit
code (machine_learning.failures). Imports are deferred so that ``comment`` (privileged job,
bare interpreter) never loads mlflow, xgboost or pandas.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

from ci.registry import REGISTERED_MODEL
from machine_learning.arguments import (
    DefaultsOnce,
    OneLineErrorParser,
    int_in,
    output_path,
    positive_int,
)
from machine_learning.failures import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    Failure,
    bound_http_time,
    run_command,
)

OUTPUTS = Path("outputs")
ACTIONS_BOT = "github-actions[bot]"  # ci.comment.ACTIONS_BOT; not imported: --help stays light
RESAMPLES = int_in(100, 100_000, "fewer make the interval meaningless, more take minutes")
HISTORY = int_in(0, 200, "a PR comment has room for about 200 rows")
MUTATING = "changes the registry: never falls back to the embedded store"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m ci", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    tracked = argparse.ArgumentParser(add_help=False)
    tracked.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else the compose server, "
        "a local server, the embedded store (read-only commands only)",
    )
    tracked.add_argument("--model-name", default=REGISTERED_MODEL, help="registered model")

    def add(name: str, help: str, description: str = "", parents=(tracked,)):
        return commands.add_parser(
            name,
            help=help,
            description=description or help,
            parents=list(parents),
            formatter_class=DefaultsOnce,
            epilog=EXIT_CODES,
        )

    _thresholds_parser(add, tracked)
    gate = add(
        "gate",
        "judge a run against the thresholds and the champion",
        "Re-score the champion on the candidate's exact test battles, compare with a paired "
        "bootstrap, log the verdict to the run, then write gate.json; exit 1 when it fails.",
    )
    source = gate.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-json", type=Path, help="run.json written by the training CLI")
    source.add_argument("--run-id", help="an MLflow run id (32 hex digits)")
    gate.add_argument(
        "--output", type=output_path, default=OUTPUTS / "gate.json", help="verdict file"
    )
    gate.add_argument("--resamples", type=RESAMPLES, default=1000, help="bootstrap resamples")

    report = add(
        "report",
        "render the markdown report from gate.json",
        "Markdown for the PR comment and the job summary (appended to $GITHUB_STEP_SUMMARY).",
    )
    report.add_argument("--gate-json", type=Path, default=OUTPUTS / "gate.json", help="gate output")
    report.add_argument(
        "--output", type=output_path, default=OUTPUTS / "report.md", help="markdown file"
    )
    report.add_argument("--history", type=HISTORY, default=20, help="earlier runs to list")
    _comment_parser(add)
    promote = add(
        "promote",
        "register the gated run's model and make it champion",
        "Refuses a run whose gate did not pass, whose commit is not the one being promoted, "
        "or whose gate judged it against a champion that has moved since; re-running the same "
        f"promotion is a no-op. {MUTATING}.",
    )
    promote.add_argument(
        "--run-json", type=Path, default=OUTPUTS / "run.json", help="training run.json"
    )
    promote.add_argument("--gate-json", type=Path, default=OUTPUTS / "gate.json", help="verdict")
    promote.add_argument(
        "--sha", help="commit being promoted (default: $GITHUB_SHA, else the local git HEAD)"
    )
    promote.add_argument("--pr", type=positive_int, help="PR number to tag the version with")
    rollback = add(
        "rollback",
        "swap champion and previous-champion back",
        f"Move champion back to the previous champion in one step. {MUTATING}.",
    )
    rollback.add_argument(
        "--expect-champion",
        help="the champion version being rolled back; refuse if it is another (default: the "
        "one read when the command starts)",
    )
    _state_parser(add)
    _workflow_step_parsers(add)
    return parser


def _thresholds_parser(add, tracked: argparse.ArgumentParser) -> None:
    thresholds = add(
        "thresholds",
        "show, set or sync the gate thresholds in MLflow",
        "Gate thresholds live in MLflow as registered-model tags gate.<metric>; "
        "ci/thresholds.toml only seeds them. set and sync change the registry: they never fall "
        "back to the embedded store.",
        parents=(),
    )
    actions = thresholds.add_subparsers(
        dest="action", required=True, parser_class=OneLineErrorParser
    )
    actions.add_parser(
        "show",
        help="list them (or what the first gate would seed)",
        parents=[tracked],
        formatter_class=DefaultsOnce,
    )
    sync = actions.add_parser(
        "sync",
        help="make the tags equal to a TOML file (stale ones removed)",
        parents=[tracked],
        formatter_class=DefaultsOnce,
    )
    sync.add_argument("--file", type=Path, help="TOML file (default: ci/thresholds.toml)")
    one = actions.add_parser(
        "set",
        help="change one metric's threshold; fields not given keep their value",
        parents=[tracked],
        formatter_class=DefaultsOnce,
    )
    one.add_argument("metric", help="a metric the gate computes, e.g. test_f1")
    one.add_argument("--threshold", help="the floor (ceiling when lower is better), or 'none'")
    one.add_argument(
        "--direction",
        choices=["higher", "lower"],
        help="which way the metric improves (default: the metric's own; log loss: lower)",
    )
    for kind, what in (("absolute", "in metric units"), ("relative", "as a fraction")):
        one.add_argument(
            f"--tolerance-{kind}",
            type=float,
            help=f"tolerated regression vs the champion, {what} (default: unchanged, else 0)",
        )


def _comment_parser(add) -> None:
    comment = add(
        "comment",
        "create or update the PR's sticky comment",
        "Upsert one comment per PR and --kind, found by a hidden marker. Needs GITHUB_TOKEN; "
        "uses GITHUB_REPOSITORY and GITHUB_API_URL when set.",
        parents=(),
    )
    body = comment.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", type=Path, help="markdown file to post")
    body.add_argument(
        "--artifact-dir",
        type=Path,
        help="a train run's downloaded report artifact (untrusted: checked against "
        "--head-sha and the PR's head on GitHub before posting)",
    )
    comment.add_argument("--head-sha", help="with --artifact-dir: the workflow run's head commit")
    comment.add_argument(
        "--pr", type=positive_int, help="PR number (default: the open PR of --sha)"
    )
    comment.add_argument("--sha", help="head commit to find the PR by (default: $GITHUB_SHA)")
    comment.add_argument("--repo", help="owner/name (default: $GITHUB_REPOSITORY)")
    comment.add_argument(
        "--kind", choices=["train", "eval"], default="train", help="one comment per kind"
    )
    comment.add_argument(
        "--author",
        default=ACTIONS_BOT,
        help="login the token writes as; only its comments are ever edited",
    )
    comment.add_argument(
        "--read-only-ok",
        action="store_true",
        help="a 403 (a fork's read-only token) is a warning, not an error",
    )


def _state_parser(add) -> None:
    state = add(
        "state",
        "save or restore the MLflow stack's state (snapshot folder)",
        "Snapshot = pg_dump of the MLflow database + the artifact store, pruned (in the "
        "snapshot, never on the live server) to the champions and the branch's last runs. "
        f"The Actions cache carries the folder between workflow runs. {MUTATING}.",
    )
    state.add_argument("action", choices=["save", "restore"], help="what to do")
    state.add_argument("--dir", type=Path, default=Path(".mlflow-state"), help="snapshot folder")
    state.add_argument(
        "--database",
        default=os.environ.get("MLFLOW_STATE_DATABASE", "compose"),
        help="PostgreSQL URL of the MLflow database, or 'compose' (the postgres service); "
        "taken from $MLFLOW_STATE_DATABASE when set",
    )
    state.add_argument(
        "--artifacts",
        default=os.environ.get("MLFLOW_STATE_ARTIFACTS", "compose:mlflow:/mlartifacts"),
        help="the server's artifact folder, or compose:<service>:<path>; taken from "
        "$MLFLOW_STATE_ARTIFACTS when set",
    )
    state.add_argument("--branch", help="branch whose recent runs to keep (default: this build's)")


def _workflow_step_parsers(add) -> None:
    add(
        "server-mode",
        "team server or ephemeral stack (workflow step)",
        "Team mode when $TEAM_TRACKING_URI is set (the MLFLOW_TRACKING_URI repository variable): "
        "exports it as MLFLOW_TRACKING_URI. Writes team=true|false and mlflow=<version> (the "
        "state cache's key) to $GITHUB_OUTPUT.",
        parents=(),
    )
    add(
        "stack-up",
        "start the compose stack (workflow step)",
        "Writes .env with a fresh PostgreSQL password (masked), runs docker compose up --build "
        "--wait (naming the failed service and its logs on failure) and exports "
        "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 to $GITHUB_ENV.",
        parents=(),
    )
    add("stack-down", "stop the compose stack and delete its volumes (workflow step)", parents=())
    info = add(
        "build-info",
        "write this build's commit, branch and PR",
        "JSON read by the pr-comment workflow: head_sha, pr_number, branch, event, run_url.",
        parents=(),
    )
    info.add_argument(
        "--output", type=output_path, default=OUTPUTS / "build.json", help="JSON file"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bound_http_time()
    return run_command(lambda: COMMANDS[args.command](args), args.debug)


def run_comment(args: argparse.Namespace) -> int:
    from ci.comment import (
        CommentError,
        Superseded,
        find_pull_request,
        upsert,
        upsert_from_artifact,
    )
    from ci.github import GitHubClient
    from machine_learning.records import read_text

    token = os.environ.get("GITHUB_TOKEN", "")
    repo = args.repo or os.environ.get("GITHUB_REPOSITORY", "")
    if not token or not repo:
        raise Failure("set GITHUB_TOKEN and GITHUB_REPOSITORY (or --repo owner/name)", 2)
    if args.artifact_dir and not args.head_sha:
        raise Failure("--artifact-dir needs --head-sha (the workflow run's head commit)", 2)
    sha = args.sha or os.environ.get("GITHUB_SHA", "")
    if args.body and not args.pr and not sha:
        raise Failure("give --pr, or --sha (or $GITHUB_SHA) to find the PR by", EXIT_BAD_INPUT)
    github = GitHubClient(repo, token, os.environ.get("GITHUB_API_URL", "https://api.github.com"))
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
        if error.status == 403 and args.read_only_ok:
            print(f"::warning title=No PR comment::{error}")
            return 0
        raise Failure(str(error), error.code) from None
    print(f"{result.action} comment {result.comment_id} on PR #{pr} {result.url}".rstrip())
    return 0


def run_gate(args: argparse.Namespace) -> int:
    from ci.gate import GateError, annotations, evaluate_gate, load_candidate, record_verdict
    from ci.thresholds import ThresholdError
    from machine_learning.run_record import RunRecord, is_run_id

    record = RunRecord.read(args.run_json) if args.run_json else None
    run_id = record.run_id if record else args.run_id
    if not run_id or not is_run_id(run_id):
        where = (
            f"{args.run_json} has no run id (status: {record.status!r})"
            if record
            else (f"--run-id {str(run_id)[:40]!r} is not an MLflow run id (32 hex digits)")
        )
        raise Failure(where, EXIT_BAD_INPUT)
    client = _client(args, mutating=False)
    try:
        candidate = load_candidate(client, run_id, record)
        result = evaluate_gate(client, candidate, args.model_name, args.resamples)
    except (ThresholdError, GateError) as error:
        raise Failure(str(error), EXIT_BAD_INPUT) from None
    record_verdict(client, candidate.run_id, result)  # first: a pass MLflow lacks is never used
    result.write(args.output)
    for row in result.metrics:
        print(f"{row.metric:>14}  {row.candidate:.4f}  {row.verdict:<12}  {row.reason}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print("\n".join(annotations(result)))
    print(f"gate {result.verdict}; written to {args.output}")
    return 0 if result.passed else EXIT_FAILED


def run_report(args: argparse.Namespace) -> int:
    from ci.gate_record import GateRecord
    from ci.report import branch_history, render

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
    from ci.thresholds import SEED_FILE, ThresholdError, from_seed_file
    from ci.thresholds_command import requested_changes, show, sync, update

    try:
        if args.action == "show":
            lines = show(_client(args, mutating=False), args.model_name)
        elif args.action == "sync":
            rules = from_seed_file(args.file or SEED_FILE)
            lines = sync(_client(args, mutating=True), args.model_name, rules)
        else:
            changes = requested_changes(args)
            lines = update(_client(args, mutating=True), args.model_name, args.metric, changes)
    except ThresholdError as error:
        raise Failure(str(error), EXIT_BAD_INPUT) from None
    print("\n".join(lines))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from ci.gate_record import GateRecord
    from ci.promote import PromotionRefused, check_promotable, promote
    from ci.registry_lock import RegistryBusy
    from machine_learning.provenance import build_context
    from machine_learning.run_record import RunRecord

    gate, record = GateRecord.read(args.gate_json), RunRecord.read(args.run_json)
    sha = args.sha or build_context(os.environ).git_sha
    try:
        check_promotable(gate, record.run_id or "", sha)
        move = promote(_client(args, mutating=True), args.model_name, gate, str(args.pr or ""))
    except (PromotionRefused, RegistryBusy) as error:
        raise Failure(f"promotion refused: {error}") from None
    print(move.describe(f"promoted run {gate.candidate.run_id}"))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from ci.promote import PromotionRefused, rollback
    from ci.registry_lock import RegistryBusy

    try:
        move = rollback(_client(args, mutating=True), args.model_name, args.expect_champion)
    except (PromotionRefused, RegistryBusy) as error:
        raise Failure(f"rollback refused: {error}") from None
    print(move.describe("rolled back"))
    return 0


def run_state(args: argparse.Namespace) -> int:
    from ci.state import restore, save
    from ci.state_stores import StateError, Stores
    from machine_learning.provenance import build_context

    stores = Stores(args.database, args.artifacts)
    try:
        if args.action == "restore":
            print(restore(stores, args.dir))
            return 0
        branch = args.branch or build_context(os.environ).branch
        print(save(_client(args, mutating=True), stores, args.dir, args.model_name, branch))
    except StateError as error:
        raise Failure(str(error), error.code) from None
    return 0


def run_server_mode(args: argparse.Namespace) -> int:
    from ci.github import append_github_file
    from ci.server_mode import describe_mode

    team, summary = describe_mode(os.environ)
    append_github_file("GITHUB_OUTPUT", f"team={'true' if team else 'false'}", os.environ)
    # Part of the state cache's key: a snapshot is restored only by the MLflow that saved it.
    append_github_file("GITHUB_OUTPUT", f"mlflow={metadata.version('mlflow')}", os.environ)
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
    from ci.stack import COMPOSE_PROJECT, DockerStack, StackError, write_env_file

    write_env_file(Path(".env"))
    try:
        DockerStack(COMPOSE_PROJECT, port=5000).up()
    except StackError as error:
        raise Failure(str(error)) from None
    append_github_file("GITHUB_ENV", "MLFLOW_TRACKING_URI=http://127.0.0.1:5000", os.environ)
    print("stack up: MLflow at http://127.0.0.1:5000")
    return 0


def run_stack_down(args: argparse.Namespace) -> int:
    from ci.stack import COMPOSE_PROJECT, DockerStack, StackError

    try:
        DockerStack(COMPOSE_PROJECT, port=5000).down()
    except StackError as error:
        raise Failure(str(error)) from None
    return 0


def run_build_info(args: argparse.Namespace) -> int:
    from ci.build_info import BuildInfo
    from machine_learning.provenance import build_context

    try:
        info = BuildInfo.of(build_context(os.environ))
    except ValueError as error:
        raise Failure(f"cannot describe this build: {error}", EXIT_BAD_INPUT) from None
    info.write(args.output)
    print(f"build info written to {args.output}")
    return 0


COMMANDS = {
    "server-mode": run_server_mode,
    "stack-up": run_stack_up,
    "stack-down": run_stack_down,
    "build-info": run_build_info,
    "state": run_state,
    "comment": run_comment,
    "gate": run_gate,
    "report": run_report,
    "thresholds": run_thresholds,
    "promote": run_promote,
    "rollback": run_rollback,
}


def _client(args: argparse.Namespace, mutating: bool):
    """An MLflow client for the resolved tracking URI; a command that changes state never
    falls back to the embedded store (it would report success on the wrong store)."""
    from machine_learning.tracking import TrackingUnavailable, redact_uri, resolve_tracking_uri

    try:
        target = resolve_tracking_uri(args.tracking_uri, os.environ, allow_fallback=not mutating)
    except TrackingUnavailable as error:
        raise Failure(str(error), EXIT_UNREACHABLE) from None
    print(f"MLflow tracking URI: {redact_uri(target.uri)} ({target.source})", file=sys.stderr)
    import mlflow

    mlflow.set_tracking_uri(target.uri)
    return mlflow.MlflowClient(target.uri)

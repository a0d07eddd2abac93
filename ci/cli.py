"""Command line of the CI toolkit: ``python -m ci <command>``.

Each command is one workflow step and runs the same on a laptop. Imports are deferred so that
``comment`` (privileged job, minimal install) never loads mlflow, xgboost or pandas.
Exit codes: 0 ok; 1 the gate failed, promotion refused or GitHub refused; 2 bad input;
3 the tracking server is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ci.registry import REGISTERED_MODEL

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 1, 2, 3
COMPOSE_PROJECT = "pokemon-battle-mlops"  # the compose file's `name:`


class Failure(Exception):
    """A command failed: one line for the user and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m ci",
        description=__doc__.split("\n\n")[0],
        epilog="exit codes: 0 ok, 1 failed (gate, promotion, GitHub), "
        "2 bad input, 3 tracking server unreachable",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    def tracked(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, formatter_class=fmt, **kwargs)
        sub.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI (default: resolved like "
            "the training CLI: $MLFLOW_TRACKING_URI, compose, localhost, embedded)",
        )
        sub.add_argument("--model-name", default=REGISTERED_MODEL, help="registered model")
        return sub

    thresholds = tracked(
        "thresholds",
        help="show, set or sync the gate thresholds in MLflow",
        description="Gate thresholds live in MLflow as registered-model tags "
        "gate.<metric>; ci/thresholds.toml only seeds them.",
    )
    thresholds.add_argument(
        "action",
        choices=["show", "sync", "set"],
        help="show them; sync: overwrite them from --file; set: one metric",
    )
    thresholds.add_argument("metric", nargs="?", help="with set: e.g. test_f1")
    thresholds.add_argument(
        "--file", type=Path, help="with sync: TOML file (default: ci/thresholds.toml)"
    )
    thresholds.add_argument("--threshold", help="with set: the floor (ceiling), or 'none'")
    thresholds.add_argument(
        "--lower-is-better",
        action="store_true",
        help="with set: the metric improves downwards (e.g. log loss)",
    )
    thresholds.add_argument(
        "--tolerance-absolute",
        type=float,
        default=0.0,
        help="with set: tolerated regression vs the champion",
    )
    thresholds.add_argument(
        "--tolerance-relative",
        type=float,
        default=0.0,
        help="with set: tolerated regression as a fraction of the champion",
    )

    gate = tracked(
        "gate",
        help="judge a run against the thresholds and the champion",
        description="Re-score the champion on the candidate's exact test battles, "
        "compare with a paired bootstrap, write gate.json, log the "
        "verdict to the run; exit 1 when the gate fails.",
    )
    source = gate.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-json", type=Path, help="run.json written by the training CLI")
    source.add_argument("--run-id", help="an MLflow run id")
    gate.add_argument("--output", type=Path, default=Path("gate.json"), help="verdict file")
    gate.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")

    report = tracked(
        "report",
        help="render the markdown report from gate.json",
        description="Markdown for the PR comment and the job summary "
        "(appended to $GITHUB_STEP_SUMMARY when set).",
    )
    report.add_argument("--gate-json", type=Path, default=Path("gate.json"), help="gate output")
    report.add_argument("--output", type=Path, default=Path("report.md"), help="markdown file")
    report.add_argument("--history", type=int, default=20, help="earlier runs to list (0: none)")

    comment = commands.add_parser(
        "comment",
        formatter_class=fmt,
        help="create or update the PR's sticky comment",
        description="Upsert one comment per PR and --kind, found by a hidden marker. Needs "
        "GITHUB_TOKEN; uses GITHUB_REPOSITORY and GITHUB_API_URL when set.",
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
    comment.add_argument("--pr", type=int, help="PR number (default: found from --sha)")
    comment.add_argument("--sha", help="head commit to find the PR by (default: $GITHUB_SHA)")
    comment.add_argument("--repo", help="owner/name (default: $GITHUB_REPOSITORY)")
    comment.add_argument("--kind", default="train", help="report kind: one comment per kind")

    promote = tracked(
        "promote",
        help="register the gated run's model and make it champion",
        description="Refuses a run whose gate did not pass or whose commit is "
        "not the one being promoted.",
    )
    promote.add_argument("--run-json", type=Path, default=Path("outputs/run.json"))
    promote.add_argument("--gate-json", type=Path, default=Path("gate.json"))
    promote.add_argument("--sha", help="commit being promoted (default: $GITHUB_SHA)")
    promote.add_argument("--pr", default="", help="PR number to tag the version with")

    tracked(
        "rollback",
        help="swap champion and previous-champion back",
        description="Move champion back to the previous champion in one step.",
    )
    state = tracked(
        "state",
        help="save or restore the MLflow stack's state (snapshot folder)",
        description="Snapshot = pg_dump of the MLflow database + the artifact store, pruned to "
        "the champions and the branch's last runs. The Actions cache carries the "
        "folder between workflow runs.",
    )
    state.add_argument("action", choices=["save", "restore"])
    state.add_argument("--dir", type=Path, default=Path(".mlflow-state"), help="snapshot folder")
    state.add_argument(
        "--database",
        default=os.environ.get("MLFLOW_STATE_DATABASE", "compose"),
        help="PostgreSQL URL of the MLflow database, or 'compose' (pg_dump in the "
        "postgres container); default $MLFLOW_STATE_DATABASE",
    )
    state.add_argument(
        "--artifacts",
        default=os.environ.get("MLFLOW_STATE_ARTIFACTS", "compose:mlflow:/mlartifacts"),
        help="the server's artifact folder, or compose:<service>:<path>; default "
        "$MLFLOW_STATE_ARTIFACTS",
    )
    state.add_argument("--branch", help="branch whose recent runs to keep (default: this build's)")
    commands.add_parser(
        "server-mode",
        formatter_class=fmt,
        help="team server or ephemeral stack (workflow step)",
        description="Team mode when $TEAM_TRACKING_URI is set (the MLFLOW_TRACKING_URI repository "
        "variable): exports it as MLFLOW_TRACKING_URI. Writes team=true|false to "
        "$GITHUB_OUTPUT.",
    )
    commands.add_parser(
        "stack-up",
        formatter_class=fmt,
        help="start the compose stack (workflow step)",
        description="Writes .env with a fresh PostgreSQL password (masked), runs docker compose "
        "up --build --wait (naming the failed service and its logs on failure) and "
        "exports MLFLOW_TRACKING_URI=http://127.0.0.1:5000 to $GITHUB_ENV.",
    )
    commands.add_parser(
        "stack-down",
        formatter_class=fmt,
        help="stop the compose stack and delete its volumes (workflow step)",
    )
    info = commands.add_parser(
        "build-info",
        formatter_class=fmt,
        help="write this build's commit, branch and PR",
        description="JSON read by the pr-comment workflow: head_sha, pr_number, branch, event, "
        "run_url.",
    )
    info.add_argument("--output", type=Path, default=Path("build.json"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Failure as failure:
        print(f"error: {failure}", file=sys.stderr)
        return failure.code


def run_comment(args: argparse.Namespace) -> int:
    from ci.comment import CommentError, find_pull_request, upsert, upsert_from_artifact
    from ci.github import GitHubClient

    token = os.environ.get("GITHUB_TOKEN", "")
    repo = args.repo or os.environ.get("GITHUB_REPOSITORY", "")
    if not token or not repo:
        raise Failure(
            "set GITHUB_TOKEN and GITHUB_REPOSITORY (or --repo owner/name)", EXIT_BAD_INPUT
        )
    if args.artifact_dir and not args.head_sha:
        raise Failure(
            "--artifact-dir needs --head-sha (the workflow run's head commit)", EXIT_BAD_INPUT
        )
    github = GitHubClient(repo, token, os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    try:
        if args.artifact_dir:
            posted = upsert_from_artifact(github, args.artifact_dir, args.head_sha, args.kind)
            if posted is None:
                print(f"commit {args.head_sha[:12]} belongs to no open pull request: no comment")
                return 0
            pr, result = posted
        else:
            body = _read_text(args.body)
            pr = args.pr or find_pull_request(github, args.sha or os.environ.get("GITHUB_SHA", ""))
            result = upsert(github, pr, body, args.kind)
    except CommentError as error:
        if error.status == 403:
            print(f"::warning title=No PR comment::{error}")
            return 0
        raise Failure(str(error)) from None
    print(f"{result.action} comment {result.comment_id} on PR #{pr} {result.url}".rstrip())
    return 0


def run_gate(args: argparse.Namespace) -> int:
    from ci.gate import GateError, annotations, evaluate_gate, load_candidate, record_verdict
    from ci.thresholds import ThresholdError

    client = _client(args)
    try:
        candidate = load_candidate(client, args.run_id, args.run_json)
        result = evaluate_gate(client, candidate, args.model_name, args.resamples)
    except (ThresholdError, GateError) as error:
        raise Failure(str(error), EXIT_BAD_INPUT) from None
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    record_verdict(client, candidate.run_id, result)
    for row in result["metrics"]:
        print(f"{row['metric']:>14}  {row['candidate']:.4f}  {row['verdict']:<12}  {row['reason']}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print("\n".join(annotations(result)))
    print(f"gate {result['verdict']}; written to {args.output}")
    return 0 if result["verdict"] == "pass" else EXIT_FAILED


def run_report(args: argparse.Namespace) -> int:
    from ci.report import branch_history, render

    gate = _read_json(args.gate_json)
    history = branch_history(_client(args), gate, args.history) if args.history > 0 else []
    text = render(gate, history)
    args.output.write_text(text, encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(f"report written to {args.output} ({len(text):,} characters)")
    return 0


def run_thresholds(args: argparse.Namespace) -> int:
    from ci.registry import ensure_registered_model, write_thresholds
    from ci.thresholds import SEED_FILE, ThresholdError, from_seed_file, from_tags, parse_spec

    client = _client(args)
    try:
        if args.action == "sync":
            write_thresholds(client, args.model_name, from_seed_file(args.file or SEED_FILE))
        elif args.action == "set":
            if not args.metric or args.threshold is None:
                raise Failure(
                    "set needs a metric and --threshold (a number or 'none')", EXIT_BAD_INPUT
                )
            spec = {
                "threshold": None if args.threshold == "none" else _float(args.threshold),
                "greater_is_better": not args.lower_is_better,
                "tolerance_absolute": args.tolerance_absolute,
                "tolerance_relative": args.tolerance_relative,
            }
            write_thresholds(client, args.model_name, [parse_spec(args.metric, spec, "--")])
        rules = from_tags(ensure_registered_model(client, args.model_name))
    except ThresholdError as error:
        raise Failure(str(error), EXIT_BAD_INPUT) from None
    if not rules:
        print(
            f"{args.model_name} has no gate.* tags yet: the next gate seeds them from "
            f"{SEED_FILE.name}"
        )
    for rule in rules:
        print(f"{rule.tag:<22} {rule.describe()}")
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from ci.promote import PromotionRefused, check_promotable, promote

    gate, record = _read_json(args.gate_json), _read_json(args.run_json)
    try:
        check_promotable(
            gate, record.get("run_id") or "", args.sha or os.environ.get("GITHUB_SHA", "")
        )
        move = promote(_client(args), args.model_name, gate, args.pr)
    except PromotionRefused as error:
        raise Failure(f"promotion refused: {error}") from None
    print(move.describe(f"promoted run {gate['candidate']['run_id']}"))
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from ci.promote import PromotionRefused, rollback

    try:
        move = rollback(_client(args), args.model_name)
    except PromotionRefused as error:
        raise Failure(f"rollback refused: {error}") from None
    print(move.describe("rolled back"))
    return 0


def run_state(args: argparse.Namespace) -> int:
    from ci.github import build_context
    from ci.state import StateError, Stores, restore, save

    stores = Stores(args.database, args.artifacts)
    try:
        if args.action == "restore":
            manifest = restore(stores, args.dir)
            if manifest is None:
                print(
                    f"no snapshot in {args.dir}: starting from an empty MLflow (thresholds are "
                    "seeded from ci/thresholds.toml, there is no champion yet)"
                )
            else:
                print(
                    f"restored the snapshot of {manifest.get('branch') or 'unknown branch'} "
                    f"saved at {manifest.get('saved_at', '?')}"
                )
            return 0
        branch = args.branch or build_context(os.environ).branch
        manifest = save(_client(args), stores, args.dir, args.model_name, branch)
    except StateError as error:
        raise Failure(str(error)) from None
    print(
        f"saved {len(manifest['kept_runs'])} runs ({manifest['artifact_files']} artifact files) "
        f"to {args.dir}; {manifest['deleted_runs']} older runs pruned"
    )
    return 0


def run_server_mode(args: argparse.Namespace) -> int:
    from ci.github import append_github_file

    team = os.environ.get("TEAM_TRACKING_URI", "")
    append_github_file("GITHUB_OUTPUT", f"team={'true' if team else 'false'}", os.environ)
    if team:
        append_github_file("GITHUB_ENV", f"MLFLOW_TRACKING_URI={team}", os.environ)
    print(
        "team mode: training against the MLFLOW_TRACKING_URI variable"
        if team
        else "ephemeral mode: the repository's compose stack, state carried by the cache"
    )
    return 0


def run_stack_up(args: argparse.Namespace) -> int:
    import secrets

    from ci.github import append_github_file
    from ci.stack import DockerStack, StackError

    env_file = Path(".env")
    if not env_file.exists():
        password = secrets.token_urlsafe(24)
        print(f"::add-mask::{password}")
        env_file.write_text(f"POSTGRES_PASSWORD={password}\n", encoding="utf-8")
    try:
        DockerStack(COMPOSE_PROJECT, port=5000).up()
    except StackError as error:
        raise Failure(str(error)) from None
    append_github_file("GITHUB_ENV", "MLFLOW_TRACKING_URI=http://127.0.0.1:5000", os.environ)
    print("stack up: MLflow at http://127.0.0.1:5000")
    return 0


def run_stack_down(args: argparse.Namespace) -> int:
    from ci.stack import DockerStack

    DockerStack(COMPOSE_PROJECT, port=5000).down()
    return 0


def run_build_info(args: argparse.Namespace) -> int:
    from ci.github import build_context

    context = build_context(os.environ)
    info = {
        "head_sha": context.git_sha,
        "pr_number": context.pr_number,
        "branch": context.branch,
        "event": context.event,
        "run_url": context.run_url,
    }
    args.output.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
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


def _client(args: argparse.Namespace):
    from machine_learning.tracking import TrackingUnavailable, redact_uri, resolve_tracking_uri

    try:
        target = resolve_tracking_uri(args.tracking_uri, os.environ)
    except TrackingUnavailable as error:
        raise Failure(str(error), EXIT_UNREACHABLE) from None
    print(f"MLflow tracking URI: {redact_uri(target.uri)} ({target.source})", file=sys.stderr)
    import mlflow

    mlflow.set_tracking_uri(target.uri)
    return mlflow.MlflowClient(target.uri)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise Failure(f"cannot read {path}: {error.strerror}", EXIT_BAD_INPUT) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(_read_text(path))
    except ValueError as error:
        raise Failure(f"{path} is not valid JSON: {error}", EXIT_BAD_INPUT) from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise Failure(
            f"--threshold must be a number or 'none', got {text!r}", EXIT_BAD_INPUT
        ) from None

"""The CI toolkit: one command per workflow step, each the same on a laptop.

The parser checks every argument it can; ci.commands hands them to the modules that decide;
``main`` turns whatever escapes into one line and an exit code (machine_learning.contract.failures).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from machine_learning.contract.arguments import (
    DefaultsOnce,
    OneLineErrorParser,
    duration_in,
    http_url,
    int_in,
    nonblank_name,
    output_path,
    positive_int,
    seconds_in,
)
from machine_learning.contract.failures import (
    EXIT_CODES,
    mlflow_defaults,
    run_command,
)
from machine_learning.contract.mlflow_names import REGISTERED_MODEL

OUTPUTS = Path("outputs")
ACTIONS_BOT = "github-actions[bot]"  # ci.comment.ACTIONS_BOT; not imported: --help stays light
RESAMPLES = int_in(100, 100_000, "fewer make the interval meaningless, more take minutes")
HISTORY = int_in(0, 200, "a PR comment has room for about 200 rows")
CANARY = int_in(200, 100_000, "every metric needs both outcomes; more takes minutes")
SERVED_TIMEOUT = seconds_in(1, 3_600, "a job's own timeout is the longer bound")
MUTATING = "changes the registry: never falls back to the embedded store"
THRESHOLD_FAMILIES = ("gate", "monitor")  # ci.thresholds_command.FAMILIES; not imported: light
# The monitor's defaults, as ci.monitor_decision and machine_learning.contract.inference_log
# define them (not imported, so --help stays light; a unit test holds them equal).
INFERENCE_LOG_VARIABLE = "INFERENCE_LOG_URL"
MONITOR_MIN_ROWS, MONITOR_MAX_MIN_ROWS, MONITOR_MAX_WINDOWS = 200, 1_000, 365
WINDOW = duration_in(60, 366 * 86_400, "from a minute to a year")
WINDOWS = int_in(1, MONITOR_MAX_WINDOWS, "a year of daily windows")
MONITOR_EXIT_CODES = (
    "exit codes: 0 no retraining needed; 1 retraining needed (or an unexpected error); 2 bad "
    "input (arguments, URL, a log without the tables); 3 the tracking server or the inference "
    "log's database unreachable or failing"
)


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
    tracked.add_argument(
        "--model-name", type=nonblank_name, default=REGISTERED_MODEL, help="registered model"
    )

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
        "--sha",
        type=nonblank_name,
        help="commit being promoted (default: $GITHUB_SHA, else the local git HEAD)",
    )
    promote.add_argument("--pr", type=positive_int, help="PR number to tag the version with")
    rollback = add(
        "rollback",
        "swap champion and previous-champion back",
        f"Move champion back to the previous champion in one step. {MUTATING}.",
    )
    rollback.add_argument(
        "--expect-champion",
        type=nonblank_name,
        help="the champion version being rolled back; refuse if it is another (default: the "
        "one read when the command starts)",
    )
    verify = add(
        "verify",
        "check the served champion after a promotion; roll back when it fails",
        "Wait (bounded) until the predictor serves the champion, send smoke battles, re-score "
        "it over HTTP on fresh canary battles against the gate's floors. On any failure: roll "
        f"back, say which version serves now, exit 1. {MUTATING}.",
    )
    verify.add_argument(
        "--predictor-url",
        type=http_url,
        default=os.environ.get("PREDICTOR_URL") or None,
        help="the prediction service (default: $PREDICTOR_URL when set, never printed here: it "
        "may hold credentials; else http://127.0.0.1:8000, compose's, outside GitHub Actions; "
        "in a workflow it must be named)",
    )
    verify.add_argument(
        "--expect-version",
        type=nonblank_name,
        help="the promoted version (default: the champion now)",
    )
    verify.add_argument(
        "--timeout",
        type=SERVED_TIMEOUT,
        default=180.0,
        help="seconds to wait for it to be served (every call of the wait included)",
    )
    verify.add_argument(
        "--canary-battles", type=CANARY, default=2000, help="fresh battles to score"
    )
    _monitor_parser(add)
    _state_parser(add)
    _workflow_step_parsers(add)
    return parser


def _monitor_parser(add) -> None:
    monitor = add(
        "monitor",
        "judge the served versions' live battles against their training; exit 1 to retrain",
        "Reads the inference log (what the predictor answered, and the outcomes posted since) "
        "over the last --windows windows of --window each, the last ending now. For each window "
        "and each version that served in it: its battles, the drift (PSI and a KS or "
        "chi-square test) of every feature in the version's reference profile (profile.json "
        "of its training run) and of the predicted probability, and on the battles with an "
        "outcome accuracy, f1, log loss and calibration error. A version's window breaches when "
        "a monitor.<metric> threshold of the registered model is crossed (seeded from "
        "ci/monitor_thresholds.toml the first time there are none; see ci thresholds --for "
        "monitor); it has not enough data under --min-rows battles (or outcomes, for quality), "
        "which is never a breach; a window breaches when any version in it does. Decision: "
        "retrain when at least --min-breaches of the last --windows windows breach and the "
        "latest does. Battles of a version the registry does not know, or whose run has no "
        "profile, are counted and reported, never judged. Writes --output (before exiting), "
        "appends a table and a chart to $GITHUB_STEP_SUMMARY when set, and logs the pass as "
        "a run of the experiment <model-name>-monitoring.",
    )
    monitor.epilog = MONITOR_EXIT_CODES
    monitor.add_argument(
        "--inference-log",
        default=os.environ.get(INFERENCE_LOG_VARIABLE) or None,
        help="the log's SQLAlchemy URL, postgresql://user:password@host/db or "
        f"sqlite:///path/to/log.db (default: ${INFERENCE_LOG_VARIABLE}; never shown, it may "
        "hold a password)",
    )
    monitor.add_argument(
        "--dashboard",
        type=output_path,
        help="also write the pass as an HTML page: live accuracy per version with promotions "
        "and rollbacks marked, traffic per version, drift per feature (self-contained)",
    )
    monitor.add_argument(
        "--window",
        type=WINDOW,
        default="1d",
        help="length of a window: a whole number and a unit, m, h, d or w (30m, 6h, 1d, 1w) "
        "(default: 1d)",
    )
    monitor.add_argument(
        "--windows", type=WINDOWS, default=5, help="N: how many windows, the last ending now"
    )
    monitor.add_argument(
        "--min-breaches",
        type=WINDOWS,
        default=2,
        help="K: breaching windows among the last N that call for retraining (at most N)",
    )
    monitor.add_argument(
        "--min-rows",
        type=int_in(1, MONITOR_MAX_MIN_ROWS, "fewer make noise a breach"),
        default=MONITOR_MIN_ROWS,
        help="battles a version needs in a window to be judged",
    )
    monitor.add_argument(
        "--output", type=output_path, default=OUTPUTS / "monitor.json", help="the pass's record"
    )


def _thresholds_parser(add, tracked: argparse.ArgumentParser) -> None:
    thresholds = add(
        "thresholds",
        "show, set or sync the gate's or the monitor's thresholds in MLflow",
        "Thresholds live in MLflow as registered-model tags: the gate's gate.<metric> "
        "(seeded from ci/thresholds.toml), the monitor's monitor.<metric> (seeded from "
        "ci/monitor_thresholds.toml). Each action handles one family (--for). set and sync "
        "change the registry: they never fall back to the embedded store.",
        parents=(),
    )
    actions = thresholds.add_subparsers(
        dest="action", required=True, parser_class=OneLineErrorParser
    )
    family = argparse.ArgumentParser(add_help=False)
    family.add_argument(
        "--for",
        dest="family",
        choices=THRESHOLD_FAMILIES,
        help="whose thresholds: the gate's (gate.*) or the monitor's (monitor.*); default: "
        "gate, except for set, where it is the family the metric belongs to",
    )
    actions.add_parser(
        "show",
        help="list them (or what the first gate or monitoring pass would seed)",
        parents=[tracked, family],
        formatter_class=DefaultsOnce,
    )
    sync = actions.add_parser(
        "sync",
        help="make the family's tags equal to a TOML file (its stale ones removed)",
        parents=[tracked, family],
        formatter_class=DefaultsOnce,
    )
    sync.add_argument(
        "--file",
        type=Path,
        help="TOML file (default: ci/thresholds.toml, or ci/monitor_thresholds.toml with "
        "--for monitor)",
    )
    one = actions.add_parser(
        "set",
        help="change one metric's threshold; fields not given keep their value",
        parents=[tracked, family],
        formatter_class=DefaultsOnce,
    )
    one.add_argument(
        "metric",
        help="a metric the gate computes (test_f1) or the monitor does (diff_bst.psi, accuracy)",
    )
    one.add_argument(
        "--threshold",
        help="the floor (ceiling when lower is better), or 'none' (gate only: no floor)",
    )
    one.add_argument(
        "--direction",
        choices=["higher", "lower"],
        help="which way the metric improves (default: the metric's own; log loss: lower; the "
        "monitor accepts only the metric's own)",
    )
    for kind, what in (("absolute", "in metric units"), ("relative", "as a fraction")):
        one.add_argument(
            f"--tolerance-{kind}",
            type=float,
            help=f"gate only: tolerated regression vs the champion, {what} (default: "
            "unchanged, else 0)",
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
    comment.add_argument(
        "--head-sha",
        type=nonblank_name,
        help="with --artifact-dir: the workflow run's head commit",
    )
    comment.add_argument(
        "--pr", type=positive_int, help="PR number (default: the open PR of --sha)"
    )
    comment.add_argument(
        "--sha", type=nonblank_name, help="head commit to find the PR by (default: $GITHUB_SHA)"
    )
    comment.add_argument(
        "--repo", type=nonblank_name, help="owner/name (default: $GITHUB_REPOSITORY)"
    )
    comment.add_argument(
        "--kind", choices=["train", "eval"], default="train", help="one comment per kind"
    )
    comment.add_argument(
        "--author",
        type=nonblank_name,
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
    state.add_argument(
        "action",
        choices=["save", "restore", "recover", "check-lineage"],
        help="what to do; recover (default branch, before restore): when the cache brought no "
        "snapshot, download the newest mlflow-state artifact, or fail if a champion was ever "
        "promoted (a GitHub deployment says so) unless --start-afresh true; check-lineage "
        "(before save): fail when another run saved a newer snapshot than --restored",
    )
    state.add_argument("--restored", default="", help="check-lineage: the cache key restored")
    state.add_argument("--newest", default="", help="check-lineage: the newest key now")
    state.add_argument(
        "--start-afresh",
        choices=["true", "false"],
        default="false",
        help="recover: begin a new lineage although a champion existed and no snapshot survives",
    )
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
    state.add_argument(
        "--branch",
        type=nonblank_name,
        help="branch whose recent runs to keep (default: this build's)",
    )


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
        "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 to $GITHUB_ENV ($MLFLOW_PORT moves the port).",
        parents=(),
    )
    add("stack-down", "stop the compose stack and delete its volumes (workflow step)", parents=())
    promotion = add(
        "record-promotion",
        "record a promotion as a GitHub deployment (workflow step)",
        "A successful deployment of $GITHUB_SHA to the environment 'champion': what the "
        "repository's Environments page shows, and how a later run knows a lineage existed. "
        "Needs GITHUB_TOKEN (deployments: write) and GITHUB_REPOSITORY.",
    )
    promotion.add_argument("--version", type=nonblank_name, required=True, help="the new champion")
    dispatch = add(
        "dispatch-retraining",
        "dispatch train.yml with the inference log as training data (workflow step)",
        "What monitor.yml does when the monitor says retrain: a workflow_dispatch of train.yml "
        "on the default branch (action=train, with-inference-log=true, promote=true, and the "
        "reason); the gate and verification then decide as for any other model. Needs "
        "GITHUB_TOKEN (actions: write) and GITHUB_REPOSITORY.",
        parents=(),
    )
    dispatch.add_argument(
        "--reason", type=nonblank_name, required=True, help="why: shown as the run's input"
    )
    dispatch.add_argument("--workflow", type=nonblank_name, default="train.yml", help="its file")
    dispatch.add_argument(
        "--ref", type=nonblank_name, help="branch to train on (default: the repository's main one)"
    )
    add(
        "predictor-up",
        "start the compose stack's predictor service (workflow step)",
        "docker compose --profile serve up --wait predictor: serves the champion from the "
        "stack's MLflow; exports PREDICTOR_URL=http://127.0.0.1:8000 to $GITHUB_ENV "
        "($PREDICTOR_PORT moves the port).",
        parents=(),
    )
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
    from ci.commands import COMMANDS

    args = build_parser().parse_args(argv)
    mlflow_defaults()
    return run_command(lambda: COMMANDS[args.command](args), args.debug)

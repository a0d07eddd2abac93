"""Command line: ``python -m machine_learning train|compare``.

Heavy libraries (mlflow, xgboost, pandas) are imported only once a command runs, so ``--help``
answers at once. Exit codes: 0 success, 2 bad input, 3 tracking failed (local outputs kept).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from machine_learning.datasets import DEFAULT_TEST_BATTLES, DatasetVersion
from machine_learning.models import ModelName
from machine_learning.simulator import Scenario

EXIT_BAD_INPUT = 2
EXIT_TRACKING_FAILED = 3

EPILOG = """\
tracking URI, first hit wins: --tracking-uri, $MLFLOW_TRACKING_URI, http://mlflow:5000 (compose),
http://localhost:5000, then the embedded store sqlite:///mlflow.db (artifacts in ./mlruns).
With CI=true an unreachable configured server is an error instead of a fallback.

outputs (in --output-dir, written before MLflow is contacted): metrics.json, run.json, model/
(MLflow format), plots/.

exit codes: 0 ok, 2 bad input, 3 tracking failed (local outputs kept).
"""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports bad input as one line instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset-version",
        type=DatasetVersion,
        choices=list(DatasetVersion),
        default=DatasetVersion.V2,
        help="feature set: v1 base stats, v2 + type matchups, speed, damage race",
    )
    parser.add_argument(
        "--scenario-type",
        type=Scenario,
        choices=list(Scenario),
        default=Scenario.RANDOM,
        help="how opponents are drawn: any pair, or pairs of similar base-stat total",
    )
    parser.add_argument(
        "--n-battles", type=positive_int, default=20_000, help="training battles to simulate"
    )
    parser.add_argument(
        "--n-test",
        type=positive_int,
        default=DEFAULT_TEST_BATTLES,
        help="held-out battles (drawn from a fixed seed, so runs are comparable)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the training battles and models"
    )
    parser.add_argument(
        "--tune",
        nargs="?",
        const="true",
        default="false",
        choices=["true", "false"],
        help="randomised hyperparameter search (3-fold CV on f1); a bare --tune means true",
    )
    parser.add_argument("--n-trials", type=positive_int, default=10, help="trials for --tune")
    parser.add_argument(
        "--version", default="dev", help="label of this model version, in the run name"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: resolved as described below)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="MLflow experiment (default: pokemon-battle-<dataset version>)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("outputs"),
        help="where metrics.json, run.json, model/ and plots/ are written",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m machine_learning",
        description="Train Pokémon battle outcome classifiers and track them in MLflow.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{train,compare}", parser_class=OneLineErrorParser
    )
    train = commands.add_parser(
        "train",
        help="train one model and log it as one run",
        description="Simulate battles, train one model, evaluate it beside the "
        "higher-base-stat-total baseline, write local outputs, log the run to MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument(
        "--model",
        type=ModelName,
        choices=list(ModelName),
        default=ModelName.XGBOOST,
        help="estimator after the feature step",
    )
    _add_common(train)
    compare = commands.add_parser(
        "compare",
        help="train every model on the same battles; the best test f1 wins",
        description="Train every model on the same battles and pick the best by test f1: one "
        "parent run, a nested run per model, the winner tagged ci.winner.",
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # uv venvs have no pip; MLflow warns about it on every model save, to no purpose here.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    from machine_learning.tracking import TrackingUnavailable, resolve_tracking_uri
    from machine_learning.train import (
        TrackingFailed,
        TrainConfig,
        prepare_output_dir,
        run_compare,
        run_train,
    )

    try:
        prepare_output_dir(args.output_dir)
    except OSError as exc:
        return _fail(
            f"cannot write to --output-dir {args.output_dir}: "
            f"{exc.strerror or exc}; choose a writable folder",
            EXIT_BAD_INPUT,
        )
    try:
        target = resolve_tracking_uri(args.tracking_uri, os.environ)
    except TrackingUnavailable as exc:
        return _fail(str(exc), EXIT_TRACKING_FAILED)
    print(f"MLflow tracking URI: {_shown(target.uri)} ({target.source})", file=sys.stderr)
    options = vars(args) | {"tune": args.tune == "true"}
    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{key: value for key, value in options.items() if key in fields})
    try:
        record = (run_compare if args.command == "compare" else run_train)(config, target)
    except TrackingFailed as exc:
        return _fail(
            f"tracking failed: {exc}; local outputs kept in {args.output_dir}", EXIT_TRACKING_FAILED
        )
    except ValueError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    _summary(record)
    return 0


def _shown(uri: str) -> str:
    from machine_learning.tracking import redact_uri

    return redact_uri(uri)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _summary(record: dict) -> None:
    metrics = record["metrics"]
    print(
        f"model {record['model']} ({record['dataset_version']}): "
        f"test f1 {metrics['test_f1']:.4f}, accuracy {metrics['test_accuracy']:.4f}, "
        f"baseline f1 {metrics['baseline_test_f1']:.4f}"
    )
    print(f"run {record['run_id']}  model {record['model_uri']}")
    if record.get("run_url"):
        print(f"view it at {record['run_url']}")

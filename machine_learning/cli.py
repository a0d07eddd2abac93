"""Command line: ``python -m machine_learning train|compare|predict|serve``.

Heavy libraries (mlflow, xgboost, pandas) are imported only once a command runs, so ``--help``
answers at once. Exit codes: 0 success, 2 bad input, 3 tracking failed (local outputs kept).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from machine_learning import use_cli
from machine_learning.contract.arguments import (
    DefaultsOnce,
    OneLineErrorParser,
    int_in,
    nonblank_name,
    positive_int,
)
from machine_learning.contract.failures import (
    EXIT_CODES,
    MLFLOW_DEFAULTS,
    TRAINING_MLFLOW_DEFAULTS,
    mlflow_defaults,
    run_command,
)
from machine_learning.datasets import DEFAULT_TEST_BATTLES, DatasetVersion
from machine_learning.models import ModelName
from machine_learning.simulator import Scenario

MIN_TEST_BATTLES = 200
# Peak memory per training battle (raw rows, features, the model's copies): the slope of peak
# RSS measured with /usr/bin/time, 412 MiB at 100k battles and 564 MiB at 400k (~520 bytes a
# battle), doubled for tuning and the forest models.
BYTES_PER_BATTLE = 1_000
SUMMARY_METRICS = ("f1", "accuracy", "roc_auc", "log_loss")

EPILOG = f"""\
tracking URI, first hit wins: --tracking-uri, $MLFLOW_TRACKING_URI, http://mlflow:5000 (compose),
http://localhost:5000, then the embedded store sqlite:///mlflow.db (artifacts in ./mlruns).
With CI=true an unreachable configured server is an error instead of a fallback.

outputs (in --output-dir, written before MLflow is contacted): metrics.json, run.json, model/
(MLflow format), plots/.

{EXIT_CODES}
"""
SEED = int_in(0, 2**32 - 1, "the range numpy and scikit-learn accept")
N_TEST = int_in(MIN_TEST_BATTLES, 10_000_000, "every metric and plot needs both outcomes")
N_TRIALS = int_in(1, 1_000, "each trial is a 3-fold fit")


def n_battles(text: str) -> int:
    """Training battles: at least enough for 3-fold tuning, at most what memory can hold."""
    value = positive_int(text)
    limit = max_battles()
    if value > limit:
        raise argparse.ArgumentTypeError(
            f"{value:,} battles need about {value * BYTES_PER_BATTLE / 2**30:.1f} GiB; this "
            f"machine has memory for about {limit:,} (see --help)"
        )
    return value


def choice_of(kind: type[StrEnum]) -> Callable[[str], StrEnum]:
    """An argparse type for an enum that lists the choices when the value is not one."""

    def parse(text: str) -> StrEnum:
        try:
            return kind(text)
        except ValueError:
            choices = ", ".join(member.value for member in kind)
            raise argparse.ArgumentTypeError(f"expected one of {choices}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset-version",
        type=choice_of(DatasetVersion),
        metavar=_choices(DatasetVersion),
        default=DatasetVersion.V2,
        help="feature set: v1 base stats, v2 + type matchups, speed, damage race",
    )
    parser.add_argument(
        "--scenario-type",
        type=choice_of(Scenario),
        metavar=_choices(Scenario),
        default=Scenario.RANDOM,
        help="how opponents are drawn: any pair, or pairs of similar base-stat total",
    )
    parser.add_argument(
        "--n-battles", type=n_battles, default=20_000, help="training battles to simulate"
    )
    parser.add_argument(
        "--n-test",
        type=N_TEST,
        default=DEFAULT_TEST_BATTLES,
        help="held-out battles (drawn from a fixed seed, so runs are comparable)",
    )
    parser.add_argument(
        "--seed", type=SEED, default=42, help="seed of the training battles and models"
    )
    parser.add_argument(
        "--tune",
        nargs="?",
        const="true",
        default="false",
        choices=["true", "false"],
        help="randomised hyperparameter search (3-fold CV on f1); a bare --tune means true",
    )
    parser.add_argument("--n-trials", type=N_TRIALS, default=10, help="trials for --tune")
    parser.add_argument(
        "--version",
        type=nonblank_name,
        default="dev",
        help="label of this model version, in the run name",
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: resolved as described below)",
    )
    parser.add_argument(
        "--experiment",
        type=nonblank_name,
        help="MLflow experiment (default: pokemon-battle-<dataset version>)",
    )
    parser.add_argument(
        "--output-dir",
        type=output_dir,
        default=Path("outputs"),
        help="where metrics.json, run.json, model/ and plots/ are written",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m machine_learning",
        description="Train Pokémon battle outcome classifiers, track them in MLflow, use them.",
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{train,compare,predict,serve}",
        parser_class=OneLineErrorParser,
    )
    train = commands.add_parser(
        "train",
        help="train one model and log it as one run",
        description="Simulate battles, train one model, evaluate it beside the "
        "higher-base-stat-total baseline, write local outputs, log the run to MLflow.",
        epilog=EPILOG,
        formatter_class=DefaultsOnce,
    )
    train.add_argument(
        "--model",
        type=choice_of(ModelName),
        metavar=_choices(ModelName),
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
        formatter_class=DefaultsOnce,
    )
    _add_common(compare)
    use_cli.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    training = args.command in ("train", "compare")
    mlflow_defaults(defaults=TRAINING_MLFLOW_DEFAULTS if training else MLFLOW_DEFAULTS)
    return run_command(lambda: _run(args), args.debug)


def _run(args: argparse.Namespace) -> int:
    if args.command in ("predict", "serve"):
        return use_cli.run(args)
    # uv venvs have no pip; MLflow warns about it on every model save, to no purpose here.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    from machine_learning.tracking import command_target
    from machine_learning.train import TrainConfig, run_compare, run_train

    target = command_target(args.tracking_uri)
    options = vars(args) | {"tune": args.tune == "true"}
    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{key: value for key, value in options.items() if key in fields})
    record = (run_compare if args.command == "compare" else run_train)(config, target)
    _summary(record, args.output_dir)
    return 0


def output_dir(text: str) -> Path:
    """The output folder, created and probed while parsing: no work for results that cannot
    be written."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write to {text}: {exc.strerror or exc}; choose a writable folder"
        ) from None
    return path


def max_battles() -> int:
    """How many training battles fit in the memory available now (Linux), else a fixed cap."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = 8 << 30
    return int(available * 0.8 / BYTES_PER_BATTLE)


def _choices(kind: type[StrEnum]) -> str:
    return "{" + ",".join(member.value for member in kind) + "}"


def _summary(record: dict, output_dir: Path) -> None:
    """What a user looks for after training: the scores, where the files are, how to see it."""
    from tabulate import tabulate

    comparison = record.get("comparison") or {record["model"]: record["metrics"]}
    rows = [
        [f"{name} ✓" if name == record["model"] and len(comparison) > 1 else name]
        + [_score(scores, f"test_{metric}") for metric in SUMMARY_METRICS]
        for name, scores in comparison.items()
    ]
    baseline = record["metrics"]
    rows.append(["baseline"] + [_score(baseline, f"baseline_test_{m}") for m in SUMMARY_METRICS])
    print(f"\ndataset {record['dataset_version']}, test battles:")
    print(tabulate(rows, ["model", *SUMMARY_METRICS], tablefmt="simple", disable_numparse=True))
    plots = sorted(path.name for path in (output_dir / "plots").rglob("*.png"))
    print(
        f"\nfiles in {output_dir}/: metrics.json, run.json, model/ (MLflow format), "
        f"plots/ ({len(plots)} PNG)"
    )
    print(f"MLflow run {record['run_id']}, model {record['model_uri']}")
    if record.get("run_url"):
        print(f"view it at {record['run_url']}")
    elif record.get("tracking_uri", "").startswith("sqlite:"):
        ui = f"uv run mlflow ui --backend-store-uri {record['tracking_uri']}"
        print(f"view it: {ui}, then open http://127.0.0.1:5000")


def _score(scores: dict, name: str) -> str:
    return f"{scores[name]:.4f}" if name in scores else "—"  # the baseline has no log loss

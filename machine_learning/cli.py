"""Command line: ``python -m machine_learning train|compare|predict|serve``.

The parser checks every argument it can; machine_learning.commands hands them to the modules
that do the work; ``main`` turns whatever escapes into one line and an exit code
(machine_learning.contract.failures). Heavy libraries (mlflow, xgboost, pandas) are imported
only once a command runs, so ``--help`` answers at once. Exit codes: 0 success, 2 bad input,
3 tracking failed (local outputs kept).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from machine_learning.contract.arguments import (
    DefaultsOnce,
    OneLineErrorParser,
    http_url,
    int_in,
    nonblank_name,
    output_path,
    positive_int,
    seconds_in,
    time_window,
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
from machine_learning.recent_battles import RECENT_TEST_SHARE
from machine_learning.serving.batch import CHUNK_ROWS
from machine_learning.serving.predict import DEFAULT_MODEL_URI
from machine_learning.simulator import Scenario

MIN_TEST_BATTLES = 200
# Peak memory per training battle (raw rows, features, the model's copies): the slope of peak
# RSS measured with /usr/bin/time, 412 MiB at 100k battles and 564 MiB at 400k (~520 bytes a
# battle), doubled for tuning and the forest models.
BYTES_PER_BATTLE = 1_000

EPILOG = f"""\
tracking URI, first hit wins: --tracking-uri, $MLFLOW_TRACKING_URI, http://mlflow:5000 (compose),
http://localhost:5000, then the embedded store sqlite:///mlflow.db (artifacts in ./mlruns).
With CI=true an unreachable configured server is an error instead of a fallback.

outputs (in --output-dir, written before MLflow is contacted): metrics.json, run.json, model/
(MLflow format), plots/; with --with-inference-log and enough logged battles,
recent_test_battles.parquet (the second test set, also logged to the run for the gate).

{EXIT_CODES}; 3 also when the inference log's database does not answer
"""


def share_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse type for a fraction strictly between ``low`` and ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
        if not low < value < high:  # also false for nan
            raise argparse.ArgumentTypeError(
                f"must be more than {low:g} and less than {high:g}, got {text}"
            )
        return value

    parse.__name__ = "fraction"
    return parse


LOG_SHARE = share_in(0, 1)
SEED = int_in(0, 2**32 - 1, "the range numpy and scikit-learn accept")
N_TEST = int_in(MIN_TEST_BATTLES, 10_000_000, "every metric and plot needs both outcomes")
N_TRIALS = int_in(1, 1_000, "each trial is a 3-fold fit")
PORT = int_in(1, 65_535, "a TCP port")
# Its default is the contract's DEFAULT_RETENTION_DAYS, which --help states without importing
# SQLAlchemy (tests/unit/test_inference_log.py checks they agree).
RETENTION_DAYS = int_in(1, 36_500, "a day to a hundred years")
POLL_INTERVAL = seconds_in(0.1, 86_400, "faster polls load the registry, slower ones lag a day")
MODEL_HELP = (
    "model to ask: a registry URI (models:/name@alias follows the alias, models:/name/3), "
    "runs:/<id>/model, or a folder such as outputs/model"
)


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
    _add_inference_log_options(parser)


def _add_inference_log_options(parser: argparse.ArgumentParser) -> None:
    """Retraining on what the predictor saw: ``--with-inference-log`` and how it is used."""
    parser.add_argument(
        "--with-inference-log",
        dest="inference_log",
        metavar="URL",
        help="also train on the battles the predictor answered whose outcome came back (a "
        "SQLAlchemy URL, e.g. postgresql+psycopg://user@host/inference or "
        f"sqlite:///inference.db); {RECENT_TEST_SHARE:.0%}% of them, chosen by a hash of "
        "battle_id, are held out as a second test set (recent_test_* metrics). The URL is "
        "logged to MLflow with its password replaced by ***",
    )
    parser.add_argument(
        "--since",
        type=time_window,
        default="30d",
        help="with --with-inference-log: battles logged in this window (days or hours: 30d, 12h)",
    )
    parser.add_argument(
        "--log-share",
        type=LOG_SHARE,
        help="with --with-inference-log: the share of the training weight the logged battles "
        "carry (default: none, each logged battle weighs as a simulated one; weighting the "
        "log up measured no better, see README, Benchmarks)",
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
        metavar="{train,compare,predict,serve,traffic}",
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
    _use_parsers(commands)
    _add_traffic(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from machine_learning.commands import COMMANDS

    args = build_parser().parse_args(argv)
    training = args.command in ("train", "compare")
    mlflow_defaults(defaults=TRAINING_MLFLOW_DEFAULTS if training else MLFLOW_DEFAULTS)
    return run_command(lambda: COMMANDS[args.command](args), args.debug)


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


def _use_parsers(commands) -> None:
    """``predict`` and ``serve``: the commands that use a trained model."""
    predict = commands.add_parser(
        "predict",
        help="who wins: ask the champion (or any model) about battles",
        description="One battle by name (python -m machine_learning predict pikachu charizard), "
        "or a CSV of them (--input pairs.csv --output predictions.csv: columns a,b of names, "
        "or the model's raw columns), streamed in chunks.",
        epilog=EXIT_CODES,
        formatter_class=DefaultsOnce,
    )
    predict.add_argument("names", nargs="*", metavar="NAME", help="two Pokémon: a and b")
    predict.add_argument("--input", type=Path, help="CSV of battles (columns a,b or raw rows)")
    predict.add_argument("--output", type=output_path, help="CSV to write (with --input)")
    predict.add_argument("--json", action="store_true", help="print the service's JSON shape")
    predict.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=CHUNK_ROWS,
        help="battles read, scored and written at a time (memory stays flat)",
    )
    _add_model_options(predict)
    serve = commands.add_parser(
        "serve",
        help="serve the champion over HTTP, following the alias as it moves",
        description="GET / (a page to ask), /health, /version, /metrics (Prometheus), "
        '/names; POST /predict {"battles": [{"a": "pikachu", "b": "charizard"}]}; POST '
        "/outcomes (with --inference-log). A registry alias is polled and a new version "
        "swapped in without a restart.",
        epilog=EXIT_CODES,
        formatter_class=DefaultsOnce,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=PORT, default=8000, help="port to bind")
    serve.add_argument(
        "--poll-interval", type=POLL_INTERVAL, default=10.0, help="seconds between alias checks"
    )
    serve.add_argument(
        "--allowed-hosts",
        type=allowed_hosts,
        default="localhost,127.0.0.1,predictor",
        help="Host headers answered (comma-separated; others get 400): DNS-rebinding protection. "
        "MLflow's form (localhost:*, 127.0.0.1:5000) is accepted: any port of that host",
    )
    serve.add_argument(
        "--inference-log",
        metavar="URL",
        help="SQLAlchemy URL of the inference log: one row per answered battle, and the "
        "outcomes POST /v1/outcomes records (postgresql://user@host/inference_log, "
        "sqlite:///inference-log.db); default $INFERENCE_LOG_URL, else no log",
    )
    serve.add_argument(
        "--inference-log-retention-days",
        type=RETENTION_DAYS,
        metavar="DAYS",
        help="logged battles older than this are deleted, with their outcomes (default: 30)",
    )
    serve.add_argument(
        "--matchup-table",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after each load, score every pair of the Pokédex in the background (one core, "
        "lowest priority; about 6 s for the XGBoost that train makes) and answer battles by name "
        "from that table; --no-matchup-table where the CPU is capped by a quota, which a "
        "low-priority thread still spends (default: on)",
    )
    _add_model_options(serve)


def allowed_hosts(text: str) -> list[str]:
    """The hosts of ``--allowed-hosts``, ports dropped (``localhost:*`` as the MLflow server's
    flag is written, ``host:8000``): the service compares the Host header without its port.
    ``*`` alone or inside a name would answer any Host, which the option exists to prevent."""
    hosts = [_without_port(host.strip()) for host in text.split(",") if host.strip()]
    if not hosts:
        raise argparse.ArgumentTypeError("no host given: every request would be refused")
    wild = [h for h in hosts if "*" in h and not (h.startswith("*.") and "*" not in h[2:])]
    if wild:
        raise argparse.ArgumentTypeError(
            f"{wild[0]!r} would answer any Host (DNS-rebinding protection off); "
            "list the names, or a domain as *.example.com"
        )
    return hosts


def _without_port(host: str) -> str:
    """``name:port`` or ``name:*`` → ``name``; ``[::1]:*`` → ``[::1]``; a bare IPv6 as is."""
    name, colon, port = host.rpartition(":")
    if colon and (port == "*" or port.isdigit()) and (host.count(":") == 1 or name.endswith("]")):
        return name
    return host


TRAFFIC_BATTLES = int_in(1, 10_000_000, "drawn and simulated in memory at once")


def _add_traffic(commands) -> None:
    """``traffic``: simulated battles asked of a running predictor, outcomes reported back."""
    traffic = commands.add_parser(
        "traffic",
        help="ask a running predictor about simulated battles (and report who won)",
        description="Draw battles as training draws them, ask the predictor about them "
        "(POST /v1/predict, raw rows, 500 a request) and with --outcomes let the simulator "
        "fight each one and post who won (POST /v1/outcomes, by the battle_id the predictor "
        "gave): the inference log fills as it would in production. Prints one line: battles "
        "asked, outcomes posted and what became of them.",
        epilog=f"{EXIT_CODES}; 3 also when the predictor does not answer or fails",
        formatter_class=DefaultsOnce,
    )
    traffic.add_argument(
        "--predictor-url",
        type=http_url,
        required=True,
        help="the predictor to ask, e.g. http://127.0.0.1:8000",
    )
    traffic.add_argument(
        "--battles", type=TRAFFIC_BATTLES, default=1_000, help="battles to ask about"
    )
    traffic.add_argument(
        "--scenario-type",
        type=choice_of(Scenario),
        metavar=_choices(Scenario),
        default=Scenario.RANDOM,
        help="how opponents are drawn, as for training (balanced: what a random-trained "
        "champion has not seen much of)",
    )
    traffic.add_argument(
        "--seed", type=SEED, default=1, help="seed of the battles and of their outcomes"
    )
    traffic.add_argument(
        "--outcomes",
        action="store_true",
        help="simulate each battle and post who won (needs serve --inference-log)",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri", type=nonblank_name, default=DEFAULT_MODEL_URI, help=MODEL_HELP
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI for registry URIs (default: as for train)"
    )

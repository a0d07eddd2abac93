"""``predict`` and ``serve``: the commands that use a trained model (see predict.py, serve.py)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from machine_learning.contract.arguments import (
    DefaultsOnce,
    int_in,
    nonblank_name,
    output_path,
    positive_int,
    seconds_in,
)
from machine_learning.contract.failures import EXIT_CODES, BadInput
from machine_learning.predict import DEFAULT_MODEL_URI

if TYPE_CHECKING:
    import pandas as pd

    from machine_learning.predict import Predictor

OUTPUT_COLUMNS = ("a", "b", "p_a_wins", "p_b_wins", "model_version", "model_uri")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 50_000  # battles per batch step: memory stays flat whatever the input's size
PORT = int_in(1, 65_535, "a TCP port")
POLL_INTERVAL = seconds_in(0.1, 86_400, "faster polls load the registry, slower ones lag a day")
SERVER_URIS = ("models:/", "runs:/")  # model URIs that need the tracking server
MODEL_HELP = (
    "model to ask: a registry URI (models:/name@alias follows the alias, models:/name/3), "
    "runs:/<id>/model, or a folder such as outputs/model"
)


def add_parsers(commands) -> None:
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
        '/names; POST /predict {"battles": [{"a": "pikachu", "b": "charizard"}]}. A registry '
        "alias is polled and a new version swapped in without a restart.",
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


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri", type=nonblank_name, default=DEFAULT_MODEL_URI, help=MODEL_HELP
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI for registry URIs (default: as for train)"
    )


def run(args: argparse.Namespace) -> int:
    return run_predict(args) if args.command == "predict" else run_serve(args)


def run_predict(args: argparse.Namespace) -> int:
    from machine_learning.contract.prediction import PredictResponse
    from machine_learning.predict import load_predictor, pokedex

    if args.input is None and len(args.names) != 2:
        raise BadInput("give two Pokémon (predict pikachu charizard), or --input FILE")
    if args.input is not None and (args.names or args.output is None):
        raise BadInput("--input goes with --output FILE and no names")
    if args.input is not None and _same_file(args.input, args.output):
        raise BadInput(
            f"--output {args.output} is the input file {args.input}: the predictions would "
            "overwrite the battles; write them elsewhere"
        )
    if args.input is None:
        a, b = args.names
        rows = pokedex().battles([a], [b])  # names first: no model load if wrong
    predictor = load_predictor(_describe(args))
    if args.input is not None:
        return _batch(predictor, args.input, args.output, args.chunk_rows)
    answer = predictor.answer_json(rows)
    if args.json:
        print(answer.decode())
        return 0
    battle = PredictResponse.model_validate_json(answer).predictions[0]
    a, b, p = battle["a"], battle["b"], battle["p_a_wins"]
    winner, loser, odds = (a, b, p) if p >= 0.5 else (b, a, 1 - p)
    print(f"{winner} beats {loser} with probability {odds:.3f} ({predictor.info.label})")
    return 0


def _same_file(source: Path, target: Path) -> bool:
    """True when ``target`` is ``source`` itself, through a symbolic or hard link included."""
    try:
        return os.path.samefile(source, target)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _batch(predictor: Predictor, source: Path, target: Path, chunk_rows: int) -> int:
    """Score a CSV in chunks, appending each to ``target`` as it is done: a bad row further
    down leaves every earlier chunk's predictions on disk."""
    import pandas as pd

    from machine_learning.predict import PredictError, battle_rows

    done = 0
    try:
        reader = pd.read_csv(source, chunksize=chunk_rows, dtype=str, keep_default_na=False)
        with reader as chunks:  # closed on a bad row too, not left to the garbage collector
            for chunk in chunks:
                if chunk.empty:  # a header without battles
                    continue
                try:
                    rows = battle_rows(chunk.to_dict("records"))
                except PredictError as error:
                    raise PredictError(
                        f"{source}, rows {done + 1:,}-{done + len(chunk):,}: {error}; "
                        f"{target} holds the {done:,} rows before them"
                    ) from None
                _write(_scored(predictor, rows), target, first=done == 0)
                done += len(chunk)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PredictError(f"cannot read {source}: {str(error).splitlines()[0]}") from None
    if done == 0:  # a header and no battles: still a file with the columns
        _write(pd.DataFrame(columns=OUTPUT_COLUMNS), target, first=True)
    print(f"{done:,} battles scored by {predictor.info.label} → {target}")
    return 0


def _scored(predictor: Predictor, rows) -> pd.DataFrame:
    import pandas as pd

    p = predictor.p_a_wins(rows)
    values = (rows["a_name"], rows["b_name"], p.round(6), (1 - p).round(6))
    scored = pd.DataFrame(dict(zip(OUTPUT_COLUMNS, values, strict=False)))
    scored = scored.assign(model_version=predictor.info.version, model_uri=predictor.info.uri)
    for column in ("a", "b", "model_uri"):
        scored[column] = spreadsheet_safe(scored[column])
    return scored


def spreadsheet_safe(cells: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula (OWASP's CSV injection: starting with
    = + - @, a tab or a carriage return) prefixed with ``'``, which shows them as text."""
    return cells.where(~cells.str.startswith(FORMULA_STARTS), "'" + cells)


def _write(scored: pd.DataFrame, target: Path, first: bool) -> None:
    """Append (or start) the output; a failed write is named as such, not as a read error."""
    try:
        scored.to_csv(target, mode="w" if first else "a", header=first, index=False)
    except OSError as error:
        raise BadInput(f"cannot write {target}: {error.strerror or error}") from None


def _describe(args: argparse.Namespace):
    """What --model-uri names; the registry is asked only for a models:/ URI."""
    from machine_learning.predict import describe
    from machine_learning.tracking import command_client

    if not args.model_uri.startswith(SERVER_URIS):
        if not Path(args.model_uri).is_dir():
            raise BadInput(f"--model-uri {args.model_uri}: no such model folder")
        return describe(args.model_uri, None)
    return describe(args.model_uri, command_client(args.tracking_uri))


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from machine_learning.serve import Following, create_app
    from machine_learning.tracking import serving_client

    listening = _listen(args.host, args.port)  # first: a taken port is said before any work
    on_server = args.model_uri.startswith(SERVER_URIS)
    client = serving_client(args.tracking_uri) if on_server else None
    following = Following(args.model_uri, client, args.poll_interval).start()
    if following.current is None and not following.follows_alias:
        listening.close()
        raise BadInput(following.error)
    served = (
        following.current.info.label if following.current else f"nothing yet ({following.error})"
    )
    print(f"serving {served} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    app = create_app(following, args.allowed_hosts)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    following.stop()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound before the model is loaded: a port in use or an address this
    machine does not have is bad input (exit 2) in one line, and no "serving" line is printed
    for an address nothing will answer on."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        raise BadInput(f"--host {host}: {error.strerror or error}") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        where = f"{host}:{port}"
        raise BadInput(f"--port {port}: cannot listen on {where}: {error.strerror}") from None
    return listening

"""What each ``python -m machine_learning`` command does, between the parsed arguments and the
modules.

Handlers stay thin: they check what the parser cannot, call the pipeline (``train``) or the
serving modules (``serving``) and print what the user looks for. The modules raise failures
that carry their exit code (machine_learning.contract.failures), reported by ``main``. Heavy
libraries are imported inside the handlers, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from machine_learning.contract.failures import BadInput
from machine_learning.contract.metric_names import RECENT_TEST_PREFIX

SERVER_URIS = ("models:/", "runs:/")  # model URIs that need the tracking server
SUMMARY_METRICS = ("f1", "accuracy", "roc_auc", "log_loss")


def run_training(args: argparse.Namespace) -> int:
    """``train`` and ``compare``: local outputs first, then the run in MLflow."""
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
    recent = [
        [name] + [_score(scores, f"{RECENT_TEST_PREFIX}{metric}") for metric in SUMMARY_METRICS]
        for name, scores in comparison.items()
        if f"{RECENT_TEST_PREFIX}f1" in scores
    ]
    if recent:
        print("\nrecent battles held out of the inference log:")
        header = ["model", *SUMMARY_METRICS]
        print(tabulate(recent, header, tablefmt="simple", disable_numparse=True))
    plots = sorted(path.name for path in (output_dir / "plots").rglob("*.png"))
    print(
        f"\nfiles in {output_dir}/: metrics.json, run.json, model/ (MLflow format), "
        f"plots/ ({len(plots)} PNG, and profile.json: the monitor's reference)"
    )
    print(f"MLflow run {record['run_id']}, model {record['model_uri']}")
    if record.get("run_url"):
        print(f"view it at {record['run_url']}")
    elif record.get("tracking_uri", "").startswith("sqlite:"):
        ui = f"uv run mlflow ui --backend-store-uri {record['tracking_uri']}"
        print(f"view it: {ui}, then open http://127.0.0.1:5000")


def _score(scores: dict, name: str) -> str:
    return f"{scores[name]:.4f}" if name in scores else "—"  # the baseline has no log loss


def run_predict(args: argparse.Namespace) -> int:
    from machine_learning.contract.prediction import PredictResponse
    from machine_learning.serving.batch import score_csv
    from machine_learning.serving.predict import load_predictor, pokedex

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
        battles = pokedex().battles([a], [b])  # names first: no model load if wrong
    predictor = load_predictor(_model_info(args))
    if args.input is not None:
        return score_csv(predictor, args.input, args.output, args.chunk_rows)
    answer = predictor.answer_json(battles)
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


def _model_info(args: argparse.Namespace):
    """What --model-uri names; the registry is asked only for a models:/ URI."""
    from machine_learning.serving.predict import resolve_model
    from machine_learning.tracking import command_client

    if not args.model_uri.startswith(SERVER_URIS):
        if not Path(args.model_uri).is_dir():
            raise BadInput(f"--model-uri {args.model_uri}: no such model folder")
        return resolve_model(args.model_uri, None)
    return resolve_model(args.model_uri, command_client(args.tracking_uri))


def _outcomes_token() -> str | None:
    """The token POST /v1/outcomes requires, from the environment (never a flag: ps shows
    flags); None takes outcomes from anyone who can reach the predictor."""
    from machine_learning.contract.prediction import OUTCOMES_TOKEN_VARIABLE

    return os.environ.get(OUTCOMES_TOKEN_VARIABLE) or None


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from machine_learning.serving.serve import ServedModelFollower, create_app
    from machine_learning.tracking import serving_client

    log = _inference_log(args)  # a URL that cannot be used is refused before any work
    listening = _listen(args.host, args.port)  # a taken port is said before the model loads
    on_server = args.model_uri.startswith(SERVER_URIS)
    client = serving_client(args.tracking_uri) if on_server else None
    follower = ServedModelFollower(
        args.model_uri, client, args.poll_interval, matchups=args.matchup_table
    ).start()
    if follower.current is None and not follower.follows_alias:
        listening.close()
        raise BadInput(follower.error)
    served = follower.current.info.label if follower.current else f"nothing yet ({follower.error})"
    print(f"serving {served} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    if log is not None:
        state = log.start().status
        detail = f" ({log.error})" if log.error else ""
        print(f"inference log {log.url}: {state}{detail}", file=sys.stderr, flush=True)
    app = create_app(follower, args.allowed_hosts, log, _outcomes_token())
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    finally:
        follower.stop()
        if log is not None:
            log.stop()  # what is queued is written first (bounded)
    return 0


def _inference_log(args: argparse.Namespace):
    """The log --inference-log (else $INFERENCE_LOG_URL) names, not started; None without one."""
    from machine_learning.contract.inference_log import DEFAULT_RETENTION_DAYS, ENVIRONMENT_VARIABLE

    url = args.inference_log or os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not url.strip():
        return None
    from machine_learning.serving.inference_log import InferenceLog

    return InferenceLog(url.strip(), args.inference_log_retention_days or DEFAULT_RETENTION_DAYS)


def _listen(host: str, port: int) -> socket.socket:
    """The service's socket, bound before the model is loaded: a port in use or an address this
    machine does not have is bad input (exit 2) in one line, and no "serving" line is printed
    for an address nothing will answer on. Made with getaddrinfo's protocol (TCP), not 0:
    asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it every answer
    after the first on a kept-alive connection waited ~40 ms for the client's delayed ACK
    (Nagle's algorithm holding the body behind the headers)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        listening = socket.socket(family, kind, proto)
    except OSError as error:
        raise BadInput(f"--host {host}: {error.strerror or error}") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        listening.bind(address)
    except OSError as error:
        listening.close()
        where = f"{host}:{port}"
        raise BadInput(f"--port {port}: cannot listen on {where}: {error.strerror}") from None
    return listening


def run_traffic(args: argparse.Namespace) -> int:
    """``traffic``: the battles asked, the outcomes posted, summed up in one line."""
    from machine_learning.traffic import run_traffic as send

    summary = send(args.predictor_url, args.battles, args.scenario_type, args.seed, args.outcomes)
    print(summary.line(args.outcomes))
    return 0


COMMANDS = {
    "train": run_training,
    "compare": run_training,
    "predict": run_predict,
    "serve": run_serve,
    "traffic": run_traffic,
}

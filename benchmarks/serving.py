"""The prediction service vs MLflow's own scoring server, on the same registered model.

    uv run python benchmarks/serving.py [--requests 300] [--load-seconds 60]

A native stack (docker-compose.yml's flags), two xgboost versions trained by the CLI and
registered, ``champion`` on version 1. Side by side in one run:
- startup to healthy: ``python -m machine_learning serve`` (the compose predictor's command)
  vs ``mlflow models serve --env-manager local`` (its /ping);
- one battle per request over a kept-alive loopback connection, p50/p99 (ours by name, once
  its matchup table is built; MLflow's takes the raw row, since it knows no names — the name
  lookup is part of our time);
- 10,000 battles in one request (ours by name as rows and as columns, and as raw rows, which
  the model scores), and the HTTP floor of the columns' request: the same bodies to an app on
  the same server stack that reads the body and answers as many bytes, doing nothing else
  (http_floor.py), one battle's and 10,000's;
- the alias swapped under load: 4 clients for --load-seconds while the champion is promoted
  and rolled back twice; failed requests, unlabelled answers, and how long after each move the
  new version first answered (poll interval 1 s);
- ``python -m machine_learning predict`` cold start (a new process, one battle);
- the inference log's cost: one battle per request to a second predictor that logs to a
  database of its own on the stack's PostgreSQL, and to ours without a log, alternately
  (rounds of requests, so a busy moment of the shared machine hits both); the ratio of the
  p50s and their difference (the log's own cost per request), and every logged battle written
  (none dropped). Target: at most 1.10.
Targets: one battle p50 <= 2 ms, 10,000 battles <= 10x one battle's p50.
Targets: p50 <= 10 ms, p99 <= 30 ms, p50 >= 2x lower than MLflow's, 10,000 pairs
<= 1 s, startup <= 10 s, zero failed requests, CLI cold start <= 3 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from machine_learning.contract.mlflow_names import CHAMPION
from machine_learning.datasets import RAW_COLUMNS, held_out_battles
from machine_learning.simulator import Scenario
from tests.docker_stack import free_port
from tests.native_stack import NativeStack, predictor_command

NAME = "pokemon-battle-bench"
PAIR = {"battles": [{"a": "pikachu", "b": "charizard"}]}


def post(url: str, body: dict) -> tuple[int, str, float]:
    """(status, X-Model-Version, seconds) of one JSON POST."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            return (
                answer.status,
                answer.headers.get("X-Model-Version", ""),
                time.perf_counter() - started,
            )
    except urllib.error.HTTPError as error:
        return error.code, "", time.perf_counter() - started
    except OSError:
        return 0, "", time.perf_counter() - started


_KEPT: dict[str, http.client.HTTPConnection] = {}


def timed_ok(url: str, body: dict, reopened: bool = False) -> float:
    """Seconds of one POST that must succeed (a refused request would time nothing), over a
    kept-alive connection per server, as a client of a service keeps it (TCP_NODELAY on our
    side too, so a large body is not held behind its headers). A connection the server closed
    while idle (uvicorn's keep-alive timeout is 5 s) is reopened and the request timed again,
    as a client's pool does."""
    parts = urllib.parse.urlsplit(url)
    data = json.dumps(body).encode()
    connection = _connection(parts)
    started = time.perf_counter()
    try:
        connection.request("POST", parts.path, data, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        _KEPT.pop(parts.netloc).close()
        if reopened:
            raise
        return timed_ok(url, body, reopened=True)
    seconds = time.perf_counter() - started
    if answer.status != 200:
        raise RuntimeError(f"{url} answered {answer.status}")
    return seconds


def _connection(parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
    connection = _KEPT.get(parts.netloc)
    if connection is None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _KEPT[parts.netloc] = connection
    return connection


def wait_until(url: str, timeout: float = 120) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def train_versions(stack: NativeStack, workdir: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(stack.tracking_uri)
    for seed in ("1", "2"):
        out = workdir / f"model-{seed}"
        subprocess.run(
            [sys.executable, "-m", "machine_learning", "train", "--seed", seed,
             "--output-dir", str(out), "--tracking-uri", stack.tracking_uri],
            check=True, capture_output=True, cwd=workdir,
        )  # fmt: skip
        record = json.loads((out / "run.json").read_text())
        mlflow.register_model(record["model_uri"], NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, CHAMPION, "1")


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


def latency(url: str, body: dict, requests: int) -> tuple[float, float]:
    for _ in range(20):
        timed_ok(url, body)
    return percentiles([timed_ok(url, body) for _ in range(requests)])


def swap_under_load(url: str, client, seconds: float) -> dict:
    """4 clients posting while the champion moves 1→2→1→2→1; every answer recorded."""
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, version, _ = post(url, PAIR)
            answers.append((time.monotonic(), status, version))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    moves, start = [], time.monotonic()
    for index, version in enumerate(("2", "1", "2", "1"), start=1):
        time.sleep(max(0.0, start + seconds * index / 5 - time.monotonic()))
        client.set_registered_model_alias(NAME, CHAMPION, version)
        moves.append((time.monotonic(), version))
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join()
    delays = []
    for moved_at, version in moves:
        first = next((t for t, s, v in answers if t > moved_at and v == version), None)
        delays.append(None if first is None else round(first - moved_at, 2))
    return {
        "requests": len(answers),
        "failed": sum(1 for _, status, _ in answers if status != 200),
        "unlabelled": sum(1 for _, status, version in answers if status == 200 and not version),
        "seconds_to_new_version": delays,
    }


def log_cost(plain: str, logged: str, requests: int, rounds: int = 10) -> dict:
    """One battle per request without and with the inference log, alternately."""
    samples: dict[str, list[float]] = {plain: [], logged: []}
    for url in samples:
        for _ in range(20):
            timed_ok(url, PAIR)
    for _ in range(rounds):
        for url, seconds in samples.items():
            seconds += [timed_ok(url, PAIR) for _ in range(max(1, requests // rounds))]
    (without_p50, without_p99), (with_p50, with_p99) = map(percentiles, samples.values())
    return {
        "without_log": [round(without_p50, 2), round(without_p99, 2)],
        "with_log": [round(with_p50, 2), round(with_p99, 2)],
        "p50_ratio": round(with_p50 / without_p50, 3),
        # the log's own cost per request: at half-millisecond answers the ratio moves ±10% on
        # ±0.05 ms of noise, so the absolute difference is the steadier reading
        "p50_added_ms": round(with_p50 - without_p50, 3),
    }


def raw_answer(url: str, body: dict) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


def http_floor(workdir: Path, env: dict, many: dict, answer_bytes: int, requests: int) -> dict:
    """One battle's p50 and 10,000's best of 5 against http_floor.py: the server stack alone."""
    port = free_port()
    script = Path(__file__).resolve().parent / "http_floor.py"
    command = [sys.executable, str(script), str(port), str(answer_bytes)]
    process = subprocess.Popen(command, cwd=workdir, env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1/predict"
        started = time.monotonic()
        while time.monotonic() - started < 60:
            try:
                timed_ok(url, PAIR)
                break
            except OSError:
                _KEPT.pop(f"127.0.0.1:{port}", None)
                time.sleep(0.1)
        one_p50, _ = latency(url, PAIR, requests)
        ten_thousand = min(timed_ok(url, many) for _ in range(5))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"one_p50_ms": round(one_p50, 3), "ten_thousand_ms": round(ten_thousand * 1000, 2)}


def phases(model_dir: Path, body: dict, repeats: int = 30) -> dict:
    """Where a 10,000-battle columns request's time goes inside the service, in this process
    with the service's own functions and a matchup table (median ms): the body decoded to
    Pokédex rows by the hot path (serving/hot_path.py), and by the contract's path it replaced
    (pydantic's parser, then the names looked up), the table read, the answer written, and the
    hot path's three together. Each back to back (warm caches) and after a 20 ms pause in which
    64 MB are touched, as other work evicts the caches between a client's requests."""
    from machine_learning.serving.hot_path import decoded
    from machine_learning.serving.matchups import matchup_table
    from machine_learning.serving.predict import (
        ModelInfo,
        Predictor,
        asked_battles,
        load_predictor,
    )
    from machine_learning.serving.routes import _battles

    loaded = load_predictor(ModelInfo(uri=str(model_dir)))
    served = Predictor(loaded.info, loaded.pipeline, matchup_table(loaded))
    raw = json.dumps(body).encode()
    known = decoded(raw)
    assert known is not None and known.by_name, "the body's names are not all known spellings"
    asked = known.asked()
    p = served.answered(asked)
    steps = {
        "decode": lambda: decoded(raw),
        "decode, the contract's path": lambda: asked_battles(_battles(raw)),
        "table": lambda: served.answered(asked),
        "write": lambda: served.response(asked, p, columns=True),
    }
    hot = [steps[name] for name in ("decode", "table", "write")]
    steps["all three"] = lambda: [step() for step in hot]
    evicting = bytearray(64 << 20)
    return {
        name: {
            "warm": _median_ms(step, repeats),
            "after_pause": _median_ms(step, repeats, evicting),
        }
        for name, step in steps.items()
    }


def raw_rows_decoding(body: dict, repeats: int = 15) -> dict:
    """10,000 raw rows turned into the model's input in this process (median ms): by the hot
    path (msgspec, straight to the columns) and by the contract's path (pydantic's parser, the
    RawBattle checks, ``DataFrame.from_records``); and the part of each on the event loop."""
    from machine_learning.serving.hot_path import decoded
    from machine_learning.serving.predict import raw_rows
    from machine_learning.serving.routes import _battles

    raw = json.dumps(body).encode()
    taken = decoded(raw)
    assert taken is not None and not taken.by_name, "the raw rows do not take the hot path"
    hot, contract = (lambda: decoded(raw).asked()), (lambda: raw_rows(_battles(raw)))
    return {
        "hot_path": _median_ms(hot, repeats),
        "contract_path": _median_ms(contract, repeats),
        # what holds the event loop: the rest is done in the worker thread that scores them
        "hot_path_on_the_loop": _median_ms(lambda: decoded(raw), repeats),
        "contract_path_on_the_loop": _median_ms(lambda: _battles(raw), repeats),
    }


def _median_ms(step, repeats: int, evicting: bytearray | None = None) -> float:
    """The median of ``step``'s times, each after touching ``evicting`` in a 20 ms pause when
    it is given."""
    seconds = []
    for _ in range(repeats):
        if evicting is not None:
            time.sleep(0.02)
            evicting[::64] = bytes(len(evicting) // 64)
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds) * 1000, 2)


def wait_for_matchups(base: str, timeout: float = 300) -> float:
    """Seconds until the predictor at ``base`` answers battles by name from its matchup table
    (built in the background after each load; the model answers until then)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
            if b"matchup_table_ready 1.0" in answer.read():
                return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError(f"{base} built no matchup table within {timeout} s")


def log_counts(base: str) -> dict[str, float]:
    """The logged predictor's rows written and dropped, from its /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return {
        line.split()[0]: float(line.split()[-1])
        for line in lines
        if line.startswith(("inference_log_rows_written_total", "inference_log_rows_dropped"))
    }


def cold_start(model: str, cwd: Path, env: dict) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "machine_learning", "predict", "pikachu", "charizard",
             "--model-uri", model],
            check=True, capture_output=True, cwd=cwd, env=env,
        )  # fmt: skip
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    args = parser.parse_args()
    import mlflow

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    stack = NativeStack(workdir / "stack").up()
    processes: list[subprocess.Popen] = []
    log_database = f"inference_log_bench_{secrets.token_hex(4)}"
    try:
        train_versions(stack, workdir)
        env = dict(os.environ) | {"MLFLOW_TRACKING_URI": stack.tracking_uri}
        ours_port, theirs_port = free_port(), free_port()
        command = predictor_command(
            stack.tracking_uri, ours_port,
            {"--model-uri": f"models:/{NAME}@champion", "--poll-interval": "1"},
        )  # fmt: skip
        processes.append(subprocess.Popen(command, cwd=workdir, env=env, stderr=subprocess.DEVNULL))
        ours_start = wait_until(f"http://127.0.0.1:{ours_port}/health")
        table_s = wait_for_matchups(f"http://127.0.0.1:{ours_port}")  # alone on the machine
        mlflow_cli = str(Path(sys.executable).parent / "mlflow")
        processes.append(subprocess.Popen(
            [mlflow_cli, "models", "serve", "-m", f"models:/{NAME}/1", "--env-manager", "local",
             "-p", str(theirs_port), "-h", "127.0.0.1"],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        theirs_start = wait_until(f"http://127.0.0.1:{theirs_port}/ping")
        logged_port = free_port()
        stack._admin(f'CREATE DATABASE "{log_database}"')
        log_url = f"{stack.admin_dsn.rsplit('/', 1)[0]}/{log_database}"
        command = predictor_command(
            stack.tracking_uri, logged_port,
            {"--model-uri": f"models:/{NAME}@champion", "--poll-interval": "1",
             "--inference-log": log_url},
        )  # fmt: skip
        processes.append(subprocess.Popen(command, cwd=workdir, env=env, stderr=subprocess.DEVNULL))
        wait_until(f"http://127.0.0.1:{logged_port}/health")

        ours, theirs = (
            f"http://127.0.0.1:{ours_port}/v1/predict",
            f"http://127.0.0.1:{theirs_port}/invocations",
        )
        wait_for_matchups(f"http://127.0.0.1:{logged_port}")
        raw = held_out_battles(10_000, Scenario.RANDOM)[list(RAW_COLUMNS)]
        one_row = {"dataframe_split": json.loads(raw.head(1).to_json(orient="split", index=False))}
        ours_p50, ours_p99 = latency(ours, PAIR, args.requests)
        logged = f"http://127.0.0.1:{logged_port}"
        cost = log_cost(ours, logged + "/v1/predict", args.requests)
        time.sleep(1)  # the writer's last flush
        cost["logged_rows"] = log_counts(logged)
        theirs_p50, theirs_p99 = latency(theirs, one_row, args.requests)
        names = {
            "battles": [{"a": a, "b": b} for a, b in zip(raw["a_name"], raw["b_name"], strict=True)]
        }
        many = {"dataframe_split": json.loads(raw.to_json(orient="split", index=False))}
        ours_10k = min(timed_ok(ours, names) for _ in range(3))
        columns = {"battles": {"a": raw["a_name"].tolist(), "b": raw["b_name"].tolist()}}
        ours_10k_columns = min(timed_ok(ours, columns) for _ in range(5))
        floor = http_floor(workdir, env, columns, len(raw_answer(ours, columns)), args.requests)
        rows = {"battles": json.loads(raw.to_json(orient="records"))}
        ours_10k_rows = min(timed_ok(ours, rows) for _ in range(3))
        theirs_10k = min(timed_ok(theirs, many) for _ in range(3))
        swap = swap_under_load(ours, mlflow.MlflowClient(stack.tracking_uri), args.load_seconds)
        for port in (ours_port, logged_port):  # the last move's tables, built before timing
            wait_for_matchups(f"http://127.0.0.1:{port}")
        inside = phases(workdir / "model-1" / "model", columns)
        raw_inside = raw_rows_decoding(rows)
        cli_local = cold_start(str(workdir / "model-1" / "model"), workdir, env)
        cli_registry = cold_start(f"models:/{NAME}@champion", workdir, env)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        stack._admin(f'DROP DATABASE IF EXISTS "{log_database}" WITH (FORCE)')
        stack.down()
    results = {
        "startup_s": {"ours": round(ours_start, 2), "mlflow_models_serve": round(theirs_start, 2)},
        "one_pair_ms": {
            "ours": [round(ours_p50, 2), round(ours_p99, 2)],
            "mlflow_models_serve": [round(theirs_p50, 2), round(theirs_p99, 2)],
            "p50_ratio": round(theirs_p50 / ours_p50, 2),
        },
        "ten_thousand_s": {
            "ours": round(ours_10k, 4),
            "ours_columns": round(ours_10k_columns, 4),
            "ours_raw_rows": round(ours_10k_rows, 4),
            "mlflow_models_serve": round(theirs_10k, 4),
        },
        "http_floor_columns": floor,
        "columns_in_process_ms": inside,
        "raw_rows_decoding_ms": raw_inside,
        "matchup_table_after_healthy_s": round(table_s, 1),
        # Issue 20's target: 10,000 battles in at most 10x the time of one (p50).
        "ten_thousand_over_one_p50": {
            "ours": round(ours_10k * 1000 / ours_p50, 1),
            "ours_columns": round(ours_10k_columns * 1000 / ours_p50, 1),
            "mlflow_models_serve": round(theirs_10k * 1000 / theirs_p50, 1),
        },
        "inference_log_cost_ms": cost,
        "swap_under_load": swap,
        "predict_cli_cold_start_s": {
            "folder": round(cli_local, 2),
            "registry": round(cli_registry, 2),
        },
    }
    print(json.dumps(results, indent=2))
    target = Path(__file__).resolve().parent / "results" / "serving.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

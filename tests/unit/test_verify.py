"""What ``ci verify`` accepts from a predictor: an answer that is not the promised shape is a
failed verification (rolled back by the caller), never an unexpected crash."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ci.verify import SMOKE, PredictorClient, VerifyFailed, probabilities, smoke, wait_for_version
from tests.conftest import run_cli

GOOD = {"a": "Pikachu", "b": "Mew", "p_a_wins": 0.25, "p_b_wins": 0.75}
SURE = {"a": "Mew", "b": "Magikarp", "p_a_wins": 1, "p_b_wins": 0}
SHAPE = "the answer is not the predictor's response"


def answered(*predictions) -> dict:
    return {"model_version": "2", "predictions": list(predictions)}


def test_two_probabilities_per_battle_are_read():
    assert probabilities(answered(GOOD, SURE), 2, "x") == [(0.25, 0.75), (1.0, 0.0)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([GOOD], f"{SHAPE} (the body: Input should be a valid dictionary"),
        ({"predictions": [GOOD]}, f"{SHAPE} (model_version: Field required)"),
        (answered() | {"predictions": "all"}, f"{SHAPE} (predictions: Input should be a valid"),
        (answered(), "1 asked, 0 predictions answered"),
        (answered(GOOD, GOOD), "1 asked, 2 predictions answered"),
        (answered("win"), f"{SHAPE} (predictions.0: Input should be a valid dictionary)"),
        (answered(GOOD | {"p_b_wins": None}), "(predictions.0.p_b_wins: Input should be a valid"),
        (answered({"p_a_wins": 0.5, "p_b_wins": 0.5}), "(predictions.0.a: Field required)"),
        (answered(GOOD | {"p_a_wins": "0.5"}), "(predictions.0.p_a_wins: Input should be a valid"),
        (answered(GOOD | {"p_a_wins": True, "p_b_wins": False}), "p_a_wins: Input should be a"),
        (answered(GOOD | {"p_a_wins": float("nan")}), "p_a_wins: Input should be a finite"),
        (answered(GOOD | {"p_a_wins": 1.5, "p_b_wins": -0.5}), "p_a_wins: Input should be less"),
    ],
)
def test_any_other_answer_is_a_failed_verification(body, message):
    with pytest.raises(VerifyFailed, match=re.escape(message)):
        probabilities(body, 1, "smoke")


class Predictor(BaseHTTPRequestHandler):
    """A predictor whose /version and /predict answers are set per test (class attributes)."""

    version: object = {"uri": "models:/m@champion", "version": "2"}
    health: object = {"status": "ok"}
    answer: object = None

    def do_GET(self):
        self._send(self.version if self.path == "/v1/version" else self.health)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(self.answer)

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Model-Version", "2")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def predictor():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Predictor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield PredictorClient(f"http://127.0.0.1:{server.server_port}", sleep=lambda s: None)
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "answer",
    [
        answered(*[{"a": "Pikachu", "b": "Charizard"}] * len(SMOKE)),  # no probabilities
        answered(*[GOOD | {"p_a_wins": 0.9, "p_b_wins": 0.9}] * len(SMOKE)),  # do not add up
        {"error": "ok"},
    ],
)
def test_a_predictor_answering_200_with_a_wrong_body_fails_the_smoke_battles(
    predictor, monkeypatch, answer
):
    monkeypatch.setattr(Predictor, "answer", answer)
    wait_for_version(predictor, "2", timeout_s=1)
    with pytest.raises(VerifyFailed, match="smoke battle"):
        smoke(predictor, "2")


def test_a_version_answer_that_is_not_an_object_is_waited_out(predictor, monkeypatch):
    monkeypatch.setattr(Predictor, "version", ["2"])
    with pytest.raises(VerifyFailed, match=r"still serves nothing it can name \(200: \['2'\]\)"):
        wait_for_version(predictor, "2", timeout_s=0)


def test_what_the_predictor_serves_is_checked_on_its_own_host_not_where_it_redirects(
    predictor, monkeypatch
):
    """A predictor answering 307 to another host that serves v2: verify must not follow."""

    class Redirect(Predictor):
        def do_GET(self):
            self.send_response(307)
            self.send_header("Location", predictor.url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        redirecting = PredictorClient(f"http://127.0.0.1:{elsewhere.server_port}")
        with pytest.raises(VerifyFailed, match=r"still serves nothing it can name \(307"):
            wait_for_version(redirecting, "2", timeout_s=0)
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()


def test_a_predictor_that_never_answers_holds_verify_no_longer_than_its_timeout():
    """Connections accepted (by the kernel) and never answered: each call gets what is left of
    the timeout, not 30 s more each."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        service = PredictorClient(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(VerifyFailed, match="still serves nothing it can name"):
            wait_for_version(service, "2", timeout_s=1)
        assert time.monotonic() - started < 1 + 1 + 1  # the wait, /health's second, slack


@pytest.mark.parametrize("url", ["ftp://predictor:8000", "predictor:8000", "http://", "http://h:x"])
def test_a_predictor_url_that_is_not_http_is_bad_input_naming_the_option(url, tmp_path):
    done = run_cli("verify", "--predictor-url", url, cwd=tmp_path, module="ci")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: argument --predictor-url: ")


def test_a_version_the_predictor_cannot_load_fails_at_once_with_its_reason(predictor, monkeypatch):
    """/health names the version that failed to load (v3 here, v2 still serving): waiting the
    whole timeout for it would only delay the rollback."""
    health = {
        "status": "degraded",
        "model_version": "2",
        "error": "version 3 failed to load: MLmodel is not YAML",
        "failed_version": "3",
    }
    monkeypatch.setattr(Predictor, "health", health)
    started = time.monotonic()
    with pytest.raises(VerifyFailed, match="cannot load v3: version 3 failed to load"):
        wait_for_version(predictor, "3", timeout_s=60)
    assert time.monotonic() - started < 10
    monkeypatch.setattr(Predictor, "health", health | {"failed_version": "4"})
    with pytest.raises(VerifyFailed, match="still serves v2"):  # another version's failure
        wait_for_version(predictor, "3", timeout_s=0.5)

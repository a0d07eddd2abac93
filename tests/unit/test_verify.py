"""What ``ci verify`` accepts from a predictor: an answer that is not the promised shape is a
failed verification (rolled back by the caller), never an unexpected crash."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ci.verify import SMOKE, PredictorClient, VerifyFailed, probabilities, smoke, wait_for_version

GOOD = {"p_a_wins": 0.25, "p_b_wins": 0.75}


def test_two_probabilities_per_battle_are_read():
    assert probabilities({"predictions": [GOOD, {"p_a_wins": 1, "p_b_wins": 0}]}, 2, "x") == [
        (0.25, 0.75),
        (1.0, 0.0),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([GOOD], "1 asked, the answer is not 1 predictions"),
        ({"predictions": "all"}, "the answer is not 1 predictions"),
        ({"predictions": []}, "the answer is not 1 predictions"),
        ({"predictions": [GOOD, GOOD]}, "the answer is not 1 predictions"),
        ({"predictions": ["win"]}, "is not two probabilities"),
        ({"predictions": [{"p_a_wins": 0.5}]}, "is not two probabilities"),
        ({"predictions": [{"p_a_wins": "0.5", "p_b_wins": 0.5}]}, "is not two probabilities"),
        ({"predictions": [{"p_a_wins": True, "p_b_wins": False}]}, "is not two probabilities"),
        ({"predictions": [{"p_a_wins": float("nan"), "p_b_wins": 0.5}]}, "not two probabilit"),
        ({"predictions": [{"p_a_wins": 1.5, "p_b_wins": -0.5}]}, "is not two probabilities"),
    ],
)
def test_any_other_answer_is_a_failed_verification(body, message):
    with pytest.raises(VerifyFailed, match=message):
        probabilities(body, 1, "smoke")


class Predictor(BaseHTTPRequestHandler):
    """A predictor whose /version and /predict answers are set per test (class attributes)."""

    version: object = {"version": "2"}
    answer: object = None

    def do_GET(self):
        self._send(self.version if self.path == "/version" else {"status": "ok"})

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
        {"predictions": [{"a": "Pikachu", "b": "Charizard"}] * len(SMOKE)},  # no probabilities
        {"predictions": [{"p_a_wins": 0.9, "p_b_wins": 0.9}] * len(SMOKE)},  # do not add up
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

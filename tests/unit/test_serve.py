"""The service's event loop stays free while a large request is scored (a real uvicorn, a
model that scores only when the test lets it)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import uvicorn

from machine_learning.predict import ModelInfo, Predictor
from machine_learning.routes import INLINE_BATTLES
from machine_learning.serve import Following, create_app
from tests.native_stack import free_port


class HeldModel:
    """predict_proba waits until released, and says when it started."""

    def __init__(self) -> None:
        self.scoring, self.release = threading.Event(), threading.Event()

    def predict_proba(self, rows):
        self.scoring.set()
        assert self.release.wait(30), "never released"
        return np.tile([0.25, 0.75], (len(rows), 1))


def test_health_answers_while_a_large_request_is_being_scored():
    model = HeldModel()
    following = Following("models:/m/1", client=None)
    following.current = Predictor(ModelInfo("models:/m/1", "m", "1"), model)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(following, ["127.0.0.1"]), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    answers: list[dict] = []
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        battles = [{"a": "pikachu", "b": "mew"}] * (INLINE_BATTLES + 1)
        body = json.dumps({"battles": battles}).encode()

        def ask() -> None:
            with urllib.request.urlopen(urllib.request.Request(url + "/predict", body)) as r:
                answers.append(json.loads(r.read()))

        asking = threading.Thread(target=ask)
        asking.start()
        assert model.scoring.wait(30)
        with urllib.request.urlopen(url + "/health", timeout=10) as health:  # not queued behind
            assert json.loads(health.read())["model_version"] == "1"
        model.release.set()
        asking.join(30)
    finally:
        model.release.set()
        server.should_exit = True
    assert [p["p_a_wins"] for p in answers[0]["predictions"]] == [0.75] * (INLINE_BATTLES + 1)

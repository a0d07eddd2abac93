"""The service over a real uvicorn on loopback, with stand-in models: its event loop stays free
while a large request is scored, hostile bodies are bad input, the API is versioned, and its
OpenAPI document is the contract ci verify reads with."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from ci.verify import SMOKE, probabilities
from machine_learning.contract.inference_log import OutcomesRequest, OutcomesResponse
from machine_learning.contract.prediction import PredictRequest, PredictResponse
from machine_learning.datasets import RAW_COLUMNS
from machine_learning.serving.predict import ModelInfo, Predictor
from machine_learning.serving.routes import INLINE_BATTLES
from machine_learning.serving.serve import ServedModelFollower, create_app
from tests.http_service import served


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
    follower = ServedModelFollower("models:/m/1", client=None)
    follower.current = Predictor(ModelInfo(uri="models:/m/1", name="m", version="1"), model)
    answers: list[dict] = []
    with served(create_app(follower, ["127.0.0.1"])) as url:
        battles = [{"a": "pikachu", "b": "mew"}] * (INLINE_BATTLES + 1)
        body = json.dumps({"battles": battles}).encode()

        def ask() -> None:
            with urllib.request.urlopen(urllib.request.Request(url + "/predict", body)) as r:
                answers.append(json.loads(r.read()))

        asking = threading.Thread(target=ask)
        asking.start()
        try:
            assert model.scoring.wait(30)
            with urllib.request.urlopen(url + "/health", timeout=10) as health:  # not queued
                assert json.loads(health.read())["model_version"] == "1"
        finally:
            model.release.set()
            asking.join(30)
    assert [p["p_a_wins"] for p in answers[0]["predictions"]] == [0.75] * (INLINE_BATTLES + 1)


class HalfModel:
    """Every battle an even fight: what serve answers, whatever the model."""

    def predict_proba(self, rows):
        return np.tile([0.5, 0.5], (len(rows), 1))


@pytest.fixture(scope="module")
def service():
    """A real uvicorn on loopback serving a stand-in model as registered version 7."""
    follower = ServedModelFollower("models:/m/7", client=None)
    follower.current = Predictor(ModelInfo(uri="models:/m/7", name="m", version="7"), HalfModel())
    with served(create_app(follower, ["127.0.0.1"])) as url:
        yield url


def call(url: str, body: bytes | None = None) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


RAW = dict(
    zip(
        RAW_COLUMNS,
        ["X", "Fire", "", 45, 49, 49, 65, 65, 45, "Y", "Water", None] + [50] * 6,
        strict=True,
    )
)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"battles": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "recursion limit"),
        (b'{"battles": [{"a": ' + b"9" * 5_000 + b', "b": "mew"}]}', 400, "number out of range"),
        (json.dumps({"battles": [RAW | {"a_hp": "Infinity"}]}).encode(), 422, "a_hp must be a"),
        (
            b'{"battles": [' + json.dumps(RAW).encode()[:-1] + b', "b_hp": Infinity}]}',
            400,
            "not JSON",
        ),
        (
            b'{"battles": [' + json.dumps(RAW).encode()[:-1] + b', "b_hp": 1e400}]}',
            422,
            "b_hp must be",
        ),
        (json.dumps({"battles": [RAW | {"a_atk": 1e300}]}).encode(), 422, "a_atk must be a"),
        (json.dumps({"battles": [RAW | {"b_spe": 10**30}]}).encode(), 422, "row 1 has 1000000"),
        (json.dumps({"battles": [RAW | {"a_def": 12.5}]}).encode(), 422, "a_def must be a"),
        (json.dumps({"battles": [{"a": "x" * 101, "b": "mew"}]}).encode(), 422, "1 to 100 char"),
    ],
)
def test_hostile_bodies_are_bad_input_with_a_reason(service, body, status, reason):
    answered, answer = call(service + "/v1/predict", body)
    assert answered == status, answer
    (line,) = answer["error"].splitlines()
    assert reason in line


def test_the_api_is_versioned_and_the_old_paths_are_its_aliases(service):
    battles = json.dumps({"battles": [{"a": "pikachu", "b": "charizard"}]}).encode()
    assert call(service + "/v1/predict", battles) == call(service + "/predict", battles)
    assert call(service + "/v1/version", None) == call(service + "/version", None)
    assert call(service + "/v1/version", None)[1]["version"] == "7"
    assert call(service + "/health", None)[1]["status"] == "ok"
    for gone in ("/docs", "/redoc", "/openapi.json", "/v1/health"):
        assert call(service + gone, None)[0] == 404, gone


def test_serve_and_verify_share_one_schema(service):
    """The served document's request and response schemas are the contract's, and what serve
    answers is what verify reads: a change on either side fails here."""
    document = call(service + "/v1/openapi.json", None)[1]
    components = document["components"]["schemas"]
    predict = document["paths"]["/v1/predict"]["post"]
    assert "/predict" not in document["paths"]  # the aliases are not a second API
    assert "/outcomes" not in document["paths"]

    def resolved(schema: dict) -> dict:
        name = schema["$ref"].rsplit("/", 1)[1]
        model = {
            model.__name__: model
            for model in (PredictRequest, PredictResponse, OutcomesRequest, OutcomesResponse)
        }[name]
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, definition in expected.pop("$defs", {}).items():
            assert components[nested] == definition, nested
        return components[name] == expected

    outcomes = document["paths"]["/v1/outcomes"]["post"]
    for route in (predict, outcomes):
        request = route["requestBody"]["content"]["application/json"]["schema"]
        response = route["responses"]["200"]["content"]["application/json"]["schema"]
        assert resolved(request) and resolved(response)
    assert predict["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    battles = [{"a": a, "b": b} for a, b in SMOKE]
    status, answer = call(service + "/v1/predict", json.dumps({"battles": battles}).encode())
    assert status == 200
    assert probabilities(answer, len(SMOKE), "smoke") == [(0.5, 0.5)] * len(SMOKE)

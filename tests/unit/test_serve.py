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
from machine_learning.contract.prediction import (
    MAX_BATTLES,
    PredictColumnsResponse,
    PredictRequest,
    PredictResponse,
)
from machine_learning.datasets import RAW_COLUMNS
from machine_learning.serving.hot_path import decoded
from machine_learning.serving.predict import ModelInfo, Predictor, pokedex
from machine_learning.serving.routes import INLINE_BATTLES, _from_table
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


@pytest.mark.parametrize("form", ["by name", "raw rows"])
def test_health_answers_while_a_large_request_is_being_scored(form):
    """Above INLINE_BATTLES the model scores in a worker thread, whichever path decoded the
    battles (by name without a matchup table, or raw rows: the hot path's, here)."""
    model = HeldModel()
    follower = ServedModelFollower("models:/m/1", client=None)
    follower.current = Predictor(ModelInfo(uri="models:/m/1", name="m", version="1"), model)
    answers: list[dict] = []
    with served(create_app(follower, ["127.0.0.1"])) as url:
        battle = {"a": "pikachu", "b": "mew"} if form == "by name" else RAW
        body = json.dumps({"battles": [battle] * (INLINE_BATTLES + 1)}).encode()
        assert decoded(body) is not None  # the hot path takes both

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

    def resolved(schema: dict) -> bool:
        if "anyOf" in schema:  # /v1/predict answers in the form asked: rows or columns
            return all(map(resolved, schema["anyOf"]))
        name = schema["$ref"].rsplit("/", 1)[1]
        models = (
            PredictRequest,
            PredictResponse,
            PredictColumnsResponse,
            OutcomesRequest,
            OutcomesResponse,
        )
        model = {model.__name__: model for model in models}[name]
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, definition in expected.pop("$defs", {}).items():
            assert components[nested] == definition, nested
        return components[name] == expected

    outcomes = document["paths"]["/v1/outcomes"]["post"]
    for route in (predict, outcomes):
        request = route["requestBody"]["content"]["application/json"]["schema"]
        response = route["responses"]["200"]["content"]["application/json"]["schema"]
        assert resolved(request) and resolved(response)
    answered = predict["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert [schema["$ref"].rsplit("/", 1)[1] for schema in answered] == [
        "PredictResponse",
        "PredictColumnsResponse",
    ]
    assert predict["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    battles = [{"a": a, "b": b} for a, b in SMOKE]
    status, answer = call(service + "/v1/predict", json.dumps({"battles": battles}).encode())
    assert status == 200
    assert probabilities(answer, len(SMOKE), "smoke") == [(0.5, 0.5)] * len(SMOKE)


def test_battles_as_columns_are_answered_as_columns_with_the_rows_answers(service):
    a, b = ["pikachu", "Mr. Mime", "mew"], ["charizard", "onix", "MEWTWO"]
    rows = [{"a": x, "b": y} for x, y in zip(a, b, strict=True)]
    status, by_rows = call(service + "/v1/predict", json.dumps({"battles": rows}).encode())
    status_columns, by_columns = call(
        service + "/v1/predict", json.dumps({"battles": {"a": a, "b": b}}).encode()
    )
    assert status == status_columns == 200
    PredictColumnsResponse.model_validate(by_columns)
    assert by_columns["model_version"] == by_rows["model_version"] == "7"
    transposed = {
        field: [prediction[field] for prediction in by_rows["predictions"]]
        for field in ("a", "b", "p_a_wins", "p_b_wins")
    }
    assert by_columns["predictions"] == transposed
    assert transposed["a"] == ["Pikachu", "Mr. Mime", "Mew"]  # the Pokédex's spelling


@pytest.mark.parametrize(
    ("columns", "status", "reason"),
    [
        ({"a": ["pikachu", "mew"], "b": ["onix"]}, 422, "must be as long; a has 2, b 1"),
        ({"a": ["pikachu"], "b": ["onix"], "c": [1]}, 422, "exactly the columns a and b"),
        ({"a": ["pikachu"]}, 422, "exactly the columns a and b; these have a"),
        ({"a": ["mew"], "b": ["mew"], "a\nX": [1]}, 422, "these have a, 'a\\nX', b"),
        (
            {"a": ["mew"], "b": ["mew"]} | {f"k{i:04}": 0 for i in range(5_000)},
            422,
            "these have a, b, k0000, k0001 and 4,998 more",
        ),
        ({"a": "pikachu", "b": "mew"}, 422, "column a must be a list of names"),
        ({"a": [], "b": []}, 422, "column a is empty"),
        ({"a": ["pikachu", 25], "b": ["mew", "onix"]}, 422, "battle 2 is not"),
        ({"a": ["pikachu"], "b": ["x" * 101]}, 422, "column b, battle 1: names are 1 to 100"),
        ({"a": ["pikachu"], "b": ["mewtoo"]}, 422, "unknown Pokémon 'mewtoo': did you mean"),
        ({"a": ["mew"] * (MAX_BATTLES + 1), "b": ["onix"]}, 413, "10,001 battles; at most"),
    ],
)
def test_bad_columns_are_refused_with_a_reason(service, columns, status, reason):
    body = json.dumps({"battles": columns}).encode()
    answered, answer = call(service + "/v1/predict", body)
    assert answered == status, answer
    (line,) = answer["error"].splitlines()
    assert reason in line


def test_many_battles_by_name_go_to_the_table_on_the_loop_and_raw_rows_to_the_model_thread():
    """Above INLINE_BATTLES the model scores in a worker thread; battles by name the matchup
    table answers need neither the model (None here) nor the thread."""
    table = np.full((len(pokedex().names),) * 2, 0.25)
    info = ModelInfo(uri="models:/m/1", name="m", version="1")
    with_table, without = Predictor(info, None, table), Predictor(info, HalfModel())
    rows, columns = [{"a": "pikachu", "b": "mew"}], {"a": ["pikachu"], "b": ["mew"]}
    assert _from_table(with_table, rows) and _from_table(with_table, columns)
    assert not _from_table(with_table, [RAW]) and not _from_table(without, columns)
    hot = decoded(json.dumps({"battles": rows}).encode())  # the hot path's
    hot_raw = decoded(json.dumps({"battles": [RAW]}).encode())
    assert _from_table(with_table, hot) and not _from_table(without, hot)
    assert hot_raw is not None and not _from_table(with_table, hot_raw)
    follower = ServedModelFollower("models:/m/1", client=None)
    follower.current = with_table
    count = INLINE_BATTLES + 1
    with served(create_app(follower, ["127.0.0.1"])) as url:
        columns = {"a": ["pikachu"] * count, "b": ["mew"] * count}
        status, answer = call(url + "/v1/predict", json.dumps({"battles": columns}).encode())
    assert status == 200, answer
    assert answer["predictions"]["p_a_wins"] == [0.25] * count
    assert answer["predictions"]["p_b_wins"] == [0.75] * count

"""The service's routes: the versioned API (``/v1/predict``, ``/v1/outcomes``, ``/v1/version``,
``/v1/names``), and the probes that stay where probes and scrapers look (``/health``,
``/metrics``, the page).

``serve.create_app`` mounts the API twice: under ``/v1`` (in the OpenAPI document) and at the
root, as the aliases older clients call. Request and response are the contract's models
(``machine_learning.contract.prediction``); ``/v1/predict`` reads its body itself rather than
through FastAPI's body parameter, to bound it while it arrives and to answer one-line reasons;
``/v1/outcomes`` does the same, with the same bounds.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

import pydantic_core
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from machine_learning.contract.failures import first_line
from machine_learning.contract.inference_log import OutcomesRequest, OutcomesResponse
from machine_learning.contract.prediction import (
    MAX_BATTLES,
    OUTCOMES_TOKEN_VARIABLE,
    SYNTHETIC_REQUEST_PREFIX,
    ErrorBody,
    Health,
    PredictColumnsResponse,
    PredictResponse,
    ServedModel,
)
from machine_learning.serving.hot_path import Decoded, decoded, prepare_decoders
from machine_learning.serving.inference_log import (
    NO_LOG,
    InferenceLog,
    InferenceLogDown,
    request_id,
)
from machine_learning.serving.predict import (
    PredictError,
    Predictor,
    asked_battles,
    by_name,
    pokedex,
)

if TYPE_CHECKING:
    from machine_learning.serving.serve import Metrics, ServedModelFollower

MAX_BODY_BYTES = 4 << 20  # 10,000 full raw rows take about 3 MB
# Larger requests the model must score go to a worker thread, so a 10,000-battle batch (about
# 100 ms of XGBoost) never holds up /health or the small requests behind it. Small ones stay on
# the loop: a thread hop for every request cut the load test's throughput by a third. So do
# battles by name once the matchup table answers them: 10,000 cost 3-6 ms in all there
# (benchmarks/serving.py), and the hop added about 2 ms when it was measured. The price: 10,000
# spellings never seen before (each looked up and checked) hold /health for 0.1-0.2 s, where
# the thread held it 0.07-0.1 s (the GIL).
INLINE_BATTLES = 100
JSON = "application/json"
TOO_LARGE = {"error": f"the body exceeds {MAX_BODY_BYTES:,} bytes; send fewer battles"}
SHAPE = (
    'send {"battles": [{"a": name, "b": name}, …]}, {"battles": {"a": [names], "b": [names]}} '
    "or raw rows"
)
# A request's battles: decoded by the hot path (hot_path), or the body's rows or columns as
# parsed, for the contract's validation (asked_battles)
Asked = Decoded | list[dict] | dict
OUTCOMES_SHAPE = 'send {"outcomes": [{"battle_id": id, "winner": "a" or "b"}, …]}'


def request_body(model: str) -> dict[str, Any]:
    """A route's request body as the contract's ``model``, added to the document by
    serve.openapi_document (FastAPI lists only the models of parameters it parses itself)."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _errors(*reasons: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": what} for code, what in reasons}


ERRORS = _errors(
    (400, "the body is not JSON"),
    (413, "too many battles or bytes"),
    (422, "not the request's shape, an unknown name or a value out of bounds"),
    (503, "no model loaded yet"),
)
OUTCOME_ERRORS = _errors(
    (400, "the body is not JSON"),
    (401, "the predictor takes outcomes with its token only"),
    (404, "this predictor keeps no inference log"),
    (413, "too many outcomes or bytes"),
    (422, "not the request's shape"),
    (503, "the inference log's database does not answer"),
)


def api_router(
    follower: ServedModelFollower,
    metrics: Metrics,
    log: InferenceLog | None = None,
    outcomes_token: str | None = None,
) -> APIRouter:
    """The versioned API, mounted under /v1 and at the root (the aliases)."""
    router = APIRouter()
    prepare_decoders()  # the start pays for them, not the first answer

    @router.post(
        "/predict",
        response_model=PredictResponse | PredictColumnsResponse,
        responses=ERRORS,
        openapi_extra={"requestBody": request_body("PredictRequest")},
    )
    async def predict(request: Request) -> Response:
        """Who wins each battle, answered entirely by one version (named in X-Model-Version).
        Battles asked as rows are answered as rows (PredictResponse); battles by name asked as
        columns, as columns (PredictColumnsResponse). With an inference log, each battle's
        answer carries the battle_id to post its outcome with."""
        started = time.perf_counter()
        served = follower.current  # one version answers the whole request
        asked_as = request_id(request.headers.get("x-request-id"))
        status, body = await answer(request, served, log, asked_as)
        metrics.observe(status, time.perf_counter() - started)
        headers = {"X-Model-Version": served.info.version} if served else {}
        if asked_as:
            headers["X-Request-Id"] = asked_as
        if isinstance(body, bytes):
            return Response(body, status_code=status, headers=headers, media_type=JSON)
        return JSONResponse(body, status_code=status, headers=headers)

    @router.post(
        "/outcomes",
        response_model=OutcomesResponse,
        responses=OUTCOME_ERRORS,
        openapi_extra={"requestBody": request_body("OutcomesRequest")},
    )
    async def record_outcomes(request: Request) -> JSONResponse:
        """Who really won battles this service answered (by battle_id): recorded once (a repeat
        is already_recorded, a contradicting winner is conflicting and the first one kept), ids
        the log does not hold reported back as unknown. Needs serve --inference-log."""
        if not authorised(request, outcomes_token):
            return JSONResponse({"error": NOT_AUTHORISED}, status_code=401)
        status, body = await outcomes_answer(request, log)
        return JSONResponse(body, status_code=status)

    @router.get("/version", response_model=ServedModel, responses={503: ERRORS[503]})
    def version() -> JSONResponse:
        """The model answering now: registered name, version, alias, run and commit."""
        served = follower.current
        if served is None:
            return JSONResponse({"error": follower.error}, status_code=503)
        return JSONResponse(served.info.model_dump())

    @router.get("/names", response_model=list[str])
    def names() -> JSONResponse:
        """Every Pokémon name the service knows, in the Pokédex's spelling."""
        return JSONResponse(pokedex().names)

    return router


def probe_router(
    follower: ServedModelFollower,
    metrics: Metrics,
    page_html: str,
    log: InferenceLog | None = None,
) -> APIRouter:
    """Unversioned on purpose: probes, scrapers and people look for these at fixed paths."""
    router = APIRouter()

    @router.get("/health", response_model=Health, responses={503: {"model": Health}})
    def health() -> JSONResponse:
        served = follower.current
        status = "unavailable" if served is None else "degraded" if follower.error else "ok"
        body = Health(
            status=status,
            model_version=served.info.version if served else None,
            error=follower.error or None,
            failed_version=follower.failed_version,
            inference_log=log.status if log else None,
            inference_log_error=(log.error or None) if log else None,
        )
        return JSONResponse(body.model_dump(), status_code=503 if served is None else 200)

    @router.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        text = metrics.render(follower.current)
        return Response(text, media_type="text/plain; version=0.0.4")

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    return router


async def answer(
    request: Request,
    served: Predictor | None,
    log: InferenceLog | None = None,
    asked_as: str | None = None,
) -> tuple[int, dict | bytes]:
    """(status, body) of a predict request: the response's JSON, or a 4xx saying what to fix."""
    if served is None:
        return 503, {"error": "no model loaded yet; see /health"}
    raw = await _body(request)
    if raw is None:
        return 413, TOO_LARGE
    battles = decoded(raw) or _battles(raw)
    if isinstance(battles, tuple):
        return battles
    try:
        if _count(battles) > INLINE_BATTLES and not _from_table(served, battles):
            return 200, await run_in_threadpool(_scored, served, battles, log, asked_as)
        return 200, _scored(served, battles, log, asked_as)
    except PredictError as error:
        return 422, {"error": str(error)}


def _from_table(served: Predictor, battles: Asked) -> bool:
    """Whether the matchup table will answer these battles (by name), not the model."""
    if isinstance(battles, Decoded):
        by_names = battles.by_name
    else:
        by_names = isinstance(battles, dict) or by_name(battles)
    return served.matchups is not None and by_names


def _count(battles: Asked) -> int:
    """How many battles a request asks about, as rows or as columns."""
    if isinstance(battles, Decoded):
        return len(battles.battles)
    if isinstance(battles, list):
        return len(battles)
    column = battles.get("a")
    return len(column) if isinstance(column, list) else 0


NOT_AUTHORISED = (
    "this predictor takes outcomes only with the header Authorization: Bearer <token>, "
    f"the token it was started with (${OUTCOMES_TOKEN_VARIABLE})"
)


def authorised(request: Request, token: str | None) -> bool:
    """Whether the request may post outcomes: any request when the predictor has no token,
    else one bearing it (compared in constant time)."""
    if token is None:
        return True
    sent = request.headers.get("authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


async def outcomes_answer(request: Request, log: InferenceLog | None) -> tuple[int, dict]:
    """(status, body) of an outcomes request: the contract's OutcomesResponse, or one line.
    Written in a worker thread: the database's round trips never hold up the event loop."""
    if log is None:
        return 404, {"error": NO_LOG}
    raw = await _body(request)
    if raw is None:
        return 413, TOO_LARGE
    posted = _outcomes(raw)
    if isinstance(posted, tuple):
        return posted
    try:
        recorded = await run_in_threadpool(log.record_outcomes, posted.outcomes)
    except InferenceLogDown as error:
        return 503, {"error": str(error)}
    return 200, recorded.model_dump()


def _outcomes(raw: bytes) -> OutcomesRequest | tuple[int, dict]:
    """The body as the contract's OutcomesRequest, or (status, error): the bounds of /predict,
    then the first breach of the shape (422)."""
    document = _document(raw, "outcomes", OUTCOMES_SHAPE)
    if isinstance(document, tuple):
        return document
    try:
        return OutcomesRequest.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"])) or "the body"
        return 422, {"error": f"{where}: {first['msg']}; {OUTCOMES_SHAPE}"}


async def _body(request: Request) -> bytes | None:
    """The request's body, or None once it exceeds MAX_BODY_BYTES (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _document(raw: bytes, key: str, shape: str) -> object | tuple[int, dict]:
    """The body's JSON, or (status, error): 400 when it is not JSON we accept, 413 when the list
    under ``key`` holds more than MAX_BATTLES items. Parsed by pydantic's parser: strict JSON
    (no NaN or Infinity), nesting and numbers bounded, each refused with a reason rather than a
    RecursionError or a 5,000-digit int."""
    try:
        document = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        return 400, {"error": f"the body is not JSON we accept ({first_line(error)}): {shape}"}
    items = document.get(key) if isinstance(document, dict) else None
    if isinstance(items, list) and len(items) > MAX_BATTLES:
        return 413, {"error": f"{len(items):,} {key}; at most {MAX_BATTLES:,} per request"}
    return document


def _battles(raw: bytes) -> list[dict] | dict | tuple[int, dict]:
    """The body's battles (rows, or a dict of columns), or (status, error) when it is not the
    request's shape."""
    document = _document(raw, "battles", SHAPE)
    if isinstance(document, tuple):
        return document
    battles = document.get("battles") if isinstance(document, dict) else None
    if isinstance(battles, dict):  # columns: checked with the names (asked_battles)
        count = max((len(c) for c in battles.values() if isinstance(c, list)), default=0)
        if count > MAX_BATTLES:
            return 413, {"error": f"{count:,} battles; at most {MAX_BATTLES:,} per request"}
        return battles
    if not isinstance(battles, list) or not battles:
        return 422, {"error": f"expected a non-empty list of battles: {SHAPE}"}
    if set(map(type, battles)) != {dict}:  # the parser's objects are dicts exactly
        return 422, {"error": "every battle must be an object"}
    return battles


def _scored(
    served: Predictor, battles: Asked, log: InferenceLog | None, asked_as: str | None
) -> bytes:
    """The answer's body, in the form asked (rows or columns); with a log, its battles queued
    for the log and their ids answered."""
    if isinstance(battles, Decoded):
        asked, as_columns = battles.asked(), battles.as_columns
    else:
        asked, as_columns = asked_battles(battles), isinstance(battles, dict)
    p = served.answered(asked)
    logged = log is not None and not (asked_as or "").startswith(SYNTHETIC_REQUEST_PREFIX)
    ids = log.record(served.info.version, asked_as, asked, p) if logged else None
    return served.response(asked, p, ids, columns=as_columns)

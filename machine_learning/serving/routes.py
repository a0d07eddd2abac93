"""The service's routes: the versioned API (``/v1/predict``, ``/v1/version``, ``/v1/names``),
and the probes that stay where probes and scrapers look (``/health``, ``/metrics``, the page).

``serve.create_app`` mounts the API twice: under ``/v1`` (in the OpenAPI document) and at the
root, as the aliases older clients call. Request and response are the contract's models
(``machine_learning.contract.prediction``); ``/v1/predict`` reads its body itself rather than
through FastAPI's body parameter, to bound it while it arrives and to answer one-line reasons.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pydantic_core
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from machine_learning.contract.failures import first_line
from machine_learning.contract.prediction import (
    MAX_BATTLES,
    ErrorBody,
    Health,
    PredictResponse,
    ServedModel,
)
from machine_learning.serving.predict import PredictError, Predictor, battle_rows, pokedex

if TYPE_CHECKING:
    from machine_learning.serving.serve import Metrics, ServedModelFollower

MAX_BODY_BYTES = 4 << 20  # 10,000 full raw rows take about 3 MB
# Larger requests are scored in a worker thread, so a 10,000-battle batch never holds up /health
# or the small requests behind it. Small ones stay on the loop: a thread hop for every request
# cut the load test's throughput by a third (benchmarks/serving.py).
INLINE_BATTLES = 100
JSON = "application/json"
TOO_LARGE = {"error": f"the body exceeds {MAX_BODY_BYTES:,} bytes; send fewer battles"}
SHAPE = 'send {"battles": [{"a": name, "b": name}, …]} (or raw rows)'
# The request body's schema is the contract's PredictRequest, added to the document by
# serve.openapi_document (FastAPI lists only the models of parameters it parses itself).
PREDICT_REQUEST = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in (
        (400, "the body is not JSON"),
        (413, "too many battles or bytes"),
        (422, "not the request's shape, an unknown name or a value out of bounds"),
        (503, "no model loaded yet"),
    )
}


def api_router(follower: ServedModelFollower, metrics: Metrics) -> APIRouter:
    """The versioned API, mounted under /v1 and at the root (the aliases)."""
    router = APIRouter()

    @router.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra={"requestBody": PREDICT_REQUEST},
    )
    async def predict(request: Request) -> Response:
        """Who wins each battle, answered entirely by one version (named in X-Model-Version)."""
        started = time.perf_counter()
        served = follower.current  # one version answers the whole request
        status, body = await answer(request, served)
        metrics.observe(status, time.perf_counter() - started)
        headers = {"X-Model-Version": served.info.version} if served else {}
        if isinstance(body, bytes):
            return Response(body, status_code=status, headers=headers, media_type=JSON)
        return JSONResponse(body, status_code=status, headers=headers)

    @router.get("/version", response_model=ServedModel, responses={503: ERRORS[503]})
    def version() -> JSONResponse:
        """The model answering now: registered name, version, alias, run and commit."""
        served = follower.current
        if served is None:
            return JSONResponse({"error": follower.error}, status_code=503)
        return JSONResponse(served.info.to_dict())

    @router.get("/names", response_model=list[str])
    def names() -> JSONResponse:
        """Every Pokémon name the service knows, in the Pokédex's spelling."""
        return JSONResponse(pokedex().names)

    return router


def probe_router(follower: ServedModelFollower, metrics: Metrics, page_html: str) -> APIRouter:
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
        )
        return JSONResponse(body.model_dump(), status_code=503 if served is None else 200)

    @router.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        served = follower.current
        text = metrics.render(served.info.version if served else "")
        return Response(text, media_type="text/plain; version=0.0.4")

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    return router


async def answer(request: Request, served: Predictor | None) -> tuple[int, dict | bytes]:
    """(status, body) of a predict request: the response's JSON, or a 4xx saying what to fix."""
    if served is None:
        return 503, {"error": "no model loaded yet; see /health"}
    raw = await _body(request)
    if raw is None:
        return 413, TOO_LARGE
    battles = _battles(raw)
    if isinstance(battles, tuple):
        return battles
    try:
        if len(battles) > INLINE_BATTLES:
            return 200, await run_in_threadpool(_scored, served, battles)
        return 200, _scored(served, battles)
    except PredictError as error:
        return 422, {"error": str(error)}


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


def _battles(raw: bytes) -> list[dict] | tuple[int, dict]:
    """The body's battles, or (status, error) when it is not the request's shape. Parsed by
    pydantic's parser: strict JSON (no NaN or Infinity), nesting and numbers bounded, each
    refused with a reason rather than a RecursionError or a 5,000-digit int."""
    try:
        document = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        return 400, {"error": f"the body is not JSON we accept ({first_line(error)}): {SHAPE}"}
    battles = document.get("battles") if isinstance(document, dict) else None
    if not isinstance(battles, list) or not battles:
        return 422, {"error": f"expected a non-empty list of battles: {SHAPE}"}
    if len(battles) > MAX_BATTLES:
        return 413, {"error": f"{len(battles):,} battles; at most {MAX_BATTLES:,} per request"}
    if not all(isinstance(battle, dict) for battle in battles):
        return 422, {"error": "every battle must be an object"}
    return battles


def _scored(served: Predictor, battles: list[dict]) -> bytes:
    return served.answer_json(battle_rows(battles))

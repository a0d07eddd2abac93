"""The prediction service: the model behind an alias over HTTP, following the alias as it moves.

A registry URI with an alias (default ``models:/pokemon-battle@champion``) is polled every
``poll_interval`` seconds; a new version is loaded in the background and swapped in at once
(one reference assignment), so a request is answered entirely by one version, and says which.
A version that fails to load leaves the old one serving, and ``/health`` says ``degraded``.
A folder, ``runs:/`` or ``models:/name/3`` URI serves that fixed model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from machine_learning.failures import first_line
from machine_learning.predict import (
    ModelInfo,
    PredictError,
    Predictor,
    battle_rows,
    describe,
    load_predictor,
    pokedex,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_BATTLES = 10_000  # per request: the benchmark's batch, answered within a second
MAX_BODY_BYTES = 4 << 20  # 10,000 full raw rows take about 3 MB
# Larger requests are scored in a worker thread: 10,000 battles take ~0.07 s, which on the event
# loop would hold up /health and every small request behind them. Small ones stay on the loop:
# a thread hop for every request cut the load test's throughput by a third (22,748 requests in
# 60 s instead of 33,544; benchmarks/serving.py).
INLINE_BATTLES = 100
DEFAULT_POLL_S = 10.0
TOO_LARGE = {"error": f"the body exceeds {MAX_BODY_BYTES:,} bytes; send fewer battles"}
PAGE = Path(__file__).resolve().parent / "page.html"


@dataclass
class Following:
    """The served model: loaded from ``model_uri``, reloaded when its alias points elsewhere."""

    model_uri: str
    client: MlflowClient | None
    poll_interval: float = DEFAULT_POLL_S
    loader: Callable[[ModelInfo], Predictor] = load_predictor
    current: Predictor | None = None
    error: str = ""  # why the newest version is not the one serving
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def follows_alias(self) -> bool:
        return "@" in self.model_uri and self.client is not None

    def check(self) -> None:
        """Load the version the URI names now, if it is not the one serving."""
        try:
            info = describe(self.model_uri, self.client)
        except Exception as error:  # the registry is down: keep serving what we have
            self.error = f"cannot read {self.model_uri}: {first_line(error)}"
            return
        if self.current is not None and info.version == self.current.info.version:
            self.error = ""
            return
        try:
            loaded = self.loader(info)
        except Exception as error:  # a broken version must not take the service down
            self.error = f"version {info.version or info.uri} failed to load: {first_line(error)}"
            return
        self.current, self.error = loaded, ""

    def run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.check()

    def start(self) -> Following:
        """Load once now; follow the alias in a background thread."""
        self.check()
        if self.follows_alias:
            threading.Thread(target=self.run, name="follow-alias", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def create_app(following: Following, allowed_hosts: list[str]) -> FastAPI:
    """The HTTP service around a Following model (routes below; metrics per request)."""
    metrics = Metrics()
    page_html = PAGE.read_text(encoding="utf-8")
    app = FastAPI(title="Pokémon battle predictor", docs_url=None, redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.get("/health")
    def health() -> JSONResponse:
        served = following.current
        status = "unavailable" if served is None else "degraded" if following.error else "ok"
        body = {
            "status": status,
            "model_version": served.info.version if served else None,
            "error": following.error or None,
        }
        return JSONResponse(body, status_code=503 if served is None else 200)

    @app.get("/version")
    def version() -> JSONResponse:
        served = following.current
        if served is None:
            return JSONResponse({"error": following.error}, status_code=503)
        return JSONResponse(served.info.to_dict())

    @app.get("/names")
    def names() -> JSONResponse:
        return JSONResponse(pokedex().names)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        served = following.current  # one version answers the whole request
        status, body = await _answer(request, served)
        version = served.info.version if served else ""
        metrics.observe(status, time.perf_counter() - started)
        headers = {"X-Model-Version": version} if served else {}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/metrics")
    def prometheus() -> Response:
        served = following.current
        text = metrics.render(served.info.version if served else "")
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return page_html

    return app


async def _answer(request: Request, served: Predictor | None) -> tuple[int, dict]:
    """(status, JSON body) of a /predict request: 4xx that say what to fix."""
    if served is None:
        return 503, {"error": "no model loaded yet; see /health"}
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return 413, TOO_LARGE
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return 413, TOO_LARGE
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return 400, {"error": 'the body is not JSON: send {"battles": [{"a": …, "b": …}]}'}
    battles = document.get("battles") if isinstance(document, dict) else None
    if not isinstance(battles, list) or not battles:
        return 422, {"error": 'expected {"battles": [{"a": name, "b": name}, …]} (or raw rows)'}
    if len(battles) > MAX_BATTLES:
        return 413, {"error": f"{len(battles):,} battles; at most {MAX_BATTLES:,} per request"}
    if not all(isinstance(b, dict) for b in battles):
        return 422, {"error": "every battle must be an object"}

    def score() -> dict:
        return served.answer(battle_rows(battles))

    try:
        if len(battles) > INLINE_BATTLES:
            return 200, await run_in_threadpool(score)
        return 200, score()
    except PredictError as error:
        return 422, {"error": str(error)}


class Metrics:
    """Prometheus counters and a latency histogram of /predict, on a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "predict_requests",
            "POST /predict requests by status",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "predict_latency_seconds",
            "time to answer POST /predict",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.served = Gauge(
            "served_model_version",
            "registered version serving (0: a fixed model)",
            registry=self.registry,
        )

    def observe(self, status: int, seconds: float) -> None:
        self.requests.labels(status=str(status)).inc()
        self.latency.observe(seconds)

    def render(self, version: str) -> bytes:
        from prometheus_client import generate_latest

        self.served.set(int(version) if version.isdigit() else 0)
        return generate_latest(self.registry)

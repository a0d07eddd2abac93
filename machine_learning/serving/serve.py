"""The prediction service: the model behind an alias over HTTP, following the alias as it moves.

A registry URI with an alias (default ``models:/pokemon-battle@champion``) is polled every
``poll_interval`` seconds; a new version is loaded in the background and swapped in at once
(one reference assignment), so a request is answered entirely by one version, and says which.
A version that fails to load leaves the old one serving, and ``/health`` says ``degraded``.
A folder, ``runs:/`` or ``models:/name/3`` URI serves that fixed model. Each loaded version's
matchup table (``serving.matchups``) is built in the background and swapped in the same way,
unless a newer version has replaced it meanwhile. With an inference log
(``serving.inference_log``) every answered battle is logged, and ``/v1/outcomes`` records who
won.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.openapi.utils import get_openapi

from machine_learning.contract.failures import first_line
from machine_learning.contract.inference_log import OutcomesRequest
from machine_learning.contract.prediction import API_PREFIX, API_VERSION, PredictRequest
from machine_learning.serving.matchups import lowest_priority, matchup_table
from machine_learning.serving.predict import ModelInfo, Predictor, load_predictor, resolve_model
from machine_learning.serving.routes import api_router, probe_router

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlflow import MlflowClient
    from prometheus_client.metrics_core import Metric

    from machine_learning.serving.inference_log import InferenceLog

DEFAULT_POLL_S = 10.0
COMPONENT = "#/components/schemas/{model}"
PAGE = Path(__file__).resolve().parent / "page.html"


@dataclass
class ServedModelFollower:
    """The served model: loaded from ``model_uri``, reloaded when its alias points elsewhere."""

    model_uri: str
    client: MlflowClient | None
    poll_interval: float = DEFAULT_POLL_S
    loader: Callable[[ModelInfo], Predictor] = load_predictor
    current: Predictor | None = None
    error: str = ""  # why the newest version is not the one serving
    failed_version: str | None = None  # the version whose load failed, while it is the newest
    matchups: bool = True  # build each loaded version's matchup table (serving.matchups)
    _stop: threading.Event = field(default_factory=threading.Event)
    _swap: threading.Lock = field(default_factory=threading.Lock)

    @property
    def follows_alias(self) -> bool:
        return "@" in self.model_uri and self.client is not None

    def check(self) -> None:
        """Load the version the URI names now, if it is not the one serving."""
        try:
            info = resolve_model(self.model_uri, self.client)
        except Exception as error:  # the registry is down: keep serving what we have
            self.error = f"cannot read {self.model_uri}: {first_line(error)}"
            return
        if self.current is not None and info.version == self.current.info.version:
            self.error, self.failed_version = "", None
            return
        try:
            loaded = self.loader(info)
        except Exception as error:  # a broken version must not take the service down
            self.error = f"version {info.version or info.uri} failed to load: {first_line(error)}"
            self.failed_version = info.version or None
            return
        with self._swap:
            self.current, self.error, self.failed_version = loaded, "", None
        if self.matchups:
            threading.Thread(target=self._add_matchups, args=(loaded,), daemon=True).start()

    def _add_matchups(self, loaded: Predictor) -> None:
        """Build ``loaded``'s matchup table, then serve it with the table, unless another
        version has replaced it meanwhile (the lock keeps the swap from undoing a newer one)."""
        lowest_priority()
        try:
            table = matchup_table(loaded, lambda: self.current is loaded and not self.stopped)
        except Exception as error:  # battles by name are still answered, by the model
            print(
                f"no matchup table for {loaded.info.label}: {first_line(error)}; battles by "
                "name are scored by the model",
                file=sys.stderr,
                flush=True,
            )
            return
        with self._swap:
            if table is not None and self.current is loaded:
                self.current = replace(loaded, matchups=table)

    def run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.check()

    def start(self) -> ServedModelFollower:
        """Load once now; follow the alias in a background thread."""
        self.check()
        if self.follows_alias:
            threading.Thread(target=self.run, name="follow-alias", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()


def create_app(
    follower: ServedModelFollower,
    allowed_hosts: list[str],
    log: InferenceLog | None = None,
    outcomes_token: str | None = None,
) -> FastAPI:
    """The HTTP service around the followed model (and its inference log, if any): the API
    under /v1 and at the root (its aliases), the probes, and the OpenAPI document at
    /v1/openapi.json. No docs page: FastAPI's loads its scripts from a CDN, which a predictor on
    a closed network cannot reach."""
    metrics = Metrics(log)
    app = FastAPI(
        title="Pokémon battle predictor",
        version=API_VERSION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    api = api_router(follower, metrics, log, outcomes_token)
    app.include_router(api, prefix=API_PREFIX)
    app.include_router(api, include_in_schema=False)  # /predict, /outcomes, …: aliases
    app.include_router(probe_router(follower, metrics, PAGE.read_text(encoding="utf-8"), log))
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of the routes, with the contract's PredictRequest and OutcomesRequest
    added to its components (those routes read their body themselves, so FastAPI does not list
    them)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (PredictRequest, OutcomesRequest):
            schema = model.model_json_schema(ref_template=COMPONENT)
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        app.openapi_schema = document
    return app.openapi_schema


class Metrics:
    """Prometheus counters and a latency histogram of /predict, on a registry of its own; the
    inference log's rows written and dropped, and its queue, when there is one."""

    def __init__(self, log: InferenceLog | None = None) -> None:
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
        self.matchups = Gauge(
            "matchup_table_ready",
            "1 once the serving version answers battles by name from its matchup table",
            registry=self.registry,
        )
        if log is not None:
            self.registry.register(InferenceLogCollector(log))

    def observe(self, status: int, seconds: float) -> None:
        self.requests.labels(status=str(status)).inc()
        self.latency.observe(seconds)

    def render(self, served: Predictor | None) -> bytes:
        from prometheus_client import generate_latest

        version = served.info.version if served else ""
        self.served.set(int(version) if version.isdigit() else 0)
        self.matchups.set(int(served is not None and served.matchups is not None))
        return generate_latest(self.registry)


class InferenceLogCollector:
    """The log's own counts (kept by its writer and queue), read at each scrape."""

    def __init__(self, log: InferenceLog) -> None:
        self.log = log

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily(
            "inference_log_rows_written",
            "answered battles written to the inference log",
            value=self.log.written,
        )
        dropped = CounterMetricFamily(
            "inference_log_rows_dropped",
            "answered battles not logged: the queue was full, or the database failed",
            labels=["reason"],
        )
        for reason, count in self.log.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily(
            "inference_log_queue_rows",
            "answered battles waiting for the writer",
            value=self.log.queue.battles,
        )

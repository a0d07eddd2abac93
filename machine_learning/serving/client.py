"""The prediction service's HTTP client: what ``ci verify`` and ``traffic`` ask it with.

Standard library only (urllib): no HTTP library is needed for a few JSON calls, and ``ci``
imports this without pulling in the serving stack.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from machine_learning.contract.prediction import API_PREFIX, SYNTHETIC_REQUEST_PREFIX


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the 3xx it is: the predictor named by --predictor-url answers
    for itself, and a verification must not be passed by whatever host it points to."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass
class PredictorClient:
    """The prediction service's HTTP API, version ``API_PREFIX`` (standard library)."""

    url: str
    timeout_s: float = 30.0  # for one call; wait_for_version bounds its whole wait
    synthetic: bool = False  # canary requests: answered, kept out of the inference log
    outcomes_token: str | None = field(default=None, repr=False)  # sent with outcomes only
    sleep: Callable[[float], None] = field(default=time.sleep)

    def get(self, path: str, timeout_s: float | None = None) -> tuple[int, Any, str]:
        request = urllib.request.Request(self._url(path))
        return self._call(request, timeout_s)

    def predict(self, battles: list[dict]) -> tuple[int, Any, str]:
        return self.post("/predict", {"battles": battles})

    def post(self, path: str, payload: Any) -> tuple[int, Any, str]:
        """``payload`` as JSON to a ``/v1`` route."""
        body = json.dumps(payload).encode()
        request = urllib.request.Request(self._url(path), data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.outcomes_token and path == "/outcomes":
            request.add_header("Authorization", f"Bearer {self.outcomes_token}")
        if self.synthetic:
            request.add_header("X-Request-Id", f"{SYNTHETIC_REQUEST_PREFIX}{uuid.uuid4().hex}")
        return self._call(request, None)

    def _url(self, path: str) -> str:
        """The API's routes are versioned; /health stays where probes look for it."""
        prefix = "" if path == "/health" else API_PREFIX
        return f"{self.url.rstrip('/')}{prefix}{path}"

    def _call(
        self, request: urllib.request.Request, timeout_s: float | None
    ) -> tuple[int, Any, str]:
        """(status, JSON body, X-Model-Version); status 0 when nothing answered in time."""
        timeout = self.timeout_s if timeout_s is None else max(timeout_s, 0.1)
        try:
            with _OPENER.open(request, timeout=timeout) as answer:
                return (
                    answer.status,
                    json.loads(answer.read()),
                    answer.headers.get("X-Model-Version", ""),
                )
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read())
            except ValueError:
                body = None
            return error.code, body, error.headers.get("X-Model-Version", "")
        except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
            return 0, {"error": str(getattr(error, "reason", error))}, ""

"""The predictor's app over a real uvicorn on loopback (in this process), and JSON requests to
it: what the in-process service tests share."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import uvicorn

from tests.docker_stack import free_port


@contextmanager
def served(app) -> Iterator[str]:
    """``app`` answering on a free loopback port in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True


def request(
    url: str, body: object = None, headers: Mapping[str, str] | None = None
) -> tuple[int, object, Mapping[str, str]]:
    """(status, decoded JSON or text, headers) of a GET, or of a POST of ``body`` (JSON, or
    bytes as they are); status 0 when nothing answered."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    asked = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(asked, timeout=30) as answer:
            return answer.status, _decoded(answer.read()), answer.headers
    except urllib.error.HTTPError as error:
        return error.code, _decoded(error.read()), error.headers
    except (urllib.error.URLError, ConnectionError):
        return 0, None, {}


def _decoded(body: bytes) -> object:
    try:
        return json.loads(body or b"null")
    except json.JSONDecodeError:
        return body.decode(errors="replace")


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")

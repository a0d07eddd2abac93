"""The predictor over real HTTP: its app on a uvicorn in this process (``served``), or the
compose file's command as a process of its own (``Service``); JSON requests to either."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from tests.conftest import cli_env
from tests.docker_stack import free_port
from tests.native_stack import predictor_command


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


class Service:
    """The compose file's predictor service as a local process (as the native stack runs the
    mlflow service), and requests to it."""

    def __init__(
        self,
        tracking_uri: str,
        model_uri: str,
        cwd: Path,
        flags: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        overrides = {"--model-uri": model_uri, "--poll-interval": "0.5"} | (flags or {})
        self.log = cwd / f"predictor-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                predictor_command(tracking_uri, self.port, overrides),
                cwd=cwd, env=env or cli_env(), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.wait_for(lambda: self.get("/health")[0] == 200, "the service to answer /health")

    def request(
        self,
        path: str,
        body: object = None,
        host: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        return request(
            self.url + path, body, dict(headers or {}) | ({"Host": host} if host else {})
        )

    def declared_body(self, length: int) -> int:
        """The status of a POST that announces ``length`` bytes and sends none of them."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest("POST", "/predict")
            connection.putheader("Content-Length", str(length))
            connection.endheaders()
            return connection.getresponse().status
        finally:
            connection.close()

    def get(self, path: str, host: str | None = None):
        return self.request(path, host=host)[:2]

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            return answer.read().decode()

    def wait_for(self, condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited: {self.log.read_text()}")
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

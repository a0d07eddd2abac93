"""A half-dead tracking server on loopback: ``/health`` answers 200, the API does not.

It is what a stack looks like when MLflow is up but its database died: the health probe passes,
every REST call fails. ``mode`` is ``503`` (every API call answers 503, as a server whose
database is gone does) or ``drop`` (the connection is closed without an answer).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    mode = "503"

    def _answer(self) -> None:
        if self.path.startswith("/health"):
            self._send(200, b"OK")
        elif self.mode == "drop":
            self.close_connection = True
            self.connection.close()
        else:
            self._send(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "db down"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


class HalfDeadServer:
    def __init__(self, mode: str = "503") -> None:
        handler = type("Handler", (_Handler,), {"mode": mode})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HalfDeadServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

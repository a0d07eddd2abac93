"""The HTTP floor under ``serving.py``: an app on the predictor's own server stack (FastAPI,
uvicorn with httptools, its listening socket) that reads a request's body and answers bytes of
a given size, doing nothing else. Started by serving.py: what a request of that size costs
before any JSON is read or written.

    uv run python benchmarks/http_floor.py PORT ANSWER_BYTES
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from machine_learning.commands import _listen


def floor_app(answer_bytes: int) -> FastAPI:
    app = FastAPI()
    answer = b'{"x": "' + b"y" * max(0, answer_bytes - 9) + b'"}'

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        body = b"".join([chunk async for chunk in request.stream()])
        return Response(answer if len(body) > 1_000 else b"{}", media_type="application/json")

    return app


if __name__ == "__main__":
    port, answer_bytes = map(int, sys.argv[1:3])
    server = uvicorn.Server(uvicorn.Config(floor_app(answer_bytes), log_level="warning"))
    server.run(sockets=[_listen("127.0.0.1", port)])

"""What only the tests ask of the compose stack, beside what production runs (ci/stack.py).

``ComposeStack`` is ci.stack.DockerStack with a free port by default, a server restart and an
artifact probe (the stack tests run unchanged on it or on tests/native_stack.py's NativeStack);
the helpers are shared with the native stack.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ci.stack import COMPOSE_FILE, LOG_TAIL_LINES, DockerStack, StackError
from machine_learning.tracking import server_is_healthy

AUTH_COMPOSE_FILE = COMPOSE_FILE.with_name("docker-compose.auth.yml")
HEALTH_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def wait_healthy(
    tracking_uri: str, failure: Callable[[], str | None], timeout_s: float = HEALTH_TIMEOUT_S
) -> bool:
    """Poll ``/health`` until it answers; False on timeout. ``failure`` says why to stop
    early (the process died) — its message becomes the StackError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reason = failure()
        if reason:
            raise StackError(reason)
        if server_is_healthy(tracking_uri):
            return True
        time.sleep(0.2)
    return False


@dataclass
class ComposeStack(DockerStack):
    """The compose stack as the tests drive it (through pytest-docker's executor)."""

    port: int = field(default_factory=free_port)
    kind = "docker compose"

    def restart_server(self) -> None:
        self._compose("restart mlflow")
        if not wait_healthy(self.tracking_uri, lambda: None):
            raise StackError(f"mlflow did not come back after a restart:\n{self._logs('mlflow')}")

    def artifact_exists(self, relative: str) -> bool:
        probe = f"exec -T mlflow sh -c 'test -e /mlartifacts/{relative} && echo yes || echo no'"
        return self._compose(probe).decode().strip() == "yes"

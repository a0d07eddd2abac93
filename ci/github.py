"""GitHub: the few REST calls we make, and the files Actions hands a step (GITHUB_OUTPUT…).

Where a run comes from (commit, branch, PR) is read by ``machine_learning.provenance``.

Standard library only: the comment step runs in a privileged job with a minimal install.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class GitHubError(RuntimeError):
    """A GitHub API call failed; ``status`` is the HTTP status (599: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """A failure that may be gone on the next try (and may have been applied)."""
        return self.status == 429 or self.status >= 500


@dataclass
class GitHubClient:
    """The few REST calls the CI uses, on the standard library only (the comment job installs
    nothing heavy). Retries 5xx answers and waits out rate limits, honouring ``retry-after``,
    within ``budget_s`` seconds a call: a black-holed API is reported in time, not minutes."""

    repository: str
    token: str = field(repr=False)
    api_url: str = "https://api.github.com"
    attempts: int = 4
    max_wait_s: float = 20.0
    budget_s: float = 50.0
    request_timeout_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    def request(
        self, method: str, path: str, body: dict | None = None, retry: bool = True
    ) -> tuple[Any, dict]:
        """JSON answer and headers of one call, after retries (none when ``retry`` is False:
        a create that failed may have been applied, and only the caller can look)."""
        deadline = time.monotonic() + self.budget_s
        for attempt in range(1, (self.attempts if retry else 1) + 1):
            timeout = max(min(self.request_timeout_s, deadline - time.monotonic()), 0.1)
            status, headers, payload = self._send(method, path, body, timeout)
            if status < 400:
                return payload, headers
            wait = self._retry_wait(status, headers, attempt, payload)
            out_of_time = wait is not None and time.monotonic() + wait > deadline
            if wait is None or not retry or attempt == self.attempts or out_of_time:
                message = payload.get("message", "") if isinstance(payload, dict) else ""
                raise GitHubError(status, f"{method} {path}: {status} {message}".strip())
            self.sleep(wait)
        raise AssertionError("unreachable")

    def paginate(self, path: str) -> Iterator[dict]:
        """Every item of a list endpoint, following the ``Link: rel="next"`` headers."""
        url: str | None = f"{path}{'&' if '?' in path else '?'}per_page=100"
        while url:
            items, headers = self.request("GET", url)
            yield from items
            url = _next_link(headers.get("link", ""))

    def pulls_for_commit(self, sha: str) -> list[dict]:
        return self.request("GET", f"/repos/{self.repository}/commits/{sha}/pulls")[0]

    def pull(self, number: int) -> dict:
        return self.request("GET", f"/repos/{self.repository}/pulls/{number}")[0]

    def issue_comments(self, number: int) -> Iterator[dict]:
        return self.paginate(f"/repos/{self.repository}/issues/{number}/comments")

    def create_comment(self, number: int, body: str) -> dict:
        path = f"/repos/{self.repository}/issues/{number}/comments"
        return self.request("POST", path, {"body": body}, retry=False)[0]

    def delete_comment(self, comment_id: int) -> None:
        self.request("DELETE", f"/repos/{self.repository}/issues/comments/{comment_id}")

    def update_comment(self, comment_id: int, body: str) -> dict:
        path = f"/repos/{self.repository}/issues/comments/{comment_id}"
        return self.request("PATCH", path, {"body": body})[0]

    def _retry_wait(
        self, status: int, headers: dict, attempt: int, payload: Any = None
    ) -> float | None:
        """Seconds to wait before retrying, or None when retrying cannot help.

        Header values come from the network: a malformed one falls back to backoff.
        """
        backoff = min(2.0 ** (attempt - 1), self.max_wait_s)
        if "retry-after" in headers:
            return min(_seconds_until(headers["retry-after"], backoff), self.max_wait_s)
        if status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
            reset = _number(headers.get("x-ratelimit-reset", ""))
            if reset is None:
                return backoff
            return min(max(reset - time.time(), 1.0), self.max_wait_s)
        message = payload.get("message", "") if isinstance(payload, dict) else ""
        if status == 429 or status >= 500 or "secondary rate limit" in str(message).lower():
            return backoff
        return None

    def _send(
        self, method: str, path: str, body: dict | None, timeout: float
    ) -> tuple[int, dict, Any]:
        url = path if path.startswith("http") else f"{self.api_url.rstrip('/')}{path}"
        request = urllib.request.Request(
            url,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "pokemon-battle-mlops-ci",
                **({"Content-Type": "application/json"} if body is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _lower(response.headers), _json(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _lower(error.headers), _json(error.read())
        except (urllib.error.URLError, OSError) as error:
            return 599, {}, {"message": f"no answer from {self.api_url}: {error}"}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _seconds_until(retry_after: str, fallback: float) -> float:
    """``Retry-After`` as seconds: a number, or an HTTP date; anything else: ``fallback``."""
    seconds = _number(retry_after)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return fallback
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0)


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"message": raw[:200].decode(errors="replace")}


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        match = re.search(r'<([^>]+)>;\s*rel="next"', part)
        if match:
            return match.group(1)
    return None


def append_github_file(variable: str, line: str, env: Mapping[str, str]) -> None:
    """Append ``line`` to the file Actions names in ``variable`` (GITHUB_OUTPUT, GITHUB_ENV…);
    outside Actions, print it so a local run shows what a workflow would get."""
    path = env.get(variable)
    if not path:
        print(f"{variable}: {line}")
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")

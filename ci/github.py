"""GitHub: the few REST calls we make, and the files Actions hands a step (GITHUB_OUTPUT…).

Where a run comes from (commit, branch, PR) is read by ``machine_learning.contract.provenance``.

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

from machine_learning.contract.failures import Refused

# GitHub's rule when a rate-limited answer does not say how long: "wait for at least one minute"
# (REST API docs, "Handle rate limit errors appropriately").
RATE_LIMIT_WAIT_S = 60.0


class GitHubError(Refused):
    """A GitHub API call failed; ``status`` is the HTTP status (599: no answer).

    ``retry_at`` (epoch seconds) is set when GitHub rate-limited the call for longer than the
    client could wait: nothing was applied, and the same call succeeds after that time.
    """

    def __init__(self, status: int, message: str, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_at = retry_at

    @property
    def rate_limited(self) -> bool:
        return self.retry_at is not None

    @property
    def retryable(self) -> bool:
        """A failure that may be gone on the next try and may have been applied (no answer, or
        a 5xx): a create must look before it retries. A rate limit is neither: the client has
        waited it out as long as its budget allows."""
        return self.status >= 500 and not self.rate_limited

    @property
    def retry_time(self) -> str:
        """When to try again, for a person reading a job log (UTC)."""
        return time.strftime("%H:%M:%S UTC", time.gmtime(self.retry_at or time.time()))


@dataclass
class GitHubClient:
    """The few REST calls the CI uses, on the standard library only (the comment job installs
    nothing heavy). Retries 5xx answers and waits out rate limits as GitHub's headers say,
    within ``budget_s`` seconds a call: a black-holed API or a limit that lifts only later is
    reported in time, not after minutes. ``sleep`` and ``budget_s`` are parameters so tests
    can record the waits and bound them."""

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
        """JSON answer and headers of one call, after retries.

        A rate-limited answer is waited out as its headers say and retried, even for a create
        (``retry`` False): GitHub refuses such a request without applying it. Other failures are
        retried only with ``retry``: a create that failed otherwise may have been applied, and
        only the caller can look.
        """
        deadline = time.monotonic() + self.budget_s
        for attempt in range(1, self.attempts + 1):
            timeout = max(min(self.request_timeout_s, deadline - time.monotonic()), 0.1)
            status, headers, payload = self._send(method, path, body, timeout)
            if status < 400:
                return payload, headers
            what = f"{method} {path}: {status} {_message(payload)}".strip()
            limited = rate_limit_wait(status, headers, _message(payload), time.time())
            if limited is not None:
                self._wait_out_rate_limit(limited, deadline, attempt, status, what)
                continue
            wait = self._retry_wait(status, headers, attempt)
            out_of_time = wait is not None and time.monotonic() + wait > deadline
            if wait is None or not retry or attempt == self.attempts or out_of_time:
                raise GitHubError(status, what)
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _wait_out_rate_limit(
        self, seconds: float, deadline: float, attempt: int, status: int, what: str
    ) -> None:
        """Sleep as GitHub asked, or raise at once when that would pass the call's budget (or
        this was its last attempt): a wait that cannot end in an answer only delays the news."""
        if attempt == self.attempts or time.monotonic() + seconds > deadline:
            retry_at = time.time() + seconds
            raise GitHubError(status, f"{what} (rate-limited for {seconds:.0f} s)", retry_at)
        self.sleep(seconds)

    def paginate(self, path: str) -> Iterator[dict]:
        """Every item of a list endpoint, following the ``Link: rel="next"`` headers."""
        url: str | None = f"{path}{'&' if '?' in path else '?'}per_page=100"
        while url:
            items, headers = self.request("GET", url)
            yield from items
            url = _next_link(headers.get("link", ""))

    def paginate_key(self, path: str, key: str) -> Iterator[dict]:
        """Every item of a list endpoint whose answer is an object holding the list under
        ``key`` (``{"total_count": …, "artifacts": […]}``), page by page."""
        page = 1
        while True:
            answer, _ = self.request(
                "GET", f"{path}{'&' if '?' in path else '?'}per_page=100&page={page}"
            )
            items = answer.get(key, []) if isinstance(answer, dict) else []
            yield from items
            if len(items) < 100:
                return
            page += 1

    def redirect_location(self, path: str) -> str:
        """Where a download endpoint redirects (short-lived storage that must not be sent our
        token); GitHubError when it answers anything but a redirect."""
        request = urllib.request.Request(
            f"{self.api_url.rstrip('/')}{path}",
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
            },
        )
        try:
            with _NO_REDIRECTS.open(request, timeout=self.request_timeout_s) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            if error.code in (301, 302, 307, 308) and error.headers.get("Location"):
                return error.headers["Location"]
            status = error.code
        except (urllib.error.URLError, OSError) as error:
            raise GitHubError(599, f"GET {path}: no answer from {self.api_url}: {error}") from None
        raise GitHubError(status, f"GET {path}: {status} where a redirect was expected")

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

    def dispatch_workflow(self, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Start a ``workflow_dispatch`` run of ``workflow`` (its file name) on ``ref``. Not
        retried: a dispatch that failed may have started a run all the same."""
        path = f"/repos/{self.repository}/actions/workflows/{workflow}/dispatches"
        self.request("POST", path, {"ref": ref, "inputs": inputs}, retry=False)

    def _retry_wait(self, status: int, headers: dict, attempt: int) -> float | None:
        """Seconds to wait before retrying a server error (5xx, or no answer: 599), or None when
        retrying cannot help. A malformed ``retry-after`` falls back to backoff."""
        if status < 500:
            return None
        backoff = min(2.0 ** (attempt - 1), self.max_wait_s)
        after = _seconds_until(headers.get("retry-after", ""), time.time())
        return backoff if after is None else min(after, self.max_wait_s)

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


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the caller follows, without the token
        return None


_NO_REDIRECTS = urllib.request.build_opener(_KeepRedirects)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def rate_limit_wait(
    status: int, headers: Mapping[str, str], message: str, now: float
) -> float | None:
    """Seconds GitHub asks us to wait when this answer is a rate limit, else None.

    A rate limit is a 429, or a 403 that says so: ``x-ratelimit-remaining: 0`` (primary),
    "secondary rate limit" in the message, or a ``retry-after``. A read-only token's 403 says
    none of these. The wait, in GitHub's order: ``retry-after``; the ``x-ratelimit-reset``
    time when nothing remains; else a minute. A header that cannot be read counts as absent.
    """
    primary = headers.get("x-ratelimit-remaining") == "0"
    secondary = "secondary rate limit" in message.lower()
    if not (
        status == 429 or (status == 403 and (primary or secondary or "retry-after" in headers))
    ):
        return None
    after = _seconds_until(headers.get("retry-after", ""), now)
    if after is not None:
        return after
    reset = _number(headers.get("x-ratelimit-reset", "")) if primary else None
    if reset is not None:
        return max(reset - now, 1.0)  # clocks differ: never hammer a limit about to lift
    return RATE_LIMIT_WAIT_S


def _seconds_until(retry_after: str, now: float) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date); None when it is neither."""
    seconds = _number(retry_after)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    return max(seconds, 0.0)


def _message(payload: Any) -> str:
    return str(payload.get("message", "")) if isinstance(payload, dict) else ""


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

"""A loopback stand-in for the GitHub REST API: the few endpoints the CI calls, real HTTP.

It keeps pull requests, issue comments and workflow artifacts in memory, paginates like GitHub
(``per_page``/``page`` with ``Link`` headers), checks the bearer token, rejects comment bodies
over 65,536 characters with 422, records every request, and can be told to answer the next
requests with given failures (403, 429 with ``retry-after``, 5xx …), or refuse a method's next
requests without applying them (a rate-limited create).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BODY_LIMIT = 65_536


def read_only(token: str) -> str:
    return f"{token}:read-only"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHub:
    repository: str = "octo/battles"
    token: str = "test-token"
    pulls: dict[int, dict] = field(default_factory=dict)
    comments: dict[int, dict] = field(default_factory=dict)
    pull_commits: dict[int, list[str]] = field(default_factory=dict)
    artifacts: dict[int, dict[str, bytes]] = field(default_factory=dict)  # run id -> name: zip
    requests: list[Recorded] = field(default_factory=list)
    failures: deque = field(default_factory=deque)  # (status, headers, body) answered next
    # method -> (status, headers, body) answered instead of the real answer of the next request
    # of that method, which is applied all the same (a create made although the client saw 502).
    failures_after: dict[str, tuple] = field(default_factory=dict)
    # method -> (status, headers, body) answered to the next requests of that method, which are
    # not applied: what GitHub does with a rate-limited request.
    refusals: dict[str, deque] = field(default_factory=dict)
    _next_id: int = 1000

    @property
    def read_only_token(self) -> str:
        """The token of a job without write permissions (or of a fork's run): GETs only."""
        return read_only(self.token)

    def add_pull(self, number: int, head_sha: str, state: str = "open") -> None:
        self.pulls[number] = {"number": number, "state": state, "head": {"sha": head_sha}}
        self.pull_commits[number] = [head_sha]

    def push(self, number: int, sha: str) -> None:
        """A new head for the pull request; its earlier commits stay associated with it."""
        self.pulls[number]["head"]["sha"] = sha
        self.pull_commits[number].append(sha)

    def add_comment(self, issue: int, body: str, user: str = "someone") -> int:
        self._next_id += 1
        self.comments[self._next_id] = {
            "id": self._next_id,
            "issue": issue,
            "body": body,
            "user": {"login": user},
            "html_url": f"https://github.test/c/{self._next_id}",
        }
        return self._next_id

    def comments_on(self, issue: int) -> list[dict]:
        return [c for c in self.comments.values() if c["issue"] == issue]

    def calls(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if method is None or r.method == method]

    # -- HTTP -----------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        self.requests.append(Recorded(method, path, query, headers, body))
        if self.failures:
            return self.failures.popleft()
        if self.refusals.get(method):
            return self.refusals[method].popleft()
        credential = headers.get("authorization", "")
        if credential == f"Bearer {self.read_only_token}" and method != "GET":
            return 403, {}, {"message": "Resource not accessible by integration"}
        if credential not in (f"Bearer {self.token}", f"Bearer {self.read_only_token}"):
            return 401, {}, {"message": "Bad credentials"}
        repo = re.escape(self.repository)
        routes = [
            ("GET", rf"/repos/{repo}/commits/(\w+)/pulls", self._pulls_for_commit),
            ("GET", rf"/repos/{repo}/pulls/(\d+)", self._pull),
            ("GET", rf"/repos/{repo}/issues/(\d+)/comments", self._list_comments),
            ("POST", rf"/repos/{repo}/issues/(\d+)/comments", self._create_comment),
            ("PATCH", rf"/repos/{repo}/issues/comments/(\d+)", self._update_comment),
            ("DELETE", rf"/repos/{repo}/issues/comments/(\d+)", self._delete_comment),
            ("GET", rf"/repos/{repo}/actions/runs/(\d+)/artifacts", self._list_artifacts),
            ("GET", rf"/repos/{repo}/actions/artifacts/(\d+)/zip", self._download_artifact),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                answer = handler(match.group(1), query, body)
                return self.failures_after.pop(method, answer)
        return 404, {}, {"message": "Not Found"}

    def _pulls_for_commit(self, sha, query, body):
        """Open pull requests the commit belongs to (GitHub: "associated with a commit")."""
        return 200, {}, [p for n, p in self.pulls.items() if sha in self.pull_commits[n]]

    def _pull(self, number, query, body):
        pull = self.pulls.get(int(number))
        return (200, {}, pull) if pull else (404, {}, {"message": "Not Found"})

    def _list_comments(self, issue, query, body):
        if int(issue) not in self.pulls:
            return 404, {}, {"message": "Not Found"}
        items = self.comments_on(int(issue))
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            base = f"/repos/{self.repository}/issues/{issue}/comments"
            headers["Link"] = f'<{self.url}{base}?per_page={per_page}&page={page + 1}>; rel="next"'
        return 200, headers, chunk

    def _create_comment(self, issue, query, body):
        if int(issue) not in self.pulls:
            return 404, {}, {"message": "Not Found"}
        if len(body.get("body", "")) > BODY_LIMIT:
            return (
                422,
                {},
                {
                    "message": "Validation Failed",
                    "errors": [{"message": "body is too long (maximum is 65536)"}],
                },
            )
        comment_id = self.add_comment(int(issue), body["body"], user="github-actions[bot]")
        return 201, {}, self.comments[comment_id]

    def _update_comment(self, comment_id, query, body):
        comment = self.comments.get(int(comment_id))
        if comment is None:
            return 404, {}, {"message": "Not Found"}
        if len(body.get("body", "")) > BODY_LIMIT:
            return 422, {}, {"message": "Validation Failed"}
        comment["body"] = body["body"]
        return 200, {}, comment

    def _delete_comment(self, comment_id, query, body):
        if self.comments.pop(int(comment_id), None) is None:
            return 404, {}, {"message": "Not Found"}
        return 204, {}, b""

    def _list_artifacts(self, run_id, query, body):
        items = [
            {"id": int(run_id) * 100 + i, "name": name, "expired": False}
            for i, name in enumerate(sorted(self.artifacts.get(int(run_id), {})))
        ]
        return 200, {}, {"total_count": len(items), "artifacts": items}

    def _download_artifact(self, artifact_id, query, body):
        run_id, index = divmod(int(artifact_id), 100)
        names = sorted(self.artifacts.get(run_id, {}))
        if index >= len(names):
            return 404, {}, {"message": "Not Found"}
        return 200, {"Content-Type": "application/zip"}, self.artifacts[run_id][names[index]]

    # -- server ---------------------------------------------------------------------------
    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, payload = fake.handle(
                    self.command, parts.path, query, headers, json.loads(raw) if raw else None
                )
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for key, value in ({"Content-Type": "application/json"} | extra).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll: shutdown() waits for it (the default 0.5 s, at every test's teardown).
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

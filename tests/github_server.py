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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BODY_LIMIT = 65_536


def read_only(token: str) -> str:
    return f"{token}:read-only"


def scoped(token: str, writes: set[str]) -> str:
    """A job's token that may write only the scopes its ``permissions:`` grant ``write``
    (GitHub's GITHUB_TOKEN); no scope at all is :func:`read_only`."""
    return f"{token}:write={','.join(sorted(writes))}" if writes else read_only(token)


def _scope_of(path: str) -> set[str]:
    """The permission scopes that allow writing at ``path``."""
    if "/deployments" in path:
        return {"deployments"}
    if "/actions/workflows/" in path:
        return {"actions"}
    if "/issues/" in path:
        return {"issues", "pull-requests"}
    return {"contents"}


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
    deployments: list[dict] = field(default_factory=list)  # newest last
    # Workflow dispatches received, oldest first ({"workflow", "ref", "inputs"}); checked, as
    # GitHub does, against the dispatched workflow's declared inputs when workflows_dir is set.
    dispatches: list[dict] = field(default_factory=list)
    workflows_dir: Path | None = None
    # Where the upload-artifact stand-in leaves a run's zips (<run id>/<name>.zip), if anywhere.
    artifact_dir: Path | None = None
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
        if method == "GET" and (blob := re.fullmatch(r"/_blobs/(\d+)", path)):
            return self._blob(int(blob.group(1)))  # a signed storage URL: no token
        if self.failures:
            return self.failures.popleft()
        if self.refusals.get(method):
            return self.refusals[method].popleft()
        # GitHub takes a token as "Bearer <token>" or "token <token>" (Octokit's form).
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            credential = ""
        base, _, grant = credential.partition(":")
        known = grant in ("", "read-only") or grant.startswith("write=")
        if base != self.token or not known:
            return 401, {}, {"message": "Bad credentials"}
        writes = (
            set(grant.removeprefix("write=").split(",")) if grant.startswith("write=") else set()
        )
        if method != "GET" and grant and not writes & _scope_of(path):
            return 403, {}, {"message": "Resource not accessible by integration"}
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
            ("GET", rf"/repos/{repo}/actions/artifacts()", self._all_artifacts),
            ("GET", rf"/repos/{repo}/deployments()", self._list_deployments),
            ("POST", rf"/repos/{repo}/deployments()", self._create_deployment),
            ("POST", rf"/repos/{repo}/deployments/(\d+)/statuses", self._deployment_status),
            ("POST", rf"/repos/{repo}/actions/workflows/([\w.-]+)/dispatches", self._dispatch),
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

    def _all_artifacts(self, _, query, body):
        """The repository's artifacts, newest first, each with the run that uploaded it."""
        stored = {int(p.name) for p in self.artifact_dir.iterdir()} if self.artifact_dir else set()
        items = []
        for run_id in sorted(stored | set(self.artifacts), reverse=True):
            _, _, listed = self._list_artifacts(str(run_id), query, body)
            meta = self._run_meta(run_id)
            items += [item | {"workflow_run": meta} for item in listed["artifacts"]]
        return self._page(items, query, "artifacts")

    def _run_meta(self, run_id: int) -> dict:
        """What the upload stand-in recorded of the run beside its zips (branch, commit)."""
        meta = {"id": run_id}
        recorded = self.artifact_dir / str(run_id) / "run.json" if self.artifact_dir else None
        if recorded is not None and recorded.is_file():
            meta |= json.loads(recorded.read_text())
        return meta

    def _page(self, items: list, query: dict, key: str) -> tuple[int, dict, dict]:
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        return 200, {}, {"total_count": len(items), key: chunk}

    def _list_deployments(self, _, query, body):
        found = [
            d
            for d in reversed(self.deployments)
            if query.get("environment") in (None, d["environment"])
        ]
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
        return 200, {}, found[(page - 1) * per_page : page * per_page]

    def _create_deployment(self, _, query, body):
        if not isinstance(body, dict) or "ref" not in body:
            return 422, {}, {"message": "Invalid request: ref is required"}
        self._next_id += 1
        deployment = {
            "id": self._next_id,
            "sha": body["ref"],
            "environment": body.get("environment", "production"),
            "description": body.get("description"),
            "payload": body.get("payload", {}),
            "created_at": f"2026-12-01T00:00:{len(self.deployments):02d}Z",
            "url": f"{self.url}/repos/{self.repository}/deployments/{self._next_id}",
            "statuses": [],
        }
        self.deployments.append(deployment)
        return 201, {}, deployment

    def _deployment_status(self, deployment_id, query, body):
        for deployment in self.deployments:
            if deployment["id"] == int(deployment_id):
                deployment["statuses"].append(body)
                return 201, {}, {"state": body.get("state")}
        return 404, {}, {"message": "Not Found"}

    def _dispatch(self, workflow, query, body):
        """A workflow_dispatch: 204, or 404/422 for what GitHub refuses (an unknown workflow,
        inputs the workflow does not declare, a choice outside its options)."""
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            return 422, {}, {"message": "Invalid request: ref is required"}
        inputs = body.get("inputs") or {}
        if self.workflows_dir is not None:
            refusal = _dispatch_refusal(self.workflows_dir / workflow, inputs)
            if refusal:
                return refusal
        self.dispatches.append({"workflow": workflow, "ref": body["ref"], "inputs": inputs})
        return 204, {}, b""

    def run_artifacts(self, run_id: int) -> dict[str, bytes]:
        """A run's artifacts: given to this object, or uploaded by the stand-in action."""
        found = dict(self.artifacts.get(run_id, {}))
        if self.artifact_dir is not None:
            folder = self.artifact_dir / str(run_id)
            found |= {p.stem: p.read_bytes() for p in folder.glob("*.zip")}
        return found

    def _list_artifacts(self, run_id, query, body):
        items = [
            {
                "id": int(run_id) * 100 + i,
                "name": name,
                "size_in_bytes": len(data),
                "expired": False,
                "created_at": "2026-12-01T00:00:00Z",
            }
            for i, (name, data) in enumerate(sorted(self.run_artifacts(int(run_id)).items()))
            if query.get("name") in (None, name)
        ]
        return 200, {}, {"total_count": len(items), "artifacts": items}

    def _download_artifact(self, artifact_id, query, body):
        """GitHub answers with a redirect to a short-lived storage URL."""
        if self._artifact(int(artifact_id)) is None:
            return 404, {}, {"message": "Not Found"}
        return 302, {"Location": f"{self.url}/_blobs/{artifact_id}"}, b""

    def _blob(self, artifact_id: int) -> tuple[int, dict[str, str], Any]:
        data = self._artifact(artifact_id)
        if data is None:
            return 404, {}, {"message": "Not Found"}
        return 200, {"Content-Type": "application/zip"}, data

    def _artifact(self, artifact_id: int) -> bytes | None:
        run_id, index = divmod(artifact_id, 100)
        names = sorted(self.run_artifacts(run_id))
        return self.run_artifacts(run_id)[names[index]] if index < len(names) else None

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


def _dispatch_refusal(workflow: Path, inputs: dict) -> tuple[int, dict, dict] | None:
    """GitHub's answer to a dispatch its workflow would refuse, or None."""
    import yaml

    if not workflow.is_file():
        return 404, {}, {"message": "Not Found"}
    on = yaml.safe_load(workflow.read_text())[True]  # YAML 1.1 reads the key `on` as True
    declared = (on.get("workflow_dispatch") or {}).get("inputs") or {}
    unexpected = sorted(set(inputs) - set(declared))
    if unexpected:
        return 422, {}, {"message": f"Unexpected inputs provided: {unexpected}"}
    for name, spec in declared.items():
        value = inputs.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return 422, {}, {"message": f"Input {name}: expected a string"}
        allowed = spec.get("options") or (
            ["true", "false"] if spec.get("type") == "boolean" else None
        )
        if allowed and value not in allowed:
            return (
                422,
                {},
                {
                    "message": f"Provided value '{value}' for input '{name}' not in the list "
                    "of allowed values"
                },
            )
    return None

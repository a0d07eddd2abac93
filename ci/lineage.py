"""The default branch's MLflow state outlives the Actions cache, or a run says it is lost.

The cache is best effort: a failed restore is only a warning, entries unread for 7 days are
evicted and a repository past 10 GB is trimmed. A default-branch run that found no snapshot
would train against no champion, promote a new "v1" and save a history of one run, which every
later run then restores: the champion's lineage restarted without a word. So:

- each default-branch run that saves a snapshot also uploads it as the artifact
  ``mlflow-state`` (kept 90 days): the durable second copy;
- each promotion records a GitHub deployment to the environment ``champion`` (the repository's
  Environments page then shows which commit serves), which proves that a lineage existed;
- before the state is loaded, :func:`recover` keeps what the cache restored, else brings back
  the newest ``mlflow-state`` artifact of a default-branch run, else refuses to go on when a
  deployment shows a champion existed — unless the operator asked to start afresh.

Standard library only, like the rest of the GitHub side.
"""

from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ci.github import GitHubClient, GitHubError
from machine_learning.contract.failures import Refused

ARTIFACT = "mlflow-state"
ENVIRONMENT = "champion"
MAX_SNAPSHOT_BYTES = 2 << 30  # a pruned snapshot is megabytes; refuse to unpack a bomb
DOWNLOAD_TIMEOUT_S = 120.0


class LineageLost(Refused):
    """A champion existed, and no snapshot of its state survives: the message says what to do."""


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` did, as one line for the log."""

    line: str


def recover(
    client: GitHubClient, target: Path, branch: str, start_afresh: bool = False
) -> Recovery:
    """Make sure ``target`` holds the lineage's newest snapshot, or that there is none to hold."""
    if (target / "manifest.json").is_file():
        return Recovery(f"the cache restored the snapshot in {target}: nothing to recover")
    artifact = newest_snapshot_artifact(client, branch)
    if artifact is not None:
        unpack(download_artifact(client, artifact), target)
        run = artifact.get("workflow_run", {}).get("id", "?")
        return Recovery(
            f"the cache had no snapshot: restored the `{ARTIFACT}` artifact of run {run} "
            f"({artifact.get('created_at', 'unknown date')})"
        )
    deployment = last_deployment(client)
    if deployment is None:
        return Recovery("no snapshot and no champion was ever promoted: a new lineage starts")
    if start_afresh:
        return Recovery(
            f"no snapshot survives the champion promoted at {_describe(deployment)}: "
            "starting afresh, as asked"
        )
    raise LineageLost(
        f"no snapshot of the MLflow state survives (no cache entry, no `{ARTIFACT}` artifact), "
        f"but a champion was promoted at {_describe(deployment)}: refusing to start a new "
        "lineage silently; dispatch the train workflow with start-afresh: true to begin anew"
    )


def newest_snapshot_artifact(client: GitHubClient, branch: str) -> dict | None:
    """The newest unexpired ``mlflow-state`` artifact uploaded by a run on ``branch``."""
    path = f"/repos/{client.repository}/actions/artifacts?name={ARTIFACT}"
    found = [
        item
        for item in client.paginate_key(path, "artifacts")
        if not item.get("expired") and item.get("workflow_run", {}).get("head_branch") == branch
    ]
    return max(found, key=lambda item: (item.get("created_at", ""), item["id"]), default=None)


def download_artifact(client: GitHubClient, artifact: dict) -> bytes:
    """The artifact's zip: GitHub answers with a redirect to short-lived storage, which must be
    fetched without our token (it is for GitHub only)."""
    path = f"/repos/{client.repository}/actions/artifacts/{artifact['id']}/zip"
    location = client.redirect_location(path)
    try:
        with urllib.request.urlopen(location, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(MAX_SNAPSHOT_BYTES + 1)
    except (urllib.error.URLError, OSError) as error:
        raise GitHubError(599, f"downloading the {ARTIFACT} artifact failed: {error}") from None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise GitHubError(413, f"the {ARTIFACT} artifact is larger than {MAX_SNAPSHOT_BYTES:,}")
    return data


def unpack(data: bytes, target: Path) -> None:
    """Unzip beside ``target``, then move it into place: regular files only, inside the
    folder, bounded in size (the state loader then checks the snapshot itself)."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
            if total > MAX_SNAPSHOT_BYTES:
                raise LineageLost(f"the {ARTIFACT} artifact unpacks to {total:,} bytes")
            for info in archive.infolist():
                _extract(archive, info, partial)
    except zipfile.BadZipFile as error:
        raise LineageLost(f"the {ARTIFACT} artifact is not a zip: {error}") from None
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path) -> None:
    destination = (root / info.filename).resolve()
    if not destination.is_relative_to(root.resolve()) or info.filename.startswith("/"):
        raise LineageLost(f"the {ARTIFACT} artifact holds a path outside it: {info.filename}")
    kind = (info.external_attr >> 16) & 0o170000
    if kind not in (0, 0o100000, 0o040000):  # a symlink or a device
        raise LineageLost(f"the {ARTIFACT} artifact holds a non-regular file: {info.filename}")
    if info.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, destination.open("wb") as out:
        shutil.copyfileobj(source, out)


def last_deployment(client: GitHubClient) -> dict | None:
    """The newest deployment to the ``champion`` environment, if any (newest first)."""
    path = f"/repos/{client.repository}/deployments?environment={ENVIRONMENT}&per_page=1"
    deployments, _ = client.request("GET", path)
    return deployments[0] if deployments else None


def record_promotion(client: GitHubClient, sha: str, version: str, model: str) -> str:
    """A successful deployment of ``sha`` to ``champion``: the lineage's marker, and what the
    repository's Environments page shows. Returns its URL."""
    created, _ = client.request(
        "POST",
        f"/repos/{client.repository}/deployments",
        {
            "ref": sha,
            "environment": ENVIRONMENT,
            "auto_merge": False,
            "required_contexts": [],
            "description": f"{model} v{version} is champion",
            "payload": {"model": model, "version": version},
            "production_environment": True,
        },
        retry=False,
    )
    client.request(
        "POST",
        f"/repos/{client.repository}/deployments/{created['id']}/statuses",
        {"state": "success", "description": f"{model} v{version}"},
    )
    return str(created.get("url", created["id"]))


def _describe(deployment: dict) -> str:
    sha = str(deployment.get("sha", "?"))[:7]
    return f"{sha} on {deployment.get('created_at', 'an unknown date')}"

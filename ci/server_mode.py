"""Which MLflow a workflow run uses — the team's server or the ephemeral stack — and why.

GitHub gives repository variables and secrets to some runs only: a pull request from a fork gets
neither (so it cannot reach the team server and is gated against the stack's cached state), a
Dependabot run gets the variables but no Actions secrets (so a basic-auth server refuses it). A
run that silently fell back would look like a clean pass; the job summary says what happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from machine_learning.contract.provenance import event_payload

DEPENDABOT = "dependabot[bot]"


def describe_mode(env: Mapping[str, str]) -> tuple[bool, str]:
    """(team mode?, one markdown line for the job summary)."""
    team = bool(env.get("TEAM_TRACKING_URI"))
    pull = event_payload(env).pull_request
    fork = bool(
        env.get("GITHUB_EVENT_NAME") == "pull_request"
        and pull is not None
        and pull.head.repo is not None
        and pull.head.repo.full_name != env.get("GITHUB_REPOSITORY", "")
    )
    if team and env.get("GITHUB_ACTOR") == DEPENDABOT:
        return True, (
            "**MLflow: the team server.** Dependabot runs get no Actions secrets: a server "
            "with basic auth will refuse this run (add the credentials as Dependabot secrets)."
        )
    if team:
        return True, "**MLflow: the team server** (repository variable `MLFLOW_TRACKING_URI`)."
    if fork:
        return False, (
            "**MLflow: the ephemeral stack.** Runs for pull requests from forks get no "
            "repository variables or secrets, so the team server is not used: this run is "
            "gated against the champion in the default branch's cached state — if that cache "
            "is cold, against no champion at all (thresholds only)."
        )
    return False, (
        "**MLflow: the ephemeral stack** (no `MLFLOW_TRACKING_URI` repository variable); "
        "state is carried between runs by the Actions cache."
    )


def state_cache_keys(env: Mapping[str, str], mlflow_version: str) -> tuple[str, list[str]]:
    """The state cache's key for this run and its restore-keys (this ref's newest snapshot,
    then the default branch's). actions/cache refuses keys with a comma, and git allows one in
    a branch name: such a ref's part of the key has its commas replaced and a hash of the whole
    ref appended (unique still); every other ref keeps the key it always had, so no lineage is
    orphaned by this rule."""
    default = event_payload(env).default_branch or "main"
    run = f"{env.get('GITHUB_RUN_ID', '0')}-{env.get('GITHUB_RUN_ATTEMPT', '1')}"
    own = _cache_part(env.get("GITHUB_REF", ""))
    prefixes = [f"mlflow-state-{mlflow_version}-{own}-"]
    main = f"mlflow-state-{mlflow_version}-{_cache_part(f'refs/heads/{default}')}-"
    if main not in prefixes:
        prefixes.append(main)
    return f"{prefixes[0]}{run}", prefixes


def _cache_part(ref: str) -> str:
    if "," not in ref:
        return ref
    digest = hashlib.sha256(ref.encode()).hexdigest()[:8]
    return f"{ref.replace(',', '_')}-{digest}"

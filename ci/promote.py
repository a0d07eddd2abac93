"""Promotion and rollback of the registered model's ``champion`` alias.

Promotion registers the validated run's model as a new version, moves ``champion`` to it and
the old champion to ``previous-champion``. It refuses a run whose gate did not pass, or whose
commit is not the one being promoted. Rollback swaps the two aliases back in one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ci.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    ensure_registered_model,
    register_version,
    version_by_alias,
)
from ci.verdict import Verdict

if TYPE_CHECKING:
    from mlflow import MlflowClient


class PromotionRefused(RuntimeError):
    """The run may not become champion; the message says why."""


@dataclass(frozen=True)
class AliasMove:
    champion: str
    previous: str | None

    def describe(self, verb: str) -> str:
        before = f"; v{self.previous} is now {PREVIOUS_CHAMPION}" if self.previous else ""
        return f"{verb}: v{self.champion} is now {CHAMPION}{before}"


def check_promotable(gate: dict[str, Any], run_id: str, sha: str) -> None:
    """Refuse anything but a passed gate of this very run at this very commit."""
    candidate = gate["candidate"]
    if candidate["run_id"] != run_id:
        raise PromotionRefused(f"gate.json is about run {candidate['run_id']}, not {run_id}")
    if gate["verdict"] != Verdict.PASS:
        raise PromotionRefused(f"run {run_id} did not pass the gate (verdict: {gate['verdict']})")
    if not sha or candidate["git_sha"] != sha:
        raise PromotionRefused(
            f"run {run_id} was trained at commit "
            f"{candidate['git_sha'][:12] or '(unknown)'}, not at the commit "
            f"being promoted {sha[:12] or '(unknown)'}"
        )


def promote(
    client: MlflowClient, name: str, gate: dict[str, Any], pr_number: str = ""
) -> AliasMove:
    """Register the gated run's model and make it the champion."""
    candidate = gate["candidate"]
    ensure_registered_model(client, name)
    tags = {
        "ci.git_sha": candidate["git_sha"],
        "gate.verdict": gate["verdict"],
        "ci.run_id": candidate["run_id"],
    }
    if pr_number or candidate.get("pr_number"):
        tags["ci.pr_number"] = str(pr_number or candidate["pr_number"])
    version = register_version(client, name, candidate["model_uri"], candidate["run_id"], tags)
    old = version_by_alias(client, name, CHAMPION)
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, old.version)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return AliasMove(str(version.version), str(old.version) if old else None)


def rollback(client: MlflowClient, name: str) -> AliasMove:
    """Swap ``champion`` and ``previous-champion``: the previous model serves again."""
    current = version_by_alias(client, name, CHAMPION)
    previous = version_by_alias(client, name, PREVIOUS_CHAMPION)
    if current is None or previous is None:
        raise PromotionRefused(
            f"nothing to roll back to: {name} has no "
            f"{CHAMPION if current is None else PREVIOUS_CHAMPION} alias"
        )
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current.version)
    return AliasMove(str(previous.version), str(current.version))

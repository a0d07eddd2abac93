"""Promotion and rollback of the registered model's ``champion`` alias, as compare-and-set moves.

Promotion registers the validated run's model as a new version, moves ``champion`` to it and
the old champion to ``previous-champion``. It refuses a run whose gate did not pass, whose commit
is not the one being promoted, or whose gate judged it against a champion that has moved since
(it would replace a model it was never compared with). Re-running the same promotion is a no-op.
Rollback swaps the two aliases back; it names the champion it expects to replace, so two
rollbacks at once cannot undo each other.

MLflow has no conditional alias update, so each move holds the registry lock (ci.registry_lock)
while it checks, writes and re-reads: of two moves racing, exactly one happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ci.registry import ensure_registered_model, register_version, version_by_alias, version_of_run
from ci.registry_lock import registry_lock
from machine_learning.contract.failures import Refused
from machine_learning.contract.gate_record import GateRecord
from machine_learning.contract.mlflow_names import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    TAG_GATE_CHAMPION_VERSION,
    TAG_GATE_VERDICT,
    TAG_GIT_SHA,
    TAG_PR_NUMBER,
    TAG_RUN_ID,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


class PromotionRefused(Refused):
    """The move may not happen (or lost a race); the message says why and what to do."""


@dataclass(frozen=True)
class AliasMove:
    champion: str
    previous: str | None
    changed: bool = True

    def describe(self, verb: str) -> str:
        if not self.changed:
            return f"nothing to do: v{self.champion} is already {CHAMPION}"
        before = f"; v{self.previous} is now {PREVIOUS_CHAMPION}" if self.previous else ""
        return f"{verb}: v{self.champion} is now {CHAMPION}{before}"


def check_promotable(gate: GateRecord, run_id: str, sha: str) -> None:
    """Refuse anything but a passed gate of this very run at this very commit."""
    candidate = gate.candidate
    if candidate.run_id != run_id:
        raise PromotionRefused(f"gate.json is about run {candidate.run_id}, not {run_id}")
    if not gate.passed:
        raise PromotionRefused(f"run {run_id} did not pass the gate (verdict: {gate.verdict})")
    if not sha or candidate.git_sha != sha:
        raise PromotionRefused(
            f"run {run_id} was trained at commit "
            f"{candidate.git_sha[:12] or '(unknown)'}, not at the commit "
            f"being promoted {sha[:12] or '(unknown)'}"
        )


def promote(client: MlflowClient, name: str, gate: GateRecord, pr_number: str = "") -> AliasMove:
    """Make the gated run's model the champion, if the champion is still the one it beat."""
    candidate = gate.candidate
    expected = gate.champion.version if gate.champion else None
    ensure_registered_model(client, name)
    with registry_lock(client, name):
        current = version_by_alias(client, name, CHAMPION)
        if current is not None and current.run_id == candidate.run_id:
            return AliasMove(str(current.version), None, changed=False)
        actual = str(current.version) if current else None
        if actual != expected:
            raise PromotionRefused(
                f"the gate judged run {candidate.run_id} against "
                f"{_shown(expected)}, but {CHAMPION} is now {_shown(actual)}: "
                "re-run the gate against the new champion"
            )
        version = version_of_run(client, name, candidate.run_id) or register_version(
            client, name, candidate.model_uri, candidate.run_id, _version_tags(gate, pr_number)
        )
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current.version)
        client.set_registered_model_alias(name, CHAMPION, version.version)
        _verify(client, name, str(version.version), actual)
    return AliasMove(str(version.version), actual)


def rollback(client: MlflowClient, name: str, expected: str | None = None) -> AliasMove:
    """Swap ``champion`` and ``previous-champion``: the previous model serves again.

    ``expected`` is the champion version being rolled back (default: the one read first);
    when another move changed it meanwhile, nothing is changed.
    """
    expected = expected or _version(version_by_alias(client, name, CHAMPION))
    with registry_lock(client, name):
        current = version_by_alias(client, name, CHAMPION)
        previous = version_by_alias(client, name, PREVIOUS_CHAMPION)
        if current is None or previous is None:
            raise PromotionRefused(
                f"nothing to roll back to: {name} has no "
                f"{CHAMPION if current is None else PREVIOUS_CHAMPION} alias"
            )
        if str(current.version) != expected:
            raise PromotionRefused(
                f"{CHAMPION} is v{current.version}, not {_shown(expected)} as expected: "
                "another move happened meanwhile; nothing rolled back"
            )
        if str(current.version) == str(previous.version):
            raise PromotionRefused(
                f"{CHAMPION} and {PREVIOUS_CHAMPION} are both v{current.version}: "
                "set previous-champion by hand (ci promote, or the MLflow UI)"
            )
        client.set_registered_model_alias(name, CHAMPION, previous.version)
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current.version)
        _verify(client, name, str(previous.version), str(current.version))
    return AliasMove(str(previous.version), str(current.version))


def _verify(client: MlflowClient, name: str, champion: str, previous: str | None) -> None:
    """Re-read both aliases: what was written is what the registry now says."""
    now = _version(version_by_alias(client, name, CHAMPION))
    before = _version(version_by_alias(client, name, PREVIOUS_CHAMPION))
    if now != champion or (previous is not None and before != previous):
        raise PromotionRefused(
            f"after the move {CHAMPION} is {_shown(now)} and {PREVIOUS_CHAMPION} "
            f"{_shown(before)}, not v{champion} and {_shown(previous)}: a move outside this "
            "tool happened meanwhile; check the registry"
        )


def _version_tags(gate: GateRecord, pr_number: str) -> dict[str, str]:
    candidate = gate.candidate
    tags = {
        TAG_GIT_SHA: candidate.git_sha,
        TAG_GATE_VERDICT: str(gate.verdict),
        TAG_RUN_ID: candidate.run_id,
        TAG_GATE_CHAMPION_VERSION: gate.champion.version if gate.champion else "",
    }
    if pr_number or candidate.pr_number:
        tags[TAG_PR_NUMBER] = str(pr_number or candidate.pr_number)
    return {key: value for key, value in tags.items() if value}


def _version(version) -> str | None:
    return str(version.version) if version is not None else None


def _shown(version: str | None) -> str:
    return f"v{version}" if version else "no champion"

"""The registered model: its thresholds (tags), its champion and previous champion (aliases)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ci.search_filters import quoted
from ci.thresholds import GATE, Rule, ThresholdFamily

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def ensure_registered_model(client: MlflowClient, name: str) -> dict[str, str]:
    """The registered model's tags, creating the model on first use."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).tags)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.create_registered_model(name, description="Pokémon battle outcome classifier")
    except MlflowException as exc:  # created by a concurrent job meanwhile
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return dict(client.get_registered_model(name).tags)
    return {}


def load_thresholds(
    client: MlflowClient,
    name: str,
    family: ThresholdFamily = GATE,
    seed_file: Path | None = None,
) -> tuple[list[Rule], str]:
    """A family's thresholds (the gate's by default) and where they came from; seeds the
    registry from ``seed_file`` (the family's own by default) when it has none."""
    thresholds = list(family.from_tags(ensure_registered_model(client, name)))
    if thresholds:
        return thresholds, f"registered model {name} tags"
    seed_file = seed_file or family.seed_file
    thresholds = list(family.from_seed_file(seed_file))
    write_thresholds(client, name, thresholds, family.prefix)
    return thresholds, f"{seed_file.name} (seeded into {name}: no {family.prefix}* tags were set)"


def write_thresholds(
    client: MlflowClient,
    name: str,
    thresholds: Sequence[Rule],
    prefix: str,
    replace_all: bool = False,
) -> None:
    """Set these thresholds' tags; with ``replace_all``, delete every other tag under
    ``prefix`` (``gate.`` or ``monitor.``: the other family's tags are never touched)."""
    tags = ensure_registered_model(client, name)
    for rule in thresholds:
        if not rule.tag.startswith(prefix):  # a programming error: it would never be pruned
            raise ValueError(f"threshold tag {rule.tag} is not under {prefix}")
        client.set_registered_model_tag(name, rule.tag, rule.to_json())
    if replace_all:
        keep = {rule.tag for rule in thresholds}
        for stale in sorted(tag for tag in tags if tag.startswith(prefix) and tag not in keep):
            client.delete_registered_model_tag(name, stale)


def register_version(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> ModelVersion:
    """A new version of ``name`` from a logged model (``models:/m-…``) or a run artifact."""
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def version_of_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version already registered from ``run_id`` (a re-run promotion reuses it)."""
    versions = client.search_model_versions(
        f"name = {quoted(name)} and run_id = {quoted(run_id)}", max_results=10
    )
    return min(versions, key=lambda v: int(v.version)) if versions else None

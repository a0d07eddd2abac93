"""``ci thresholds show|set|sync``: what each prints, kept out of the CLI's dispatch code."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ci.registry import ensure_registered_model, write_thresholds
from ci.thresholds import (
    SEED_FILE,
    Threshold,
    ThresholdError,
    from_seed_file,
    from_tags,
    updated,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


def show(client: MlflowClient, name: str) -> list[str]:
    """The thresholds in the registry, or those the first gate would seed (read-only)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = dict(client.get_registered_model(name).tags)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tags = {}
    rules = from_tags(tags)
    if rules:
        return [f"{rule.tag:<22} {rule.describe()}" for rule in rules]
    seeds = from_seed_file(SEED_FILE)
    return [
        f"{name} has no gate.* tags yet: the first gate seeds them from {SEED_FILE.name}:",
        *(f"{rule.tag:<22} {rule.describe()}" for rule in seeds),
    ]


def sync(client: MlflowClient, name: str, rules: list[Threshold]) -> list[str]:
    """Make the registry's gate.* tags equal to ``rules`` (read and validated beforehand)."""
    write_thresholds(client, name, rules, replace_all=True)
    return [f"{rule.tag:<22} {rule.describe()}" for rule in from_tags(_tags(client, name))]


def requested_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The fields ``set`` was given, checked (metric name included) before MLflow is asked."""
    changes: dict[str, Any] = {}
    if args.threshold is not None:
        changes["threshold"] = _threshold(args.threshold)
    if args.direction is not None:
        changes["greater_is_better"] = args.direction == "higher"
    if args.tolerance_absolute is not None:
        changes["tolerance_absolute"] = args.tolerance_absolute
    if args.tolerance_relative is not None:
        changes["tolerance_relative"] = args.tolerance_relative
    if not changes:
        raise ThresholdError(
            "set needs at least one of --threshold, --direction, --tolerance-absolute, "
            "--tolerance-relative"
        )
    updated(None, args.metric, changes)  # raises on an unknown metric or a bad value
    return changes


def update(client: MlflowClient, name: str, metric: str, changes: dict[str, Any]) -> list[str]:
    """Change the given fields of one metric's threshold; keep the rest."""
    current = {rule.metric: rule for rule in from_tags(ensure_registered_model(client, name))}
    rule = updated(current.get(metric), metric, changes)
    write_thresholds(client, name, [rule])
    return [f"{rule.tag:<22} {rule.describe()}"]


def _tags(client: MlflowClient, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).tags)


def _threshold(text: str) -> float | None:
    if text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ThresholdError(f"--threshold must be a number or 'none', got {text!r}") from None

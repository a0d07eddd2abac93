"""``ci thresholds show|set|sync``: what each prints, kept out of the CLI's dispatch code.

Each acts on one family of thresholds (``--for gate|monitor``): the gate's ``gate.*`` tags or
the monitor's ``monitor.*`` tags, never both at once, so syncing one never prunes the other.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ci.monitor_thresholds import MONITOR
from ci.registry import ensure_registered_model, write_thresholds
from ci.thresholds import GATE, Rule, ThresholdError, ThresholdFamily
from machine_learning.monitoring.names import monitor_metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient

FAMILIES = {family.name: family for family in (GATE, MONITOR)}


def family_of(args: argparse.Namespace) -> ThresholdFamily:
    """The family ``--for`` names; for ``set`` without it, the one the metric belongs to (the
    gate's metrics are ``test_*``, the monitor's are not: the names never overlap)."""
    if args.family:
        return FAMILIES[args.family]
    if args.action == "set" and args.metric in monitor_metrics():
        return MONITOR
    return GATE


def show(client: MlflowClient, name: str, family: ThresholdFamily = GATE) -> list[str]:
    """The thresholds in the registry, or those the family's first user would seed
    (read-only)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = dict(client.get_registered_model(name).tags)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tags = {}
    rules = family.from_tags(tags)
    if rules:
        return family.listing(rules)
    seeds = family.from_seed_file(family.seed_file)
    return [
        f"{name} has no {family.prefix}* tags yet: {family.seeded_by} seeds them from "
        f"{family.seed_file.name}:",
        *family.listing(seeds),
    ]


def sync(
    client: MlflowClient, name: str, rules: list[Rule], family: ThresholdFamily = GATE
) -> list[str]:
    """Make the registry's tags of the family equal to ``rules`` (read and validated
    beforehand); the other family's tags are left alone."""
    write_thresholds(client, name, rules, family.prefix, replace_all=True)
    return family.listing(family.from_tags(_tags(client, name)))


def requested_changes(args: argparse.Namespace, family: ThresholdFamily = GATE) -> dict[str, Any]:
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
    # Raises on an unknown metric or a bad value. Checked against the seed's rule when there is
    # one: a monitor threshold needs a bound, so "--direction" alone is judged as a change to it.
    seeds = {rule.metric: rule for rule in family.from_seed_file(family.seed_file)}
    family.updated(seeds.get(args.metric), args.metric, changes)
    return changes


def update(
    client: MlflowClient,
    name: str,
    metric: str,
    changes: dict[str, Any],
    family: ThresholdFamily = GATE,
) -> list[str]:
    """Change the given fields of one metric's threshold; keep the rest."""
    current = {
        rule.metric: rule for rule in family.from_tags(ensure_registered_model(client, name))
    }
    rule = family.updated(current.get(metric), metric, changes)
    write_thresholds(client, name, [rule], family.prefix)
    return family.listing([rule])


def _tags(client: MlflowClient, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).tags)


def _threshold(text: str) -> float | None:
    if text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ThresholdError(f"--threshold must be a number or 'none', got {text!r}") from None

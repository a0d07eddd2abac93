"""Monitor thresholds: ``{"threshold": …, "greater_is_better": …}`` specs stored as
registered-model tags ``monitor.<metric>``, seeded from ``monitor_thresholds.toml``.

The same shape as the gate's (``ci.thresholds``) without the tolerances, which only make sense
against a champion. Validation fails closed: an unknown metric, a missing or non-finite bound, a
direction contrary to the metric's own (a PSI "floor" would breach every window), or a seed file
with no thresholds is one ThresholdError naming where it came from — the same error the
``thresholds`` command already turns into exit 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci.thresholds import ThresholdError, ThresholdFamily, read_seed_table, tag_specs
from machine_learning.contract.mlflow_names import MONITOR_PREFIX
from machine_learning.monitoring.names import greater_is_better, monitor_metrics

SEED_FILE = Path(__file__).resolve().parent / "monitor_thresholds.toml"
KEYS = {"threshold", "greater_is_better"}
# Where each kind of metric can meaningfully sit; a bound outside it breaches always or never.
RANGES = {"psi": (0.0, 10.0), "p_value": (0.0, 1.0), "log_loss": (0.0, 20.0)}
DEFAULT_RANGE = (0.0, 1.0)  # accuracy, f1, ece


@dataclass(frozen=True)
class MonitorThreshold:
    metric: str
    threshold: float
    greater_is_better: bool

    @property
    def tag(self) -> str:
        return f"{MONITOR_PREFIX}{self.metric}"

    def to_json(self) -> str:
        return json.dumps(
            {"threshold": self.threshold, "greater_is_better": self.greater_is_better},
            sort_keys=True,
        )

    def crossed(self, value: float) -> bool:
        """Whether ``value`` is on the wrong side of the bound (the bound itself is fine)."""
        return value < self.threshold if self.greater_is_better else value > self.threshold

    def describe(self) -> str:
        return f"{'≥' if self.greater_is_better else '≤'} {self.threshold:g}"


def parse_spec(metric: str, spec: Any, origin: str) -> MonitorThreshold:
    """One validated spec (from a tag, the seed file or the CLI); ``origin`` names it."""
    if metric not in monitor_metrics():
        raise ThresholdError(
            f"{origin}: {metric[:60]!r} is not a metric the monitor computes; use "
            "<feature>.psi or <feature>.p_value of a profiled feature or p_a_wins, or "
            "accuracy, f1, log_loss, ece"
        )
    if not isinstance(spec, dict):
        raise ThresholdError(f"{origin}: expected a table/object of {sorted(KEYS)}, got {spec!r}")
    unknown = set(spec) - KEYS
    if unknown:
        raise ThresholdError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    return MonitorThreshold(metric, _bound(metric, spec, origin), _direction(metric, spec, origin))


def _bound(metric: str, spec: dict[str, Any], origin: str) -> float:
    value = spec.get("threshold")
    low, high = RANGES.get(metric.rsplit(".", 1)[-1], DEFAULT_RANGE)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not low < value <= high:
        raise ThresholdError(
            f"{origin}: threshold must be a number in ({low:g}, {high:g}], got {value!r}"
        )
    return float(value)


def _direction(metric: str, spec: dict[str, Any], origin: str) -> bool:
    own = greater_is_better(metric)
    direction = spec.get("greater_is_better", own)
    if not isinstance(direction, bool):
        raise ThresholdError(f"{origin}: greater_is_better must be true or false")
    if direction is not own:
        raise ThresholdError(
            f"{origin}: greater_is_better must be {str(own).lower()} for {metric} "
            f"({'higher' if own else 'lower'} is better)"
        )
    return direction


def updated(
    rule: MonitorThreshold | None, metric: str, changes: dict[str, Any]
) -> MonitorThreshold:
    """``rule`` with only the fields in ``changes`` replaced (a new rule when there is none);
    a field the monitor's thresholds do not have (a tolerance) is refused by parse_spec."""
    spec = json.loads(rule.to_json()) if rule else {}
    return parse_spec(metric, spec | changes, f"{MONITOR_PREFIX}{metric}")


def from_tags(tags: dict[str, str]) -> list[MonitorThreshold]:
    """The ``monitor.*`` thresholds among a registered model's tags, sorted by metric."""
    specs = tag_specs(tags, MONITOR_PREFIX)
    return [parse_spec(metric, spec, where) for metric, spec, where in specs]


def from_seed_file(path: Path = SEED_FILE) -> list[MonitorThreshold]:
    """Every threshold of a TOML file, all validated before any is used; none is an error
    (a monitor without thresholds would call every window healthy)."""
    table = read_seed_table(path)
    rules = [_seed(path, metric, spec) for metric, spec in table.items()]
    if not rules:
        raise ThresholdError(
            f"{path} defines no thresholds: a monitor without any calls every window healthy; "
            'add a table such as ["diff_bst.psi"]'
        )
    return rules


def _seed(path: Path, metric: str, spec: Any) -> MonitorThreshold:
    origin = f"{path.name} [{metric}]"
    nested = isinstance(spec, dict) and any(isinstance(v, dict) for v in spec.values())
    if nested and metric not in monitor_metrics():
        inner = next(key for key, value in spec.items() if isinstance(value, dict))
        raise ThresholdError(
            f'{origin}: write a dotted metric name in quotes, ["{metric}.{inner}"]: TOML '
            "reads an unquoted dot as a nested table"
        )
    return parse_spec(metric, spec, origin)


MONITOR = ThresholdFamily(
    "monitor",
    MONITOR_PREFIX,
    SEED_FILE,
    from_tags,
    from_seed_file,
    updated,
    "the first monitoring pass",
    30,
)

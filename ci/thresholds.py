"""Gate thresholds: MetricThreshold-style specs stored as registered-model tags ``gate.<metric>``.

A tag's value is JSON: ``{"threshold": 0.85, "greater_is_better": true,
"tolerance_absolute": 0.005, "tolerance_relative": 0.0}``. Unlike MLflow's MetricThreshold,
whose ``min_*_change`` demand an improvement, the tolerances here bound an accepted regression.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from machine_learning.contract.failures import BadInput
from machine_learning.contract.metric_names import GATE_METRICS, greater_is_better
from machine_learning.contract.mlflow_names import GATE_PREFIX

SEED_FILE = Path(__file__).resolve().parent / "thresholds.toml"
KEYS = {"threshold", "greater_is_better", "tolerance_absolute", "tolerance_relative"}


class ThresholdError(BadInput, ValueError):
    """A threshold spec that cannot be used; the message names where it came from."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    threshold: float | None
    greater_is_better: bool = True
    tolerance_absolute: float = 0.0
    tolerance_relative: float = 0.0

    @property
    def tag(self) -> str:
        return f"{GATE_PREFIX}{self.metric}"

    def to_json(self) -> str:
        spec = {key: value for key, value in asdict(self).items() if key != "metric"}
        return json.dumps(spec, sort_keys=True)

    def allowed_regression(self, champion: float) -> float:
        """How far the candidate may fall behind the champion before it can fail."""
        return max(self.tolerance_absolute, self.tolerance_relative * abs(champion))

    def describe(self) -> str:
        bound = (
            "none"
            if self.threshold is None
            else (f"{'≥' if self.greater_is_better else '≤'} {self.threshold:g}")
        )
        tolerances = [f"{self.tolerance_absolute:g}"] if self.tolerance_absolute else []
        if self.tolerance_relative:
            tolerances.append(f"{self.tolerance_relative:.0%}")
        return f"{bound}, tolerance {' or '.join(tolerances) or '0'}"


def parse_spec(metric: str, spec: Any, origin: str) -> Threshold:
    """Validate one spec (from a tag, the seed file or the CLI); ``origin`` names it in errors.

    The metric must be one the training job logs and the gate computes; its direction defaults
    to the metric's own (``test_log_loss`` improves downwards).
    """
    if metric not in GATE_METRICS:
        raise ThresholdError(
            f"{origin}: {metric[:60]!r} is not a metric the gate computes; "
            f"use one of {', '.join(GATE_METRICS)}"
        )
    if not isinstance(spec, dict):
        raise ThresholdError(f"{origin}: expected a table/object of {sorted(KEYS)}, got {spec!r}")
    unknown = set(spec) - KEYS
    if unknown:
        raise ThresholdError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    threshold = spec.get("threshold")
    if threshold is not None and not _is_number(threshold):
        raise ThresholdError(f"{origin}: threshold must be a number or null, got {threshold!r}")
    direction = spec.get("greater_is_better", greater_is_better(metric))
    if not isinstance(direction, bool):
        raise ThresholdError(f"{origin}: greater_is_better must be true or false")
    for key in ("tolerance_absolute", "tolerance_relative"):
        value = spec.get(key, 0.0)
        if not _is_number(value) or value < 0:
            raise ThresholdError(f"{origin}: {key} must be a number >= 0, got {value!r}")
    return Threshold(
        metric=metric,
        threshold=None if threshold is None else float(threshold),
        greater_is_better=direction,
        tolerance_absolute=float(spec.get("tolerance_absolute", 0.0)),
        tolerance_relative=float(spec.get("tolerance_relative", 0.0)),
    )


def updated(rule: Threshold | None, metric: str, changes: dict[str, Any]) -> Threshold:
    """``rule`` with only the fields in ``changes`` replaced (a new rule when there is none)."""
    spec = json.loads(rule.to_json()) if rule else {}
    return parse_spec(metric, spec | changes, f"{GATE_PREFIX}{metric}")


def from_tags(tags: dict[str, str]) -> list[Threshold]:
    """The thresholds among a registered model's tags, sorted by metric."""
    return [parse_spec(metric, spec, where) for metric, spec, where in tag_specs(tags, GATE_PREFIX)]


def tag_specs(tags: dict[str, str], prefix: str) -> Iterator[tuple[str, Any, str]]:
    """(metric, parsed JSON spec, where) of each tag under ``prefix``, sorted by tag: the gate's
    and the monitor's thresholds live in tags alike. NaN and Infinity are not JSON."""
    for tag, value in sorted(tags.items()):
        if not tag.startswith(prefix):
            continue
        try:
            spec = json.loads(value, parse_constant=_not_json)
        except ValueError as exc:
            raise ThresholdError(f"tag {tag}: not valid JSON ({exc}): {value[:60]!r}") from None
        yield tag[len(prefix) :], spec, f"tag {tag}"


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_seed_table(path: Path) -> dict[str, Any]:
    """A seed file's TOML table; any reason it cannot be read is one ThresholdError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ThresholdError(f"{path}: not UTF-8 text") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ThresholdError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def from_seed_file(path: Path = SEED_FILE) -> list[Threshold]:
    """Every threshold of a TOML file, all validated before any is used; none is an error."""
    table = read_seed_table(path)
    rules = [parse_spec(metric, spec, f"{path.name} [{metric}]") for metric, spec in table.items()]
    if not rules:
        raise ThresholdError(
            f"{path} defines no thresholds: a gate without any would pass everything; "
            f"add a table such as [{GATE_METRICS[3]}]"
        )
    return rules


class Rule(Protocol):
    """What the registry and ``ci thresholds`` need of a threshold, the gate's or the monitor's."""

    metric: str

    @property
    def tag(self) -> str: ...

    def to_json(self) -> str: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ThresholdFamily:
    """One set of thresholds in the registry: the gate's (``gate.*``) or the monitor's
    (``monitor.*``). Both are registered-model tags seeded from a TOML file the first time
    their user finds none, so the registry and ``ci thresholds`` handle them alike."""

    name: str  # what ``ci thresholds --for`` calls it
    prefix: str
    seed_file: Path
    from_tags: Callable[[dict[str, str]], Sequence[Rule]]
    from_seed_file: Callable[[Path], Sequence[Rule]]
    updated: Callable[[Any, str, dict[str, Any]], Rule]  # one rule with some fields changed
    seeded_by: str  # who seeds the tags when there are none
    width: int  # the tag column of a listing

    def listing(self, rules: Sequence[Rule]) -> list[str]:
        """One line per threshold: its tag, then its bound."""
        return [f"{rule.tag:<{self.width}} {rule.describe()}" for rule in rules]


GATE = ThresholdFamily(
    "gate", GATE_PREFIX, SEED_FILE, from_tags, from_seed_file, updated, "the first gate", 22
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

"""The reference profile: what a version's training battles and test predictions looked like.

Logged by the training run as ``profile.json`` (a few tens of KB, never the raw rows) so the
monitor can compare any window of live battles with the data *that version* learnt from:

- a **continuous** feature keeps its quantile bin edges (``bins`` bins, fewer when ties merge
  edges), the training share per bin (for PSI) and a seeded random sample of at most
  ``SAMPLE_SIZE`` values (for the two-sample Kolmogorov-Smirnov test);
- a **categorical** one (the types, the speed order) keeps its categories, most frequent first,
  with their shares and the share of anything else (for PSI and the chi-square test).

The predicted probability is profiled from the held-out test battles, the rest from the
training battles. Bins are open-ended at both sides, so a live value beyond the training range
still lands in a bin, and the same function bins training and live values.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from machine_learning.contract.records import JsonRecord, RecordError, read_json
from machine_learning.datasets import DatasetVersion
from machine_learning.monitoring import MonitoringInputError
from machine_learning.monitoring.names import (
    ALL_FEATURES,
    ENGINEERED,
    PREDICTION,
    STAT_COLUMNS,
    TYPE_COLUMNS,
    is_categorical,
    profiled_features,
)

if TYPE_CHECKING:
    import pandas as pd

PROFILE_FILE = "profile.json"  # the run artifact's name
PROFILE_FORMAT = 1
MAX_PROFILE_BYTES = 256 * 1024  # ours are ~40 KB; a forged or broken one may be anything
DEFAULT_BINS = 10
SAMPLE_SIZE = 500  # reference values kept per continuous feature for the KS test
MAX_BINS, MAX_SAMPLE, MAX_CATEGORIES = 50, 2_000, 64
SHARE_TOLERANCE = 1e-6
SIGNIFICANT_DIGITS = 6  # edges and samples are rounded: the file stays small, bins unchanged
OTHER = "(other)"  # how reports name the share of categories the profile does not list


class FeatureKind(StrEnum):
    CONTINUOUS = "continuous"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class FeatureProfile(JsonRecord):
    """One feature's reference distribution; ``shares`` has one more entry than ``edges`` (or
    than ``categories``: the last is the share of every other category)."""

    name: str
    kind: FeatureKind
    n: int
    shares: list[float]
    edges: list[float] = field(default_factory=list)
    sample: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = f"feature {self.name[:40]!r}"
        if self.name not in ALL_FEATURES:
            raise ValueError(f"{where} is not one the monitor knows how to compute")
        expected = FeatureKind.CATEGORICAL if is_categorical(self.name) else FeatureKind.CONTINUOUS
        if self.kind is not expected:
            raise ValueError(f"{where} must be {expected}, not {self.kind}")
        if self.n < 1:
            raise ValueError(f"{where}: n must be at least 1, got {self.n}")
        _check_shares(where, self.shares)
        if self.kind is FeatureKind.CONTINUOUS:
            self._check_continuous(where)
        else:
            self._check_categorical(where)

    def _check_continuous(self, where: str) -> None:
        if self.categories:
            raise ValueError(f"{where} is continuous: it has no categories")
        if len(self.shares) != len(self.edges) + 1 or len(self.shares) > MAX_BINS:
            raise ValueError(
                f"{where}: needs one share more than edges, at most {MAX_BINS} bins; "
                f"got {len(self.shares)} shares for {len(self.edges)} edges"
            )
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"{where}: edges must increase strictly")
        if not 1 <= len(self.sample) <= MAX_SAMPLE:
            raise ValueError(f"{where}: the sample must hold 1 to {MAX_SAMPLE:,} values")

    def _check_categorical(self, where: str) -> None:
        if self.edges or self.sample:
            raise ValueError(f"{where} is categorical: it has no edges or sample")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"{where}: categories repeat")
        if len(self.categories) > MAX_CATEGORIES or len(self.shares) != len(self.categories) + 1:
            raise ValueError(
                f"{where}: needs at most {MAX_CATEGORIES} categories and one share more "
                f"(the rest); got {len(self.shares)} shares for {len(self.categories)}"
            )

    def bin_counts(self, values: np.ndarray) -> np.ndarray:
        """How many of ``values`` fall in each reference bin (or category, then the rest).

        Continuous values must be finite (the caller drops and counts the others).
        """
        if self.kind is FeatureKind.CONTINUOUS:
            return continuous_counts(self.edges, values)
        return categorical_counts(self.categories, values)


def continuous_counts(edges: list[float], values: np.ndarray) -> np.ndarray:
    """Counts per bin ``(-inf, e0), [e0, e1), …, [ek, inf)``: open-ended, so nothing is lost."""
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def categorical_counts(categories: list[str], values: np.ndarray) -> np.ndarray:
    """Counts per category, then of every value the categories do not list."""
    lookup = {category: i for i, category in enumerate(categories)}
    other = len(categories)
    index = np.fromiter((lookup.get(v, other) for v in values), dtype=np.int64, count=len(values))
    return np.bincount(index, minlength=other + 1)


@dataclass(frozen=True)
class ReferenceProfile(JsonRecord):
    """A version's reference: its battle features (training set) and predictions (test set)."""

    dataset_version: DatasetVersion
    features: list[FeatureProfile]
    prediction: FeatureProfile
    format: int = PROFILE_FORMAT

    def __post_init__(self) -> None:
        if self.format != PROFILE_FORMAT:
            raise ValueError(f"format {self.format} is not {PROFILE_FORMAT}, the one known here")
        names = [feature.name for feature in self.features]
        allowed = profiled_features(self.dataset_version)
        if not names or len(set(names)) != len(names):
            raise ValueError("features must be a non-empty list of distinct features")
        extra = [name for name in names if name not in allowed]
        if extra:
            raise ValueError(
                f"a {self.dataset_version} profile cannot hold {', '.join(extra)[:80]}"
            )
        if self.prediction.name != PREDICTION:
            raise ValueError(f"prediction must profile {PREDICTION}, not {self.prediction.name!r}")

    def to_json(self) -> str:
        """Compact JSON (the artifact's bytes); whole numbers (most values) without ``.0``."""
        return json.dumps(_compact(self.to_dict()), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = PROFILE_FILE) -> Self:
        """The profile from JSON text; anything malformed is one RecordError naming the field."""
        if len(text.encode("utf-8", errors="replace")) > MAX_PROFILE_BYTES:
            raise RecordError(f"{origin} is larger than {MAX_PROFILE_BYTES:,} bytes")
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as error:
            raise RecordError(f"{origin} is not valid JSON: {error}") from None
        return cls.from_dict(data, origin)

    @classmethod
    def read(cls, path: Path) -> Self:
        """From a file: a regular file of at most MAX_PROFILE_BYTES, else one RecordError."""
        return cls.from_dict(read_json(path, MAX_PROFILE_BYTES), str(path))

    def write(self, path: Path) -> None:
        """Beside the target, then renamed over it: a reader never sees half a profile."""
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(self.to_json() + "\n", encoding="utf-8")
        os.replace(partial, path)


def build_profile(
    train: pd.DataFrame,
    test_probabilities: np.ndarray,
    dataset_version: str,
    *,
    bins: int = DEFAULT_BINS,
    sample_size: int = SAMPLE_SIZE,
    seed: int = 0,
) -> ReferenceProfile:
    """The profile of a training run: its training battles (raw rows, the label may be there)
    and the win probabilities it predicted on the test battles.

    Training data is ours, so a non-finite value here is a bug and refused, not skipped.
    """
    version = DatasetVersion(dataset_version)
    if not 2 <= bins <= MAX_BINS or not 1 <= sample_size <= MAX_SAMPLE:
        raise ValueError(f"bins must be 2..{MAX_BINS} and sample_size 1..{MAX_SAMPLE}")
    rng = np.random.default_rng(seed)
    values = feature_values(train, version)
    features = [
        _profile_one(name, column, bins, sample_size, rng) for name, column in values.items()
    ]
    probabilities = np.asarray(test_probabilities, dtype=float)
    prediction = _profile_one(PREDICTION, probabilities, bins, sample_size, rng)
    return ReferenceProfile(version, features, prediction)


def feature_values(battles: pd.DataFrame, dataset_version: str) -> dict[str, np.ndarray]:
    """The profiled features of raw battle rows: floats for continuous features (non-numbers
    become NaN), strings for categorical ones (a missing second type is ``""``).

    The engineered ones come from BattleFeatures itself, so they are the model's own.
    """
    import pandas as pd

    from machine_learning.features import BattleFeatures

    missing = [c for c in (*STAT_COLUMNS, *TYPE_COLUMNS) if c not in battles.columns]
    if missing:
        raise MonitoringInputError(f"battle rows lack the columns {', '.join(missing)}")
    raw = battles[[*STAT_COLUMNS, *TYPE_COLUMNS]].copy()
    for column in STAT_COLUMNS:
        raw[column] = pd.to_numeric(raw[column], errors="coerce").astype(float)
    for column in TYPE_COLUMNS:
        raw[column] = raw[column].map(_category).astype(object)
    values: dict[str, np.ndarray] = {c: raw[c].to_numpy(dtype=float) for c in STAT_COLUMNS}
    values |= {c: raw[c].to_numpy(dtype=object) for c in TYPE_COLUMNS}
    engineered = BattleFeatures(dataset_version)
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            matrix = engineered.fit(raw.head(1)).transform(raw).astype(float)
    except ValueError as error:  # an unknown type name
        raise MonitoringInputError(f"battle rows: {error}") from None
    names = list(engineered.get_feature_names_out())
    for name in ENGINEERED[DatasetVersion(dataset_version)]:
        column = matrix[:, names.index(name)]
        values[name] = _categories(column) if is_categorical(name) else column
    return values


def _profile_one(
    name: str, values: np.ndarray, bins: int, sample_size: int, rng: np.random.Generator
) -> FeatureProfile:
    if len(values) == 0:
        raise ValueError(f"no values to profile {name} from")
    if is_categorical(name):
        return _categorical(name, values)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: the reference holds non-finite values")
    return _continuous(name, values, bins, sample_size, rng)


def _continuous(
    name: str, values: np.ndarray, bins: int, sample_size: int, rng: np.random.Generator
) -> FeatureProfile:
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = sorted({_round(q) for q in quantiles})
    take = rng.choice(len(values), size=min(sample_size, len(values)), replace=False)
    sample = sorted(_round(v) for v in values[take])
    shares = _shares(continuous_counts(edges, values))
    return FeatureProfile(name, FeatureKind.CONTINUOUS, len(values), shares, edges, sample)


def _categorical(name: str, values: np.ndarray) -> FeatureProfile:
    if any(value is None for value in values):
        raise ValueError(f"{name}: the reference holds non-finite values")
    labels, counts = np.unique(values.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
    categories = [str(labels[i]) for i in order]
    rest = int(counts.sum() - counts[order].sum())
    return FeatureProfile(
        name,
        FeatureKind.CATEGORICAL,
        len(values),
        _shares(np.append(counts[order], rest)),
        categories=categories,
    )


def _shares(counts: np.ndarray) -> list[float]:
    """Shares rounded to 8 decimals: a third of the bytes, and still adding up to 1 ± 1e-6."""
    total = counts.sum()
    return [round(float(c) / total, 8) for c in counts]


def _check_shares(where: str, shares: list[float]) -> None:
    if not shares or any(not 0.0 <= s <= 1.0 for s in shares):
        raise ValueError(f"{where}: shares must be numbers in [0, 1]")
    if abs(math.fsum(shares) - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"{where}: shares must add up to 1, got {math.fsum(shares):.6f}")


def _category(value: Any) -> str:
    """A type name as stored: a missing second type (``""``, None, NaN) is ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _categories(column: np.ndarray) -> np.ndarray:
    """Discrete numbers as category labels (``-1``, ``0``, ``1``); non-finite ones as None."""
    return np.array([f"{v:g}" if math.isfinite(v) else None for v in column], dtype=object)


def _compact(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_compact(item) for item in value]
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items()}
    return value


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")

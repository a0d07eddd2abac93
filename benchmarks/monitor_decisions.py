"""How often the monitor is right: false alarms on unchanged traffic, detection of real drift.

    uv run python benchmarks/monitor_decisions.py [--passes 200] [--power-passes 40]
        [--thresholds ci/monitor_thresholds.toml]

A champion (xgboost, v2, 20,000 ``random`` training battles, seed 42) and its reference profile
(its training battles, its predictions on the 5,000 held-out test battles) are built the way a
training run builds them. Windows of live traffic are drawn with the project's simulator, scored
by the champion, measured against the profile (``measure_window``), judged with the seed
thresholds (``ci/monitor_thresholds.toml``, or ``--thresholds``) and decided with the defaults
(K = 2 of N = 5, at least 200 battles). Every window is fresh battles (never reused), from
fixed seeds.

(a) false alarms: passes of 5 windows of ``random`` traffic, 1,000 battles with outcomes for
    half, and 200 battles (the minimum) all with outcomes, where noise is largest; the rate
    at which the retraining decision fires with its 95% Clopper-Pearson interval.
(b) detection: 4 windows of ``random`` traffic, then ``balanced`` ones: the window at which
    one first breaches and at which the decision fires; then passes whose 5 windows mix x%
    ``balanced`` battles into ``random`` ones: the decision's rate (power) per mix.
(c) the champion's accuracy, log loss and calibration on each scenario (50,000 battles).
No MLflow or database involved: this measures the statistics and the decision rule.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ci.monitor_decision import MIN_ROWS, WindowStatus, decide, judge_measurement
from ci.monitor_thresholds import SEED_FILE, from_seed_file
from machine_learning.datasets import LABEL, battles, held_out_battles
from machine_learning.evaluate import classification_metrics, win_probability
from machine_learning.models import ModelName, build_pipeline
from machine_learning.monitoring.profile import build_profile
from machine_learning.monitoring.quality import expected_calibration_error
from machine_learning.monitoring.window import measure_window
from machine_learning.simulator import Scenario

SEED = 42
N_WINDOWS, MIN_BREACHES = 5, 2
MIXES = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50)
CHUNK = 100_000  # battles simulated and scored at a time, consumed without reuse
POWER = 0.8


@dataclass
class Stream:
    """Fresh scored battles of one scenario, simulated a chunk at a time from its own seeds."""

    scenario: Scenario
    pipeline: object
    seed: int
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    p: np.ndarray = field(default_factory=lambda: np.empty(0))
    used: int = 0
    chunks: int = 0

    def take(self, n: int) -> tuple[pd.DataFrame, np.ndarray]:
        if self.used + n > len(self.rows):
            self.rows = battles(CHUNK, self.scenario, self.seed + self.chunks)
            self.p = win_probability(self.pipeline, self.rows)
            self.used, self.chunks = 0, self.chunks + 1
        part = slice(self.used, self.used + n)
        self.used += n
        return self.rows.iloc[part], self.p[part]


@dataclass
class Monitor:
    profile: object
    thresholds: list
    random: Stream
    balanced: Stream
    rng: np.random.Generator
    breaches: Counter = field(default_factory=Counter)  # by metric
    breached_windows: int = 0

    def window(self, n: int, mix: float, outcome_share: float) -> WindowStatus:
        """One window of ``n`` battles, a share ``mix`` of them balanced, judged."""
        n_balanced = int(self.rng.binomial(n, mix))
        drawn = [self.balanced.take(n_balanced), self.random.take(n - n_balanced)]
        rows = pd.concat([d[0] for d in drawn], ignore_index=True)
        p = np.concatenate([d[1] for d in drawn])
        outcomes = rows[LABEL].to_numpy().astype(float)
        outcomes[self.rng.random(n) >= outcome_share] = np.nan
        measurement = measure_window(self.profile, "1", rows.drop(columns=[LABEL]), p, outcomes)
        judgement = judge_measurement(measurement, self.thresholds, MIN_ROWS)
        self.breaches.update(b.metric for b in judgement.breaches)
        self.breached_windows += judgement.status is WindowStatus.BREACH
        return judgement.status

    def fires(self, n: int, mix: float, outcome_share: float) -> bool:
        """One pass of N windows: whether the decision fires."""
        statuses = [self.window(n, mix, outcome_share) for _ in range(N_WINDOWS)]
        decision = decide(statuses, MIN_BREACHES, N_WINDOWS)
        return decision.retrain


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    interval = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return interval.low, interval.high


def false_alarms(monitor: Monitor, passes: int, n: int, outcome_share: float) -> list[str]:
    monitor.breaches.clear()
    monitor.breached_windows = 0
    fired = sum(monitor.fires(n, 0.0, outcome_share) for _ in range(passes))
    low, high = clopper_pearson(fired, passes)
    windows = passes * N_WINDOWS
    by_metric = ", ".join(f"{m} {c}" for m, c in monitor.breaches.most_common()) or "none"
    return [
        f"{passes} passes x {N_WINDOWS} windows of {n:,} random battles, "
        f"outcomes for {outcome_share:.0%}",
        f"retrain fired {fired}/{passes} = {fired / passes:.1%} (95% CP {low:.1%}-{high:.1%}); "
        f"windows breaching {monitor.breached_windows}/{windows}; by metric: {by_metric}",
    ]


def detection(monitor: Monitor, trials: int, n: int) -> list[str]:
    """Random history, then balanced windows: when does a window breach, when does it fire?"""
    first_breach, fired_at = Counter(), Counter()
    for _ in range(trials):
        statuses = [monitor.window(n, 0.0, 0.5) for _ in range(N_WINDOWS - 1)]
        breach_seen = fire_seen = None
        for k in range(1, N_WINDOWS + 1):
            statuses.append(monitor.window(n, 1.0, 0.5))
            if breach_seen is None and statuses[-1] is WindowStatus.BREACH:
                breach_seen = k
            if decide(statuses, MIN_BREACHES, N_WINDOWS).retrain:
                fire_seen = k
                break
        first_breach[breach_seen or "never"] += 1
        fired_at[fire_seen or "never"] += 1
    within = sum(c for k, c in fired_at.items() if k != "never" and k <= 2)
    return [
        f"{trials} trials: 4 random windows of {n:,}, then balanced ones",
        f"first balanced window breaching: {dict(sorted(first_breach.items(), key=str))}",
        f"decision fired at balanced window: {dict(sorted(fired_at.items(), key=str))}; "
        f"within 2 windows: {within}/{trials}",
    ]


def power(monitor: Monitor, passes: int, n: int) -> list[str]:
    rows, smallest = [], None
    for mix in MIXES:
        fired = sum(monitor.fires(n, mix, 0.5) for _ in range(passes))
        low, high = clopper_pearson(fired, passes)
        share = f"{fired}/{passes} = {fired / passes:.0%}"
        rows.append(f"| {mix:.0%} | {share} | {low:.0%}-{high:.0%} |")
        if smallest is None and fired / passes >= POWER:
            smallest = mix
    found = f"{smallest:.0%}" if smallest is not None else f"none up to {MIXES[-1]:.0%}"
    return [
        f"windows of {n:,} battles, {passes} passes per mix; smallest mix fired in >= "
        f"{POWER:.0%} of passes: {found}",
        "| balanced share | retrain fired | 95% CP |",
        "| --- | --- | --- |",
        *rows,
    ]


def quality(pipeline, n: int) -> list[str]:
    lines = ["| scenario | accuracy | log loss | ECE |", "| --- | --- | --- | --- |"]
    for scenario in Scenario:
        rows = battles(n, scenario, SEED + 7)
        y, p = rows[LABEL].to_numpy(), win_probability(pipeline, rows)
        metrics = classification_metrics(y, p, "x")
        ece = expected_calibration_error(y, p)
        lines.append(
            f"| {scenario} | {metrics['x_accuracy']:.4f} | {metrics['x_log_loss']:.4f} "
            f"| {ece:.4f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=200, help="false-alarm passes per size")
    parser.add_argument("--trials", type=int, default=50, help="detection trials")
    parser.add_argument("--power-passes", type=int, default=40, help="passes per mix")
    parser.add_argument("--window", type=int, default=1_000, help="battles per window")
    parser.add_argument("--thresholds", type=Path, default=SEED_FILE, help="a seed TOML")
    args = parser.parse_args()
    started = time.perf_counter()
    train = battles(20_000, Scenario.RANDOM, SEED)
    pipeline = build_pipeline(ModelName.XGBOOST, "v2", SEED)
    pipeline.fit(train.drop(columns=[LABEL]), train[LABEL])
    test = held_out_battles(5_000, Scenario.RANDOM)
    profile = build_profile(train, win_probability(pipeline, test), "v2", seed=SEED)
    print(f"profile: {len(profile.to_json()):,} bytes of JSON, {len(profile.features)} features")
    print(f"thresholds: {args.thresholds}")
    monitor = Monitor(
        profile,
        from_seed_file(args.thresholds),
        Stream(Scenario.RANDOM, pipeline, 10_000),
        Stream(Scenario.BALANCED, pipeline, 20_000),
        np.random.default_rng(SEED),
    )
    sections = {
        "(a) false alarms": false_alarms(monitor, args.passes, args.window, 0.5)
        + false_alarms(monitor, args.passes, MIN_ROWS, 1.0),
        "(b) detection": detection(monitor, args.trials, args.window)
        + power(monitor, args.power_passes, args.window)
        + power(monitor, args.power_passes, MIN_ROWS),
        "(c) the random-trained champion on each scenario (50,000 battles)": quality(
            pipeline, 50_000
        ),
    }
    for title, lines in sections.items():
        print(f"\n{title}")
        print("\n".join(lines))
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()

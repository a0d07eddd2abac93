"""How often the gate is right: false alarms on neutral changes, detection of real regressions.

    uv run python benchmarks/gate_decisions.py [--trials 12] [--n-battles 20000]

A champion (xgboost, v2, seed 0) is compared on the fixed 5,000 test battles with candidates
that differ only by their training seed (neutral: a failure is a false alarm) and candidates
with a regression injected (a failure is a detection): dropped features (dataset v1), and 10%
or 25% of the training labels flipped. Each is judged on test_f1 by our gate (tolerance
0.005, paired bootstrap interval must exclude zero) and by a raw-delta gate with the same
tolerance (fail when f1 drops by more than 0.005), side by side on the same predictions.
No MLflow involved: this measures the decision rule.
"""

from __future__ import annotations

import argparse

import numpy as np

from ci.bootstrap import compare
from ci.thresholds import Threshold
from ci.verdict import Verdict, judge
from machine_learning.datasets import LABEL, make_battle_data
from machine_learning.evaluate import win_probability
from machine_learning.models import ModelName, build_pipeline
from machine_learning.simulator import Scenario

RULE = Threshold("test_f1", None, True, tolerance_absolute=0.005)


def fit(train, version: str, seed: int, flip: float = 0.0):
    labels = train[LABEL].to_numpy().copy()
    if flip:
        flipped = np.random.default_rng(seed).random(len(labels)) < flip
        labels[flipped] = 1 - labels[flipped]
    pipeline = build_pipeline(ModelName.XGBOOST, version, seed)
    return pipeline.fit(train.drop(columns=[LABEL]), labels)


def decisions(y, champion, candidate) -> tuple[bool, bool, float]:
    """(our gate fails, raw-delta gate fails, f1 delta)."""
    f1 = compare(y, candidate, champion, resamples=1000)["f1"]
    ours = judge(RULE, f1.candidate, f1.champion, f1.interval).verdict is Verdict.FAIL
    return ours, f1.delta < -RULE.tolerance_absolute, f1.delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--n-battles", type=int, default=20_000)
    args = parser.parse_args()
    base = make_battle_data(args.n_battles, Scenario.RANDOM, seed=0)
    y = base.test[LABEL].to_numpy()
    champion = win_probability(fit(base.train, "v2", 0), base.test)
    kinds = {
        "neutral (seed only)": ("v2", 0.0),
        "dropped features (v1)": ("v1", 0.0),
        "10% labels flipped": ("v2", 0.10),
        "25% labels flipped": ("v2", 0.25),
    }
    print(
        f"{args.trials} candidates per kind, each trained on its own {args.n_battles:,} "
        "battles; judged on test_f1, tolerance 0.005"
    )
    print(
        f"{'candidates':<24} | {'mean Δf1':>9} | {'our gate fails':>14} | {'raw-delta fails':>15}"
    )
    for kind, (version, flip) in kinds.items():
        outcomes = []
        for trial in range(1, args.trials + 1):
            data = make_battle_data(args.n_battles, Scenario.RANDOM, seed=trial)
            model = fit(data.train, version, trial, flip)
            outcomes.append(decisions(y, champion, win_probability(model, data.test)))
        ours, raw, deltas = zip(*outcomes, strict=True)
        print(
            f"{kind:<24} | {np.mean(deltas):+9.4f} | {sum(ours):>6}/{len(ours):<7} | "
            f"{sum(raw):>7}/{len(raw):<7}"
        )
    print("neutral row: failures are false alarms; other rows: failures are detections")


if __name__ == "__main__":
    main()

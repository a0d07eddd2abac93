"""How often the gate is right: false alarms on neutral changes, detection of real regressions.

    uv run python benchmarks/gate_decisions.py [--trials 12] [--n-battles 20000]

A champion (xgboost, v2, seed 0) is compared on the fixed 5,000 test battles with candidates
that differ only by their training seed (neutral: a failure is a false alarm) and candidates
with a regression injected (a failure is a detection): dropped features (dataset v1), and 10%
or 25% of the training labels flipped. Each is judged on test_f1 by our gate (a drop beyond
the tolerance whose paired bootstrap 95% interval excludes zero) and by a raw-delta gate with
the same tolerance (any drop beyond it), side by side on the same predictions, at tolerance 0
(what a hand-written "no worse than the champion" check does) and at 0.005 (our seed value).
No MLflow involved: this measures the decision rule.
"""

from __future__ import annotations

import argparse

import numpy as np

from ci.bootstrap import compare
from ci.thresholds import Threshold
from ci.verdict import judge
from machine_learning.contract.gate_record import Verdict
from machine_learning.datasets import LABEL, make_battle_data
from machine_learning.evaluate import win_probability
from machine_learning.models import ModelName, build_pipeline
from machine_learning.simulator import Scenario

TOLERANCES = (0.0, 0.005)


def fit(train, version: str, seed: int, flip: float = 0.0):
    labels = train[LABEL].to_numpy().copy()
    if flip:
        flipped = np.random.default_rng(seed).random(len(labels)) < flip
        labels[flipped] = 1 - labels[flipped]
    pipeline = build_pipeline(ModelName.XGBOOST, version, seed)
    return pipeline.fit(train.drop(columns=[LABEL]), labels)


def decisions(y, champion, candidate) -> tuple[float, list[bool]]:
    """The f1 delta, then (our gate fails, raw-delta gate fails) for each tolerance."""
    f1 = compare(y, candidate, champion, resamples=1000)["f1"]
    failures = []
    for tolerance in TOLERANCES:
        rule = Threshold("test_f1", None, True, tolerance_absolute=tolerance)
        verdict = judge(rule, f1.candidate, f1.champion, f1.interval).verdict
        failures += [verdict is Verdict.FAIL, f1.delta < -tolerance]
    return f1.delta, failures


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
        "battles; failures on test_f1 out of the candidates"
    )
    header = " | ".join(f"ours tol {t:g} | raw tol {t:g}" for t in TOLERANCES)
    print(f"{'candidates':<24} | {'mean Δf1':>9} | {header}")
    for kind, (version, flip) in kinds.items():
        deltas, failures = [], []
        for trial in range(1, args.trials + 1):
            data = make_battle_data(args.n_battles, Scenario.RANDOM, seed=trial)
            model = fit(data.train, version, trial, flip)
            delta, failed = decisions(y, champion, win_probability(model, data.test))
            deltas.append(delta)
            failures.append(failed)
        cells = " | ".join(f"{count:>7}/{args.trials:<5}" for count in np.sum(failures, axis=0))
        print(f"{kind:<24} | {np.mean(deltas):+9.4f} | {cells}")
    print("neutral row: failures are false alarms; other rows: failures are detections")


if __name__ == "__main__":
    main()

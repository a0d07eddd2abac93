"""Retraining with the inference log: does the new champion beat the old one on recent battles?

    uv run python benchmarks/retraining.py [--n-battles 20000] [--log-battles 1000 10000 50000]

A champion (xgboost, v2, seed 42) is trained on ``random`` battles, as ``train`` does by
default. The traffic then moves to ``balanced`` battles (pairs of similar base-stat total): the
champion answers them and their simulated outcomes come back, written straight into a SQLite
inference log (the tables the predictor writes; no HTTP, so this is fast). Then the model is
retrained through train's own path (``train.load_data`` with ``--with-inference-log``: the
window read, the split by battle id, the sample weights) unweighted and at several
``--log-share`` values, and both models are scored on

- the recent test set: the logged battles held out by the hash of their id (what the gate and
  the report show as ``recent_test_*``);
- 20,000 fresh ``balanced`` battles from a seed of their own (a tighter figure of the same);
- the simulated ``random`` test set the gate's floors are on (5,000 battles, the fixed seed):
  the retrained model must not fall behind the champion there either.

No MLflow involved: this measures the data and the weighting.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from machine_learning.datasets import LABEL, battles
from machine_learning.evaluate import classification_metrics, win_probability
from machine_learning.models import ModelName
from machine_learning.recent_battles import log_weights
from machine_learning.simulator import Scenario
from machine_learning.train import TrainConfig, fit, load_data
from tests.inference_log import create_log, log_battles

SHARES = (None, 0.25, 0.5, 0.75)  # None: unweighted, each logged battle weighs 1
LOG_SEED = 7
FRESH_SEED = 3_000_017
FRESH_BATTLES = 20_000


def accuracy(pipeline, table) -> float:
    scores = classification_metrics(table[LABEL].to_numpy(), win_probability(pipeline, table), "x")
    return scores["x_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-battles", type=int, default=20_000)
    parser.add_argument("--log-battles", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="retraining-"))
    base = TrainConfig(n_battles=args.n_battles, output_dir=folder)
    simulated = load_data(base)
    champion = fit(ModelName.XGBOOST, base, simulated, folder / "plots").pipeline
    fresh = battles(FRESH_BATTLES, Scenario.BALANCED, FRESH_SEED)
    print(
        f"champion: xgboost v2 on {args.n_battles:,} random battles; fresh balanced battles: "
        f"{FRESH_BATTLES:,}; gate's random test set: {len(simulated.test):,}"
    )
    print(
        f"{'log battles':>11} | {'share':>10} | {'log/sim weight':>14} | {'recent test':>11} | "
        f"{'old acc':>7} | {'new acc':>7} | {'fresh old':>9} | {'fresh new':>9} | "
        f"{'random old':>10} | {'random new':>10} | {'fit s':>5}"
    )
    for n_log in args.log_battles:
        url = f"sqlite:///{folder / f'log-{n_log}.db'}"
        create_log(url)
        traffic = battles(n_log, Scenario.BALANCED, LOG_SEED)
        request = f"{LOG_SEED:016x}{n_log:016x}"  # fixed ids: the same split every run
        log_battles(url, traffic, p_a_wins=win_probability(champion, traffic), request=request)
        for share in SHARES:
            config = replace(base, inference_log=url, log_share=share)
            data = load_data(config)
            started = time.perf_counter()
            new = fit(ModelName.XGBOOST, config, data, folder / "plots").pipeline
            seconds = time.perf_counter() - started
            weights = log_weights(len(simulated.train), data.logged, share)
            weight = 1.0 if weights is None else weights[-1] / weights[0]
            recent = data.recent_test
            print(
                f"{n_log:>11,} | {share or 'unweighted':>10} | {weight:>14.2f} | "
                f"{len(recent):>11,} | "
                f"{accuracy(champion, recent):>7.4f} | {accuracy(new, recent):>7.4f} | "
                f"{accuracy(champion, fresh):>9.4f} | {accuracy(new, fresh):>9.4f} | "
                f"{accuracy(champion, simulated.test):>10.4f} | "
                f"{accuracy(new, simulated.test):>10.4f} | {seconds:>5.1f}"
            )


if __name__ == "__main__":
    main()

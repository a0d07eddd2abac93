"""The MLflow vocabulary both halves share: names of tags, run parameters, aliases and models.

Training writes these names and the CI side reads them back (the gate, the report, promotion,
the state snapshot, verification), in other processes and often months later, from a registry
that outlives any one version of this code: a name changed here is a name the older runs no
longer answer to. Standard library only.
"""

from __future__ import annotations

# The registered model the lifecycle promotes, and its aliases: the one that serves, and the
# one a rollback returns to.
REGISTERED_MODEL = "pokemon-battle"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
EXPERIMENT_PREFIX = "pokemon-battle-"  # one experiment per dataset version: pokemon-battle-v2

# Run tags set by training: where the run comes from and what it was trained on.
TAG_GIT_SHA = "ci.git_sha"
TAG_BRANCH = "ci.branch"
TAG_EVENT = "ci.event"
TAG_PR_NUMBER = "ci.pr_number"
TAG_RUN_URL = "ci.run_url"
TAG_DATASET_DIGEST = "ci.dataset_digest"
TAG_TEST_DIGEST = "ci.test_digest"
TAG_DATASET_VERSION = "ci.dataset_version"
TAG_MODEL = "ci.model"
TAG_WINNER = "ci.winner"  # compare's parent run: the model that won
TAG_WINNER_RUN_ID = "ci.winner_run_id"  # compare's parent run: the winner's nested run
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own, set by us (git may be absent)
# Retraining with the inference log (train --with-inference-log): where the log was (password
# replaced by ***), and the fingerprint of the recent battles held out of it, which the gate
# reads back from RECENT_TEST_ARTIFACT to re-score the champion on them.
TAG_INFERENCE_LOG_URL = "ci.inference_log_url"
TAG_RECENT_TEST_DIGEST = "ci.recent_test_digest"
RECENT_TEST_ARTIFACT = "recent_test_battles.parquet"  # at the run's artifact root

# Model-version tags set by promotion, beside TAG_GIT_SHA and TAG_PR_NUMBER.
TAG_RUN_ID = "ci.run_id"

# The gate. Registered-model tags ``gate.<metric>`` hold the thresholds (JSON specs); on a
# judged run, ``gate.<metric>`` holds that metric's verdict and ``gate.verdict`` the gate's
# (promotion copies the verdict and the champion judged against onto the model version).
GATE_PREFIX = "gate."
TAG_GATE_VERDICT = "gate.verdict"
TAG_GATE_CHAMPION_VERSION = "gate.champion_version"
# The monitor's thresholds: registered-model tags ``monitor.<metric>``.
MONITOR_PREFIX = "monitor."
# A monitoring pass is one run in the experiment ``<model>-monitoring``, tagged with the versions
# it judged (comma-separated), its decision (retrain or keep), the decision's reason and the
# latest window's status; its metrics are the latest window's, ``v<version>/<metric>``.
MONITORING_SUFFIX = "-monitoring"
TAG_MONITOR_VERSIONS = "monitor.versions"
TAG_MONITOR_DECISION = "monitor.decision"
TAG_MONITOR_REASON = "monitor.reason"
TAG_MONITOR_LATEST_STATUS = "monitor.latest_status"
DECISION_RETRAIN, DECISION_KEEP = "retrain", "keep"

# The registry lock (a registered model ``<name>.registry-lock``) and its owner tag.
LOCK_SUFFIX = ".registry-lock"
TAG_LOCK_OWNER = "ci.lock_owner"

# Run parameters training logs (its options, by name) that the CI side reads back: the gate
# rebuilds the candidate's test set from them, and reports what was trained.
PARAM_MODEL = "model"
PARAM_DATASET_VERSION = "dataset_version"
PARAM_SCENARIO_TYPE = "scenario_type"
PARAM_N_BATTLES = "n_battles"
PARAM_N_TEST = "n_test"
# With --with-inference-log: the window read, the logged battles trained on and held out, and
# the share of the training weight the logged ones carry.
PARAM_INFERENCE_LOG_SINCE = "inference_log_since"
PARAM_INFERENCE_LOG_BATTLES = "inference_log_battles"
PARAM_INFERENCE_LOG_TEST_BATTLES = "inference_log_test_battles"
PARAM_INFERENCE_LOG_SHARE = "inference_log_share"
READ_BACK_PARAMS = (
    PARAM_MODEL,
    PARAM_DATASET_VERSION,
    PARAM_SCENARIO_TYPE,
    PARAM_N_BATTLES,
    PARAM_N_TEST,
)


def experiment_name(dataset_version: str) -> str:
    """The experiment a dataset version's runs are logged to."""
    return f"{EXPERIMENT_PREFIX}{dataset_version}"


def monitoring_experiment(model_name: str) -> str:
    """The experiment a registered model's monitoring passes are logged to."""
    return f"{model_name}{MONITORING_SUFFIX}"


def monitored_metric(version: str, metric: str) -> str:
    """``v3/diff_bst.psi``: a version's figure as a monitoring run's metric key."""
    return f"v{version}/{metric}"

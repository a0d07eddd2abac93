"""The MLflow names both halves share: what training writes is what the CI side reads back."""

from machine_learning.contract import mlflow_names
from machine_learning.train import TrainConfig


def test_the_params_the_gate_reads_back_are_logged_by_training():
    assert set(mlflow_names.READ_BACK_PARAMS) <= set(TrainConfig().params())


def test_the_names_are_the_ones_the_registry_already_holds():
    # Renaming one orphans every run, version and threshold logged under the old name.
    assert (mlflow_names.REGISTERED_MODEL, mlflow_names.CHAMPION) == ("pokemon-battle", "champion")
    assert mlflow_names.PREVIOUS_CHAMPION == "previous-champion"
    assert (mlflow_names.TAG_GATE_VERDICT, mlflow_names.GATE_PREFIX) == ("gate.verdict", "gate.")
    assert mlflow_names.MONITOR_PREFIX == "monitor."
    assert mlflow_names.experiment_name("v2") == "pokemon-battle-v2"
    tags = [value for name, value in vars(mlflow_names).items() if name.startswith("TAG_")]
    assert len(set(tags)) == len(tags)
    assert all(tag.startswith(("ci.", "gate.", "monitor.")) for tag in tags)


def test_a_monitoring_run_s_tags_are_never_read_as_monitor_thresholds():
    from machine_learning.monitoring.names import monitor_metrics

    run_tags = [value for name, value in vars(mlflow_names).items() if name.startswith("TAG_MON")]
    assert len(run_tags) == 4
    assert not {tag.removeprefix(mlflow_names.MONITOR_PREFIX) for tag in run_tags} & set(
        monitor_metrics()
    )
    assert mlflow_names.monitoring_experiment("pokemon-battle") == "pokemon-battle-monitoring"

from importlib import metadata

import pytest

from machine_learning.tracking import (
    EMBEDDED_URI,
    TrackingUnavailable,
    model_requirements,
    redact_uri,
    resolve_tracking_uri,
)


def probe_answering(*uris: str):
    calls = []

    def probe(uri: str) -> bool:
        calls.append(uri)
        return uri in uris

    probe.calls = calls
    return probe


def test_cli_option_wins_over_everything():
    target = resolve_tracking_uri(
        "http://cli:5000",
        {"MLFLOW_TRACKING_URI": "http://env:5000"},
        probe_answering("http://cli:5000", "http://env:5000"),
    )
    assert (target.uri, target.source) == ("http://cli:5000", "--tracking-uri")


def test_environment_variable_comes_next():
    target = resolve_tracking_uri(
        None,
        {"MLFLOW_TRACKING_URI": "http://env:5000"},
        probe_answering("http://env:5000", "http://mlflow:5000"),
    )
    assert (target.uri, target.source) == ("http://env:5000", "MLFLOW_TRACKING_URI")


def test_compose_server_then_local_server_then_embedded():
    assert (
        resolve_tracking_uri(
            None, {}, probe_answering("http://mlflow:5000", "http://localhost:5000")
        ).uri
        == "http://mlflow:5000"
    )
    assert resolve_tracking_uri(None, {}, probe_answering("http://localhost:5000")).uri == (
        "http://localhost:5000"
    )
    probe = probe_answering()
    target = resolve_tracking_uri(None, {}, probe)
    assert (target.uri, target.source) == (EMBEDDED_URI, "embedded default")
    assert probe.calls == ["http://mlflow:5000", "http://localhost:5000"]


def test_a_file_store_is_taken_without_probing():
    probe = probe_answering()
    assert resolve_tracking_uri("sqlite:////tmp/x.db", {}, probe).uri == "sqlite:////tmp/x.db"
    assert probe.calls == []


def test_unreachable_configured_server_falls_back_with_a_warning_outside_ci(capsys):
    target = resolve_tracking_uri("http://down:5000", {}, probe_answering())
    assert target.uri == EMBEDDED_URI
    assert "does not answer" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["cli", "env"])
def test_unreachable_configured_server_is_an_error_in_ci(source):
    cli = "http://u:secret@down:5000" if source == "cli" else None
    env = {"CI": "true"} | ({"MLFLOW_TRACKING_URI": "http://u:secret@down:5000"} if not cli else {})
    with pytest.raises(TrackingUnavailable, match="http://down:5000") as error:
        resolve_tracking_uri(cli, env, probe_answering())
    assert "secret" not in str(error.value)


def test_redact_uri_drops_credentials_only():
    assert (
        redact_uri("https://me:pw@mlflow.example.com:8443/x") == "https://mlflow.example.com:8443/x"
    )
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_model_requirements_are_pinned_to_installed_versions():
    requirements = model_requirements()
    assert f"mlflow=={metadata.version('mlflow')}" in requirements
    assert all("==" in requirement for requirement in requirements)
    assert any(requirement.startswith("xgboost-cpu==") for requirement in requirements)


def test_training_rides_out_a_minute_and_other_commands_give_up_in_seconds():
    """The window computed as urllib3 (MLflow's HTTP layer) backs off, retry by retry."""
    from urllib3.exceptions import NewConnectionError
    from urllib3.util import Retry

    from machine_learning.contract.failures import (
        MLFLOW_DEFAULTS,
        OUTAGE_TOLERANCE_S,
        TRAINING_MLFLOW_DEFAULTS,
        retry_window_s,
    )

    for settings in (MLFLOW_DEFAULTS, TRAINING_MLFLOW_DEFAULTS):
        retries = int(settings["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
        retry = Retry(
            total=retries, backoff_factor=float(settings["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
        )
        waited = 0.0
        for _ in range(retries):
            retry = retry.increment(
                method="POST", url="/", error=NewConnectionError(None, "refused")
            )
            waited += retry.get_backoff_time()
        assert waited == retry_window_s(settings)
    assert OUTAGE_TOLERANCE_S <= retry_window_s(TRAINING_MLFLOW_DEFAULTS) <= OUTAGE_TOLERANCE_S + 5
    assert retry_window_s(MLFLOW_DEFAULTS) <= 5

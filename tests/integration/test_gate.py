"""The CI toolkit against a real PostgreSQL-backed MLflow server: gate, report, promotion."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import actions_env, cli_env, run_cli

pytestmark = pytest.mark.integration
TEST_ROWS = "3000"


@pytest.fixture(scope="module")
def runs(stack, tmp_path_factory):
    """Three logged runs on the same test battles: weak, strong, and strong with another seed."""
    root = tmp_path_factory.mktemp("runs")
    configs = {"weak": ("300", "1"), "strong": ("8000", "1"), "reseeded": ("8000", "2")}
    result = {}
    for name, (battles, seed) in configs.items():
        sha = (name * 40)[:40].encode().hex()[:40]
        done = run_cli(
            "train",
            "--n-battles",
            battles,
            "--seed",
            seed,
            "--n-test",
            TEST_ROWS,
            "--experiment",
            "gate-tests",
            "--output-dir",
            name,
            cwd=root,
            env=actions_env(
                root, sha, pr=21, head_ref="feature/gate", MLFLOW_TRACKING_URI=stack.tracking_uri
            ),
        )
        assert done.returncode == 0, done.stderr
        record = json.loads((root / name / "run.json").read_text())
        result[name] = record | {
            "sha": sha,
            "dir": root,
            "f1": json.loads((root / name / "metrics.json").read_text())["test_f1"],
        }
    return result


@pytest.fixture
def model_name(client):
    return f"pb-{uuid.uuid4().hex[:8]}"


def ci(stack, *args: str, cwd, **env: str):
    """``python -m ci …`` against the test stack's server."""
    return run_cli(
        *args, cwd=cwd, module="ci", env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri, **env)
    )


def make_champion(client, name: str, run: dict) -> None:
    from ci.registry import ensure_registered_model, register_version

    ensure_registered_model(client, name)
    version = register_version(client, name, run["model_uri"], run["run_id"], {})
    client.set_registered_model_alias(name, "champion", version.version)


def gate(stack, run: dict, name: str, out, **env: str):
    done = run_cli(
        "gate",
        "--run-json",
        str(run["dir"] / run_name(run) / "run.json"),
        "--model-name",
        name,
        "--output",
        str(out),
        "--resamples",
        "500",
        cwd=run["dir"],
        module="ci",
        env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri, **env),
    )
    return done, (json.loads(out.read_text()) if out.exists() else None)


def run_name(run: dict) -> str:
    return run["local_model"].split("/")[0]


def metric(result: dict, name: str = "test_f1") -> dict:
    return next(row for row in result["metrics"] if row["metric"] == name)


def test_first_run_without_champion_is_judged_on_thresholds_seeded_into_mlflow(
    stack, client, runs, model_name, tmp_path
):
    done, result = gate(stack, runs["strong"], model_name, tmp_path / "gate.json")
    assert done.returncode == 0, done.stderr
    assert result["verdict"] == "pass" and result["champion"] is None
    assert "seeded into" in result["thresholds_source"]
    assert metric(result)["candidate"] == pytest.approx(runs["strong"]["f1"])
    tags = client.get_registered_model(model_name).tags
    assert json.loads(tags["gate.test_f1"])["threshold"] == 0.85
    run_tags = client.get_run(runs["strong"]["run_id"]).data.tags
    assert run_tags["gate.verdict"] == "pass" and run_tags["gate.test_f1"] == "pass"


def test_a_better_run_passes_and_the_champion_is_rescored_on_the_same_battles(
    stack, client, runs, model_name, tmp_path
):
    make_champion(client, model_name, runs["weak"])
    done, result = gate(stack, runs["strong"], model_name, tmp_path / "gate.json")
    assert done.returncode == 0, done.stderr
    f1 = metric(result)
    assert f1["verdict"] == "pass" and f1["interval"][0] > 0
    assert f1["champion"] == pytest.approx(runs["weak"]["f1"])  # same rows, same score
    assert result["champion"]["version"] == "1"
    logged = client.get_run(runs["strong"]["run_id"]).data.metrics
    assert logged["delta_test_f1"] == pytest.approx(f1["delta"])


def test_a_worse_run_beyond_tolerance_fails_with_annotations(
    stack, client, runs, model_name, tmp_path
):
    make_champion(client, model_name, runs["strong"])
    done, result = gate(
        stack, runs["weak"], model_name, tmp_path / "gate.json", GITHUB_ACTIONS="true"
    )
    assert done.returncode == 1
    assert result["verdict"] == "fail" and metric(result)["verdict"] == "fail"
    assert metric(result)["interval"][1] < 0
    assert "::error title=Gate: test_f1::worse than the champion by" in done.stdout
    assert client.get_run(runs["weak"]["run_id"]).data.tags["gate.verdict"] == "fail"


def test_a_reseeded_run_is_within_noise_not_a_failure(stack, client, runs, model_name, tmp_path):
    make_champion(client, model_name, runs["strong"])
    done, result = gate(stack, runs["reseeded"], model_name, tmp_path / "gate.json")
    assert done.returncode == 0, done.stdout + done.stderr
    f1 = metric(result)
    assert f1["verdict"] == "within noise"
    assert f1["interval"][0] <= 0 <= f1["interval"][1]


def test_malformed_thresholds_are_named(stack, client, runs, model_name, tmp_path):
    from ci.registry import ensure_registered_model

    ensure_registered_model(client, model_name)
    client.set_registered_model_tag(model_name, "gate.test_f1", "{threshold: 0.9")
    done, result = gate(stack, runs["strong"], model_name, tmp_path / "gate.json")
    assert done.returncode == 2 and result is None
    assert (
        done.stderr.strip().splitlines()[-1].startswith("error: tag gate.test_f1: not valid JSON")
    )


def test_thresholds_command_shows_sets_and_syncs(stack, client, model_name, tmp_path):
    env = cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri)
    shown = run_cli(
        "thresholds", "show", "--model-name", model_name, cwd=tmp_path, env=env, module="ci"
    )
    assert "has no gate.* tags yet" in shown.stdout
    assert (
        run_cli(
            "thresholds", "sync", "--model-name", model_name, cwd=tmp_path, env=env, module="ci"
        ).returncode
        == 0
    )
    done = run_cli(
        "thresholds",
        "set",
        "test_f1",
        "--threshold",
        "0.9",
        "--tolerance-absolute",
        "0.01",
        "--model-name",
        model_name,
        cwd=tmp_path,
        env=env,
        module="ci",
    )
    assert "gate.test_f1           ≥ 0.9, tolerance 0.01" in done.stdout
    bad = run_cli(
        "thresholds",
        "set",
        "test_f1",
        "--threshold",
        "high",
        "--model-name",
        model_name,
        cwd=tmp_path,
        env=env,
        module="ci",
    )
    assert bad.returncode == 2 and "--threshold must be a number or 'none'" in bad.stderr


def promote(stack, run: dict, name: str, gate_json, sha: str):
    return run_cli(
        "promote",
        "--run-json",
        str(run["dir"] / run_name(run) / "run.json"),
        "--gate-json",
        str(gate_json),
        "--sha",
        sha,
        "--model-name",
        name,
        cwd=run["dir"],
        module="ci",
        env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri),
    )


def test_promote_then_rollback(stack, client, runs, model_name, tmp_path):
    gate(stack, runs["strong"], model_name, tmp_path / "first.json")
    done = promote(
        stack, runs["strong"], model_name, tmp_path / "first.json", runs["strong"]["sha"]
    )
    assert done.returncode == 0, done.stderr
    assert "v1 is now champion" in done.stdout
    gate(stack, runs["reseeded"], model_name, tmp_path / "second.json")
    done = promote(
        stack, runs["reseeded"], model_name, tmp_path / "second.json", runs["reseeded"]["sha"]
    )
    assert done.stdout.strip().endswith("v2 is now champion; v1 is now previous-champion")
    version = client.get_model_version_by_alias(model_name, "champion")
    assert version.tags["ci.git_sha"] == runs["reseeded"]["sha"]
    assert version.tags["gate.verdict"] == "pass" and version.tags["ci.pr_number"] == "21"

    done = ci(stack, "rollback", "--model-name", model_name, cwd=tmp_path)
    assert done.stdout.strip() == "rolled back: v1 is now champion; v2 is now previous-champion"
    assert client.get_model_version_by_alias(model_name, "champion").version == "1"
    assert client.get_model_version_by_alias(model_name, "previous-champion").version == "2"


def test_promotion_is_refused_for_a_failed_gate_or_another_commit(
    stack, client, runs, model_name, tmp_path
):
    make_champion(client, model_name, runs["strong"])
    gate(stack, runs["weak"], model_name, tmp_path / "failed.json")
    done = promote(stack, runs["weak"], model_name, tmp_path / "failed.json", runs["weak"]["sha"])
    assert done.returncode == 1 and "did not pass the gate (verdict: fail)" in done.stderr
    gate(stack, runs["reseeded"], model_name, tmp_path / "passed.json")
    done = promote(stack, runs["reseeded"], model_name, tmp_path / "passed.json", "f" * 40)
    assert done.returncode == 1 and "not at the commit being promoted ffffffffffff" in done.stderr
    assert client.get_model_version_by_alias(model_name, "champion").version == "1"


def test_rollback_without_a_previous_champion_is_refused(stack, client, runs, model_name, tmp_path):
    make_champion(client, model_name, runs["strong"])
    done = ci(stack, "rollback", "--model-name", model_name, cwd=tmp_path)
    assert done.returncode == 1
    assert "nothing to roll back to" in done.stderr and "previous-champion" in done.stderr


def test_report_lists_the_pull_requests_runs(stack, client, runs, model_name, tmp_path):
    make_champion(client, model_name, runs["weak"])
    gate(stack, runs["strong"], model_name, tmp_path / "gate.json")
    summary = tmp_path / "summary.md"
    done = run_cli(
        "report",
        "--gate-json",
        str(tmp_path / "gate.json"),
        "--output",
        str(tmp_path / "report.md"),
        cwd=tmp_path,
        module="ci",
        env=cli_env(MLFLOW_TRACKING_URI=stack.tracking_uri, GITHUB_STEP_SUMMARY=str(summary)),
    )
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("### ✅ Gate passed")
    assert "#### Runs of PR #21, newest first" in report
    assert f"`{runs['strong']['sha'][:7]}` (this run)" in report
    assert report.count("| `") >= 3 and "xychart-beta" in report
    assert summary.read_text().startswith(report)


def test_a_run_the_gate_cannot_judge_is_named(stack, client, tmp_path):
    from ci.gate import Candidate, GateError, load_candidate, test_battles

    experiment = client.create_experiment(f"unjudgeable-{uuid.uuid4().hex[:8]}")
    bare = client.create_run(experiment).info.run_id
    with pytest.raises(GateError, match=f"run {bare} has no logged model"):
        load_candidate(client, bare, None)
    missing = uuid.uuid4().hex
    with pytest.raises(GateError, match=f"run {missing} does not exist on the tracking server"):
        load_candidate(client, missing, None)
    client.delete_run(bare)
    with pytest.raises(GateError, match="is deleted; train again or restore it"):
        load_candidate(client, bare, None)

    def candidate(params, digest=""):
        return Candidate(bare, "models:/m-1", None, params, {"ci.test_digest": digest})

    with pytest.raises(GateError, match="lacks the params to rebuild its test set"):
        test_battles(candidate({"n_test": "200"}))
    with pytest.raises(GateError, match="the simulator changed since that run"):
        test_battles(candidate({"n_test": "200", "scenario_type": "random"}, "0" * 16))

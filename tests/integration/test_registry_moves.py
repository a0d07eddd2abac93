"""Registry moves and thresholds against the real server: compare-and-set, races, no fallback.

Promotion and rollback run in-process (``ci.cli.main``) or as real parallel processes for the
races; the gate records are built with the same dataclasses ``ci gate`` writes.
"""

from __future__ import annotations

import json
import multiprocessing
import uuid

import pytest

from ci.cli import main
from ci.promote import PromotionRefused, promote, rollback
from machine_learning.contract.gate_record import GateRecord
from tests.records import SHA, sample_run
from tests.records import sample_gate as gate_for

pytestmark = pytest.mark.integration
# Each race starts both movers at one barrier; the compare-and-set must leave one winner every
# time. Eight keep the suite short (20 found nothing more); raise it locally to stress the lock.
RACES = 8


@pytest.fixture
def name():
    return f"moves-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def experiment(stack):
    import mlflow

    return mlflow.MlflowClient(stack.tracking_uri).create_experiment(f"moves-{uuid.uuid4().hex}")


def candidate_run(client, experiment: str) -> str:
    return client.create_run(experiment).info.run_id


def aliases(client, name: str) -> tuple[str | None, str | None]:
    from ci.registry import version_by_alias
    from machine_learning.contract.mlflow_names import CHAMPION, PREVIOUS_CHAMPION

    found = [version_by_alias(client, name, alias) for alias in (CHAMPION, PREVIOUS_CHAMPION)]
    return tuple(str(v.version) if v else None for v in found)


def versions(client, name: str) -> int:
    return len(client.search_model_versions(f"name = '{name}'"))


def test_promotion_refuses_a_gate_judged_against_another_champion(client, experiment, name):
    first, second, third = (candidate_run(client, experiment) for _ in range(3))
    promote(client, name, gate_for(first, None))
    promote(client, name, gate_for(second, "1"))
    with pytest.raises(PromotionRefused, match=r"judged run .* against v1, but champion is now v2"):
        promote(client, name, gate_for(third, "1"))
    assert aliases(client, name) == ("2", "1") and versions(client, name) == 2


def test_rerunning_a_promotion_is_a_no_op_and_a_rollback_stays_meaningful(client, experiment, name):
    first, second = candidate_run(client, experiment), candidate_run(client, experiment)
    promote(client, name, gate_for(first, None))
    move = promote(client, name, gate_for(second, "1"))
    again = promote(client, name, gate_for(second, "1"))
    assert not again.changed and again.describe("x") == "nothing to do: v2 is already champion"
    assert versions(client, name) == 2 and aliases(client, name) == ("2", "1")
    assert move.changed
    rollback(client, name)
    assert aliases(client, name) == ("1", "2")
    promote(client, name, gate_for(second, "1"))  # promoted again: its version is reused
    assert versions(client, name) == 2 and aliases(client, name) == ("2", "1")


def test_rollback_never_leaves_champion_equal_to_previous(client, experiment, name):
    promote(client, name, gate_for(candidate_run(client, experiment), None))
    client.set_registered_model_alias(name, "previous-champion", "1")
    with pytest.raises(PromotionRefused, match="both v1"):
        rollback(client, name)
    with pytest.raises(PromotionRefused, match="not v7 as expected"):
        rollback(client, name, expected="7")


def _race(task: tuple[str, str, str, str, dict]) -> str:
    """One contender: wait at the barrier, then move; 'won' or the refusal."""
    kind, uri, name, expected, gate = task
    import mlflow

    from ci.registry_lock import RegistryBusy

    client = mlflow.MlflowClient(uri)
    _barrier.wait(timeout=30)
    try:
        if kind == "promote":
            promote(client, name, GateRecord.from_dict(gate, "race"))
        else:
            rollback(client, name, expected)
    except (PromotionRefused, RegistryBusy) as refused:
        return f"refused: {refused}"
    return "won"


def _start(barrier) -> None:
    global _barrier
    _barrier = barrier


def test_racing_moves_leave_a_consistent_registry_and_exactly_one_winner(
    stack, client, experiment, name
):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    promote(client, name, gate_for(candidate_run(client, experiment), None))
    # Closed and joined, not terminated (what `with Pool()` does): a worker SIGTERMed while
    # it waits for work can hang in coverage's SIGTERM handler, and the join with it.
    pool = context.Pool(2, initializer=_start, initargs=(barrier,))
    try:
        for _ in range(RACES):
            champion, _ = aliases(client, name)
            runs = [candidate_run(client, experiment) for _ in range(2)]
            tasks = [
                ("promote", stack.tracking_uri, name, "", gate_for(run, champion).to_dict())
                for run in runs
            ]
            results = pool.map(_race, tasks)
            assert sorted(r == "won" for r in results) == [False, True], results
            new, previous = aliases(client, name)
            winner = results.index("won")
            assert client.get_model_version(name, new).run_id == runs[winner]
            assert previous == champion and new != previous
            assert "re-run the gate" in results[1 - winner]

            tasks = [("rollback", stack.tracking_uri, name, new, {})] * 2
            results = pool.map(_race, tasks)
            assert sorted(r == "won" for r in results) == [False, True], results
            assert aliases(client, name) == (previous, new)
    finally:
        pool.close()
        pool.join()
    assert not client.search_registered_models(f"name = '{name}.registry-lock'")


def promotion_files(tmp_path, client, experiment) -> tuple[str, str]:
    run_id = candidate_run(client, experiment)
    gate_for(run_id, None).write(tmp_path / "gate.json")
    sample_run(run_id).write(tmp_path / "run.json")
    return str(tmp_path / "gate.json"), str(tmp_path / "run.json")


@pytest.mark.parametrize(
    "command",
    [
        ["rollback"],
        ["promote", "--sha", SHA],
        ["thresholds", "set", "test_f1", "--threshold", "0.9"],
        ["thresholds", "sync"],
        ["state", "save", "--database", "postgresql://x/y", "--artifacts", "."],
    ],
)
def test_a_mutating_command_never_falls_back_to_the_embedded_store(
    tmp_path, monkeypatch, capsys, client, experiment, command
):
    monkeypatch.chdir(tmp_path)
    gate, run = promotion_files(tmp_path, client, experiment)
    extra = ["--gate-json", gate, "--run-json", run] if command[0] == "promote" else []
    code = main([*command, *extra, "--tracking-uri", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.strip().splitlines() == [
        "error: tracking server http://127.0.0.1:9 (from --tracking-uri) does not answer on "
        "/health; start it or point --tracking-uri at a running server"
    ]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_promote_and_rollback_through_the_cli_say_what_happened(
    tmp_path, capsys, stack, client, experiment, name
):
    gate, run = promotion_files(tmp_path, client, experiment)
    args = ["--model-name", name, "--tracking-uri", stack.tracking_uri]
    assert main(["promote", "--gate-json", gate, "--run-json", run, "--sha", SHA, *args]) == 0
    assert capsys.readouterr().out.strip().endswith("v1 is now champion")
    assert main(["promote", "--gate-json", gate, "--run-json", run, "--sha", SHA, *args]) == 0
    assert capsys.readouterr().out.strip() == "nothing to do: v1 is already champion"
    assert main(["rollback", *args]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err


def thresholds(capsys, stack, name: str, *args: str) -> tuple[int, str, str]:
    code = main(["thresholds", *args, "--model-name", name, "--tracking-uri", stack.tracking_uri])
    out, err = capsys.readouterr()
    return code, out, err


def test_thresholds_cannot_be_poisoned_and_set_changes_only_what_it_is_given(
    tmp_path, capsys, stack, client, name
):
    code, out, _ = thresholds(capsys, stack, name, "show")
    assert code == 0 and "the first gate seeds them from thresholds.toml" in out
    assert f"{'gate.test_log_loss':<22} ≤ 0.35, tolerance 5%" in out
    assert thresholds(capsys, stack, name, "sync")[0] == 0
    seeded = dict(client.get_registered_model(name).tags)

    code, _, err = thresholds(capsys, stack, name, "set", "test_bogus", "--threshold", "0.5")
    assert code == 2 and "'test_bogus' is not a metric the gate computes" in err
    code, _, err = thresholds(capsys, stack, name, "set", "x" * 300, "--threshold", "0.5")
    assert code == 2 and [line for line in err.splitlines() if "error" in line] == [
        err.splitlines()[-1]
    ]
    assert dict(client.get_registered_model(name).tags) == seeded

    code, out, _ = thresholds(capsys, stack, name, "set", "test_log_loss", "--threshold", "0.3")
    assert code == 0 and out.strip() == f"{'gate.test_log_loss':<22} ≤ 0.3, tolerance 5%"
    spec = json.loads(client.get_registered_model(name).tags["gate.test_log_loss"])
    assert spec == {
        "greater_is_better": False,
        "threshold": 0.3,
        "tolerance_absolute": 0.0,
        "tolerance_relative": 0.05,
    }

    client.set_registered_model_tag(name, "gate.test_precision", '{"threshold": 0.1}')
    only_f1 = tmp_path / "only_f1.toml"
    only_f1.write_text("[test_f1]\nthreshold = 0.8\n")
    code, out, _ = thresholds(capsys, stack, name, "sync", "--file", str(only_f1))
    assert code == 0 and out.strip() == f"{'gate.test_f1':<22} ≥ 0.8, tolerance 0"
    gate_tags = {k for k in client.get_registered_model(name).tags if k.startswith("gate.")}
    assert gate_tags == {"gate.test_f1"}

    poisoned = tmp_path / "poisoned.toml"
    poisoned.write_text("[test_f1]\nthreshold = 0.9\n[test_nonsense]\nthreshold = 1\n")
    code, _, err = thresholds(capsys, stack, name, "sync", "--file", str(poisoned))
    assert code == 2 and "'test_nonsense' is not a metric" in err
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    code, _, err = thresholds(capsys, stack, name, "sync", "--file", str(empty))
    assert code == 2 and "defines no thresholds" in err
    assert {k for k in client.get_registered_model(name).tags if k.startswith("gate.")} == {
        "gate.test_f1"
    }


def test_the_gate_of_a_deleted_run_records_nothing_and_writes_no_pass(
    tmp_path, capsys, stack, client, experiment, name
):
    run_id = candidate_run(client, experiment)
    client.delete_run(run_id)
    out = tmp_path / "gate.json"
    args = ["gate", "--run-id", run_id, "--output", str(out), "--model-name", name]
    code = main([*args, "--tracking-uri", stack.tracking_uri])
    err = capsys.readouterr().err
    assert code == 2 and f"run {run_id} is deleted" in err
    assert not out.exists()


def test_the_monitor_thresholds_are_shown_synced_and_set_without_touching_the_gate_s(
    tmp_path, capsys, stack, client, name
):
    code, out, _ = thresholds(capsys, stack, name, "show", "--for", "monitor")
    assert code == 0 and "the first monitoring pass seeds them from monitor_thresholds.toml" in out
    assert f"{'monitor.diff_bst.psi':<30} ≤ 0.2" in out
    assert thresholds(capsys, stack, name, "sync")[0] == 0  # the gate's, as before
    gate_tags = {k: v for k, v in client.get_registered_model(name).tags.items() if "gate." in k}

    code, out, _ = thresholds(capsys, stack, name, "sync", "--for", "monitor")
    assert code == 0 and f"{'monitor.accuracy':<30} ≥ 0.85" in out.splitlines()
    tags = dict(client.get_registered_model(name).tags)
    assert json.loads(tags["monitor.p_a_wins.psi"]) == {
        "greater_is_better": False,
        "threshold": 0.2,
    }
    assert {k: v for k, v in tags.items() if k.startswith("gate.")} == gate_tags

    # set finds the family from the metric's name and changes only the field given
    code, out, _ = thresholds(capsys, stack, name, "set", "diff_bst.psi", "--threshold", "0.3")
    assert code == 0 and out.strip() == f"{'monitor.diff_bst.psi':<30} ≤ 0.3"
    for bad, message in (
        (["accuracy", "--threshold", "1.5"], "threshold must be a number in (0, 1], got 1.5"),
        (["accuracy", "--threshold", "none"], "threshold must be a number in (0, 1]"),
        (["ece", "--direction", "higher"], "greater_is_better must be false for ece"),
        (["ece", "--tolerance-absolute", "0.1"], "unknown key(s) ['tolerance_absolute']"),
        (["test_f1", "--for", "monitor", "--threshold", "0.9"], "'test_f1' is not a metric the"),
    ):
        code, _, err = thresholds(capsys, stack, name, "set", *bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err

    # a gate sync prunes only gate.* tags; a monitor sync only monitor.* ones
    only_f1 = tmp_path / "only_f1.toml"
    only_f1.write_text("[test_f1]\nthreshold = 0.8\n")
    assert thresholds(capsys, stack, name, "sync", "--file", str(only_f1))[0] == 0
    only_psi = tmp_path / "only_psi.toml"
    only_psi.write_text('["diff_bst.psi"]\nthreshold = 0.25\n')
    code, out, _ = thresholds(
        capsys, stack, name, "sync", "--for", "monitor", "--file", str(only_psi)
    )
    assert code == 0 and out.strip() == f"{'monitor.diff_bst.psi':<30} ≤ 0.25"
    ours = {
        k for k in client.get_registered_model(name).tags if k.startswith(("gate.", "monitor."))
    }
    assert ours == {"gate.test_f1", "monitor.diff_bst.psi"}

    poisoned = tmp_path / "poisoned.toml"
    poisoned.write_text('["diff_bst.psi"]\nthreshold = 0.25\n["diff_bst.psi_x"]\nthreshold = 1\n')
    code, _, err = thresholds(
        capsys, stack, name, "sync", "--for", "monitor", "--file", str(poisoned)
    )
    assert code == 2 and "is not a metric the monitor computes" in err
    code, out, _ = thresholds(capsys, stack, name, "show", "--for", "monitor")
    assert out.strip() == f"{'monitor.diff_bst.psi':<30} ≤ 0.25"

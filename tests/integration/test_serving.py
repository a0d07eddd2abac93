"""Using the champion: ``predict`` and ``serve`` against the real PostgreSQL-backed MLflow server.

Two small models are trained once and registered as versions 1 and 2; a third version points
at a corrupted model folder. The service runs as the user would start it (a subprocess, real
HTTP) and must follow the ``champion`` alias as it moves, keep serving when a version cannot
be loaded, and refuse what it should refuse.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest

from machine_learning.serving.predict import battle_rows, pokedex
from tests.conftest import REPO_ROOT, cli_env, run_cli
from tests.docker_stack import free_port
from tests.http_service import Service
from tests.native_stack import predictor_command
from tests.tcp_relay import Relay

pytestmark = pytest.mark.integration
SMALL = ("--n-battles", "2000", "--n-test", "300")
HEALTHY_V1 = {
    "status": "ok",
    "model_version": "1",
    "error": None,
    "failed_version": None,
    "inference_log": None,
    "inference_log_error": None,
}


@pytest.fixture(scope="module")
def registry(stack, tmp_path_factory):
    """A registered model with two good versions (1: xgboost, 2: logistic regression) and a
    broken one (3); the champion alias on version 1."""
    import mlflow

    root = tmp_path_factory.mktemp("serving")
    client = mlflow.MlflowClient(stack.tracking_uri)
    name = f"pb-serve-{uuid.uuid4().hex[:8]}"
    versions = []
    for model in ("xgboost", "logistic_regression"):
        out = root / model
        done = run_cli(
            "train", "--model", model, *SMALL, "--output-dir", str(out),
            "--tracking-uri", stack.tracking_uri, cwd=root,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        record = json.loads((out / "run.json").read_text())
        mlflow.set_tracking_uri(stack.tracking_uri)
        versions.append(mlflow.register_model(record["model_uri"], name).version)
    broken = root / "broken"
    shutil.copytree(root / "xgboost" / "model", broken)
    (broken / "MLmodel").write_text("flavors: [this is not a model\n")
    run = client.create_run(client.get_run(record["run_id"]).info.experiment_id).info.run_id
    client.log_artifacts(run, str(broken), "model")
    client.set_terminated(run)
    client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(name, "champion", versions[0])
    yield client, name, root
    mlflow.set_tracking_uri(None)


def read_csv(path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def predict(stack, cwd, *args):
    return run_cli("predict", *args, "--tracking-uri", stack.tracking_uri, cwd=cwd)


def test_predict_by_name_answers_in_one_line_with_the_version(stack, registry):
    _, name, root = registry
    uri = f"models:/{name}@champion"
    done = predict(stack, root, "PIKACHU", "charizard-mega-x", "--model-uri", uri)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.count("\n") == 0 and " beats " in line and f"({name} v1)" in line
    assert "Pikachu" in line and "Charizard-Mega-X" in line  # the Pokédex's spelling
    answer = json.loads(
        predict(stack, root, "pikachu", "charizard", "--model-uri", uri, "--json").stdout
    )
    assert answer["model_version"] == "1"
    (battle,) = answer["predictions"]
    assert (battle["a"], battle["b"]) == ("Pikachu", "Charizard")
    assert battle["p_a_wins"] + battle["p_b_wins"] == pytest.approx(1)
    assert battle["p_b_wins"] > 0.5  # a fully evolved Fire/Flying over a Pikachu


def test_predict_refuses_unknown_names_and_missing_models(stack, registry):
    _, name, root = registry
    unknown = predict(
        stack, root, "pikachoo", "charizard", "--model-uri", f"models:/{name}@champion"
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "error: unknown Pokémon 'pikachoo': did you mean Pikachu, Pikachu-World, Pikachu-Unova?"
    )
    nothing = predict(stack, root, "pikachu", "eevee", "--model-uri", f"models:/{name}@nobody")
    assert nothing.returncode == 2
    assert f"no model behind models:/{name}@nobody: promote one first" in nothing.stderr
    assert predict(stack, root, "pikachu").returncode == 2


def test_batch_predictions_by_name_and_by_raw_rows(stack, registry, tmp_path):
    from machine_learning.datasets import RAW_COLUMNS, held_out_battles
    from machine_learning.simulator import Scenario

    _, name, root = registry
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\npikachu,charizard\nMewtwo,magikarp\nsnorlax,Snorlax\n")
    out = tmp_path / "predictions.csv"
    uri = f"models:/{name}/2"
    done = predict(stack, root, "--input", str(pairs), "--output", str(out), "--model-uri", uri)
    assert done.returncode == 0, done.stderr
    rows = read_csv(out)
    assert [(r["a"], r["b"]) for r in rows] == [
        ("Pikachu", "Charizard"),
        ("Mewtwo", "Magikarp"),
        ("Snorlax", "Snorlax"),
    ]
    assert {r["model_version"] for r in rows} == {"2"} and {r["model_uri"] for r in rows} == {uri}
    assert float(rows[1]["p_a_wins"]) > 0.9

    raw = tmp_path / "raw.csv"
    held_out_battles(7, Scenario.RANDOM)[list(RAW_COLUMNS)].to_csv(raw, index=False)
    done = predict(
        stack, root, "--input", str(raw), "--output", str(tmp_path / "raw-out.csv"),
        "--model-uri", str(root / "xgboost" / "model"), "--chunk-rows", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(read_csv(tmp_path / "raw-out.csv")) == 7


def test_a_bad_row_further_down_keeps_the_chunks_before_it(stack, registry, tmp_path):
    _, _, root = registry
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\npikachu,eevee\nonix,geodude\nbulbasaur,notapokemon\n")
    out = tmp_path / "out.csv"
    model = str(root / "xgboost" / "model")
    done = predict(
        stack, root, "--input", str(pairs), "--output", str(out), "--model-uri", model,
        "--chunk-rows", "2",
    )  # fmt: skip
    assert done.returncode == 2
    assert "rows 3-3: unknown Pokémon 'notapokemon'" in done.stderr
    assert len(read_csv(out)) == 2

    header_only = tmp_path / "empty.csv"
    header_only.write_text("a,b\n")
    done = predict(
        stack, root, "--input", str(header_only), "--output", str(out), "--model-uri", model
    )
    assert done.returncode == 0 and out.read_text().startswith("a,b,p_a_wins,p_b_wins,")
    missing = predict(
        stack,
        root,
        "--input",
        str(tmp_path / "nope.csv"),
        "--output",
        str(out),
        "--model-uri",
        model,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.fixture(scope="module")
def predictor(stack, registry):
    """One predictor process for the module's tests (each start loads MLflow and the model)."""
    client, name, root = registry
    client.set_registered_model_alias(name, "champion", "1")
    running = Service(stack.tracking_uri, f"models:/{name}@champion", root)
    yield running
    running.stop()


@pytest.fixture
def service(predictor, registry):
    """The predictor serving version 1 and healthy again, whatever a test before moved."""
    client, name, _ = registry
    client.set_registered_model_alias(name, "champion", "1")
    predictor.wait_for(lambda: predictor.get("/health")[1] == HEALTHY_V1, "version 1 healthy")
    return predictor, client, name


def served(running: Service, status: int) -> float:
    """The service's count of /predict answers with ``status`` so far."""
    prefix = f'predict_requests_total{{status="{status}"}} '
    lines = [line for line in running.text("/metrics").splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_the_service_follows_the_alias_and_keeps_serving_through_a_broken_version(service):
    running, client, name = service
    answered = served(running, 200)
    assert running.get("/version")[1]["version"] == "1"
    status, body, headers = running.request("/predict", {"battles": [{"a": "eevee", "b": "onix"}]})
    assert status == 200, body
    assert body["model_version"] == "1" and headers["X-Model-Version"] == "1"

    client.set_registered_model_alias(name, "champion", "2")
    running.wait_for(lambda: running.get("/version")[1]["version"] == "2", "version 2")
    status, body, headers = running.request("/predict", {"battles": [{"a": "eevee", "b": "onix"}]})
    assert body["model_version"] == headers["X-Model-Version"] == "2"

    client.set_registered_model_alias(name, "champion", "3")  # its MLmodel is corrupted
    running.wait_for(lambda: running.get("/health")[1]["status"] == "degraded", "degraded")
    health = running.get("/health")[1]
    assert health["model_version"] == "2" and "version 3 failed to load" in health["error"]
    assert health["failed_version"] == "3"  # what ci verify stops waiting on
    assert running.request("/predict", {"battles": [{"a": "mew", "b": "ditto"}]})[0] == 200

    client.set_registered_model_alias(name, "champion", "1")  # the rollback heals it
    running.wait_for(lambda: running.get("/health")[1] == HEALTHY_V1, "version 1 healthy")
    assert served(running, 200) == answered + 3
    metrics = running.text("/metrics")
    assert "served_model_version 1.0" in metrics and "predict_latency_seconds_bucket" in metrics


def test_battles_by_name_from_the_matchup_table_are_what_the_model_answers(service):
    """Once v1's table is built, battles by name are answered from it; the same battles sent as
    raw rows still go through the model: the two answers must be the same, to the digit."""
    running, _, _ = service
    ready = "matchup_table_ready 1.0"
    running.wait_for(lambda: ready in running.text("/metrics"), "v1's matchup table")
    names = pokedex().names
    draw = np.random.default_rng(7)
    pairs = [{"a": names[i], "b": names[j]} for i, j in draw.integers(0, len(names), (300, 2))]
    rows = json.loads(battle_rows(pairs).to_json(orient="records"))
    by_name, as_rows = (running.request("/v1/predict", {"battles": b}) for b in (pairs, rows))
    assert by_name[0] == as_rows[0] == 200
    assert by_name[1] == as_rows[1]


def test_the_service_refuses_what_it_should(service):
    running, _, _ = service
    assert running.get("/health", host="evil.example.com")[0] == 400
    status, body, _ = running.request("/predict", {"battles": [{"a": "pikachoo", "b": "mew"}]})
    assert status == 422 and "did you mean Pikachu" in body["error"]
    many = {"battles": [{"a": "mew", "b": "ditto"}] * 10_001}
    assert running.request("/predict", many)[0] == 413
    assert running.declared_body(5 << 20) == 413  # refused before the body is read
    assert running.request("/predict", b"{not json")[0] == 400
    assert running.request("/predict", {"fights": []})[0] == 422
    status, body, _ = running.request("/predict", {"battles": [{"a": "mew"}]})
    assert status == 422 and body["error"].endswith("fields a and b; one has a")
    raw = {"battles": [{"a_name": "X", "a_type1": "Fire"}]}
    status, body, _ = running.request("/predict", raw)
    assert status == 422 and "rows lack the columns" in body["error"]
    assert "Who wins?" in running.text("/")
    assert "Charizard-Mega-X" in running.get("/names")[1]


def verify(stack, running, name, *args):
    return run_cli(
        "verify", "--predictor-url", running.url, "--model-name", name,
        "--tracking-uri", stack.tracking_uri, "--canary-battles", "400", *args,
        cwd=running.log.parent, module="ci",
    )  # fmt: skip


def test_verify_passes_when_the_promoted_champion_is_served_and_scores(stack, service):
    running, _, name = service
    done = verify(stack, running, name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified: the predictor serves v1 and it meets every floor" in done.stdout
    assert "canary test_f1 0." in done.stdout


def test_verify_rolls_back_a_champion_the_predictor_cannot_load(stack, service):
    running, client, name = service
    client.set_registered_model_alias(name, "previous-champion", "1")
    client.set_registered_model_alias(name, "champion", "3")  # corrupted: never loads
    done = verify(stack, running, name, "--timeout", "5")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "::error title=Verification of v3 failed::the predictor at" in done.stdout
    assert "cannot load v3: version 3 failed to load" in done.stdout  # at once, not after --timeout
    assert "v1 is now champion" in done.stdout
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "previous-champion").version == "3"


def test_verify_rolls_back_a_champion_whose_canary_misses_the_floor(stack, service):
    running, client, name = service
    client.set_registered_model_alias(name, "previous-champion", "1")
    client.set_registered_model_alias(name, "champion", "2")
    running.wait_for(lambda: running.get("/version")[1]["version"] == "2", "version 2")
    floor = json.dumps({"threshold": 0.999, "greater_is_better": True})
    client.set_registered_model_tag(name, "gate.test_f1", floor)
    try:
        done = verify(stack, running, name)
    finally:
        client.delete_registered_model_tag(name, "gate.test_f1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the canary battles miss the floor: test_f1" in done.stdout
    assert "v1 is now champion; v2 is now previous-champion" in done.stdout
    running.wait_for(lambda: running.get("/version")[1]["version"] == "1", "back to version 1")


# Debian's packages here; GitHub's Ubuntu runners ship Chrome and put the driver in
# $CHROMEWEBDRIVER.
def test_a_person_picks_two_pokemon_and_sees_who_wins_and_which_version_said_so(
    service, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    running, client, name = service
    browser.get(running.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#names option")) > 1000)

    def ask(a: str, b: str) -> tuple[str, str, str]:
        for field, value in (("a", a), ("b", b)):
            box = browser.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "ask").click()
        wait.until(lambda d: d.find_element(By.ID, "version").text)
        shown = browser.find_element(By.ID, "result").is_displayed()
        texts = [browser.find_element(By.ID, i).text for i in ("p-a", "p-b", "version")]
        return (*texts,) if shown else ("", "", browser.find_element(By.ID, "error").text)

    p_a, p_b, version = ask("Pikachu", "Charizard")
    assert float(p_a.rstrip("%")) + float(p_b.rstrip("%")) == pytest.approx(100, abs=0.11)
    assert float(p_b.rstrip("%")) > 50 and version == "answered by model version 1"
    assert browser.find_element(By.ID, "a-name").text == "Pikachu"
    screenshot = REPO_ROOT / "outputs" / "predictor-page.png"
    screenshot.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(screenshot))  # the test's artifact

    client.set_registered_model_alias(name, "champion", "2")  # a promotion, no restart
    running.wait_for(lambda: running.get("/version")[1]["version"] == "2", "version 2")
    browser.execute_script("document.getElementById('version').textContent = ''")
    assert ask("Pikachu", "Charizard")[2] == "answered by model version 2"

    browser.execute_script("document.getElementById('version').textContent = ''")
    browser.find_element(By.ID, "a").clear()
    browser.find_element(By.ID, "a").send_keys("Pikachoo")
    browser.find_element(By.ID, "ask").click()
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    assert "did you mean Pikachu" in browser.find_element(By.ID, "error").text


def test_predict_refuses_to_write_over_its_input(stack, registry, tmp_path):
    _, _, root = registry
    battles = tmp_path / "pairs.csv"
    battles.write_text("a,b\npikachu,charizard\n")
    link = tmp_path / "link.csv"
    link.symlink_to(battles)
    model = str(root / "xgboost" / "model")
    for output in (battles, link):
        done = predict(
            stack, root, "--input", str(battles), "--output", str(output), "--model-uri", model
        )
        assert done.returncode == 2, done.stderr
        assert "is the input file" in done.stderr.strip().splitlines()[-1]
    assert battles.read_text() == "a,b\npikachu,charizard\n"


@pytest.mark.parametrize(
    ("stat", "shown"), [("Infinity", "'Infinity'"), ("1e400", "'1e400'"), ("1e300", "'1e300'")]
)
def test_a_batch_row_with_a_stat_out_of_bounds_is_bad_input(stack, registry, tmp_path, stat, shown):
    from machine_learning.datasets import RAW_COLUMNS, held_out_battles
    from machine_learning.simulator import Scenario

    _, _, root = registry
    rows = held_out_battles(2, Scenario.RANDOM)[list(RAW_COLUMNS)].astype(str)
    rows.loc[1, "b_atk"] = stat
    source, target = tmp_path / "raw.csv", tmp_path / "out.csv"
    rows.to_csv(source, index=False)
    model = str(root / "xgboost" / "model")
    done = predict(
        stack, root, "--input", str(source), "--output", str(target), "--model-uri", model
    )
    assert done.returncode == 2, done.stderr
    assert "b_atk must be a positive number in every row" in done.stderr
    assert f"row 2 has {shown}" in done.stderr


def test_batch_output_cells_never_start_a_spreadsheet_formula(stack, registry, tmp_path):
    from machine_learning.datasets import RAW_COLUMNS, held_out_battles
    from machine_learning.simulator import Scenario

    _, _, root = registry
    rows = held_out_battles(3, Scenario.RANDOM)[list(RAW_COLUMNS)]
    rows["a_name"] = ["=cmd|' /C calc'!A0", "@SUM(1)", "-2+3"]
    source, target = tmp_path / "raw.csv", tmp_path / "out.csv"
    rows.to_csv(source, index=False)
    model = str(root / "xgboost" / "model")
    done = predict(
        stack, root, "--input", str(source), "--output", str(target), "--model-uri", model
    )
    assert done.returncode == 0, done.stderr
    names = [row["a"] for row in read_csv(target)]
    assert names == ["'=cmd|' /C calc'!A0", "'@SUM(1)", "'-2+3"]


def serve_command(stack, port: int, **flags: str) -> list[str]:
    return predictor_command(
        stack.tracking_uri, port, {f"--{k.replace('_', '-')}": v for k, v in flags.items()}
    )


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exit_2(stack, registry):
    _, _, root = registry
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            serve_command(stack, port, model_uri=str(root / "xgboost" / "model")),
            cwd=root, env=cli_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "serving" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: --port {port}: cannot listen")


def test_serve_takes_mlflows_allowed_hosts_form_and_refuses_an_empty_one(stack, registry):
    _, _, root = registry
    running = Service(
        stack.tracking_uri,
        str(root / "xgboost" / "model"),
        root,
        {"--allowed-hosts": "localhost:*,127.0.0.1:*"},
    )
    try:
        assert running.get("/health")[0] == 200
        assert running.get("/health", host="localhost:8000")[0] == 200
        assert running.get("/health", host="evil.example.com")[0] == 400
    finally:
        running.stop()
    done = subprocess.run(
        serve_command(stack, free_port(), allowed_hosts=""),
        cwd=root, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: argument --allowed-hosts: no host given")


def test_serve_started_while_the_registry_is_down_serves_the_champion_once_it_is_back(
    stack, registry
):
    import mlflow

    _, name, root = registry
    # Whatever an earlier test of the module left as champion (the page's test moves it).
    champion = mlflow.MlflowClient(stack.tracking_uri).get_model_version_by_alias(name, "champion")
    tracking = urllib.parse.urlsplit(stack.tracking_uri)
    registry_later = Relay(tracking.hostname, tracking.port)
    port = free_port()
    command = predictor_command(
        f"http://127.0.0.1:{registry_later.port}", port,
        {"--model-uri": f"models:/{name}@champion", "--poll-interval": "0.5"},
    )  # fmt: skip
    log = root / f"predictor-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=root, env=cli_env(), stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"serving" not in log.read_bytes():
            time.sleep(0.2)
        assert b"serving nothing yet" in log.read_bytes(), log.read_text()
        assert b"sqlite" not in log.read_bytes()
        registry_later.start()
        deadline = time.monotonic() + 60
        version = None
        while time.monotonic() < deadline and version != champion.version:
            try:
                with urllib.request.urlopen(url + "/v1/version", timeout=5) as answer:
                    version = json.loads(answer.read())["version"]
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert version == champion.version, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=20)
        registry_later.stop()


def test_verify_says_who_is_champion_when_its_rollback_is_refused(stack, service):
    """The champion moved meanwhile (here: v1 serves while v3 is to be verified): nothing is
    rolled back, and the line names v1 as champion, not v3."""
    running, client, name = service
    client.set_registered_model_alias(name, "previous-champion", "2")
    done = verify(stack, running, name, "--expect-version", "3", "--timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing rolled back; v1 is champion now" in done.stdout
    assert "v3 is still champion" not in done.stdout
    assert client.get_model_version_by_alias(name, "champion").version == "1"

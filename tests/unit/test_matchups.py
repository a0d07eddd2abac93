"""The matchup table: every battle by name answered as the model answers it, built once per
version and never served for a version that has been replaced meanwhile."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from machine_learning.commands import _listen
from machine_learning.contract.prediction import PredictColumnsResponse
from machine_learning.serving import serve
from machine_learning.serving.matchups import LOWEST_PRIORITY, lowest_priority, matchup_table
from machine_learning.serving.predict import (
    ModelInfo,
    NamedBattles,
    Predictor,
    asked_battles,
    pokedex,
)
from machine_learning.serving.serve import ServedModelFollower


def test_the_table_answers_every_battle_by_name_exactly_as_the_model(predictor):
    table = matchup_table(predictor)
    n = len(pokedex().names)
    assert table.shape == (n, n) and not table.flags.writeable
    draw = np.random.default_rng(0)
    battles = NamedBattles(draw.integers(0, n, 5_000), draw.integers(0, n, 5_000))
    with_table = Predictor(predictor.info, predictor.pipeline, table)
    assert np.array_equal(with_table.answered(battles), predictor.answered(battles))
    assert predictor.pipeline[-1].get_params()["n_jobs"] == 2  # the build used a copy
    assert with_table.response(battles, with_table.answered(battles)) == predictor.answer_json(
        battles
    )


def test_a_table_finished_after_its_version_was_replaced_is_dropped(monkeypatch):
    monkeypatch.setattr(serve, "matchup_table", lambda loaded, wanted: np.zeros((1, 1)))
    follower = ServedModelFollower("models:/m/2", client=None)
    old = Predictor(ModelInfo(uri="models:/m/1", name="m", version="1"), object())
    new = Predictor(ModelInfo(uri="models:/m/2", name="m", version="2"), object())
    follower.current = new
    follower._add_matchups(old)  # v1's build ends after v2 was swapped in
    assert follower.current is new
    follower._add_matchups(new)
    assert follower.current.info.version == "2" and follower.current.matchups is not None


def test_a_build_stops_once_its_version_is_no_longer_wanted(predictor):
    asked = []

    def wanted() -> bool:
        asked.append(1)
        return len(asked) < 3

    assert matchup_table(predictor, wanted) is None and len(asked) == 3


def test_a_table_that_cannot_be_built_leaves_the_model_answering(monkeypatch, capsys):
    def broken(loaded, wanted):
        raise MemoryError("no room")

    monkeypatch.setattr(serve, "matchup_table", broken)
    follower = ServedModelFollower("models:/m/1", client=None)
    follower.current = loaded = Predictor(
        ModelInfo(uri="models:/m/1", name="m", version="1"), object()
    )
    follower._add_matchups(loaded)
    assert follower.current is loaded
    assert "no matchup table for m v1: no room; battles by name are scored by the model" in (
        capsys.readouterr().err
    )


def test_known_spellings_skip_the_checks_and_land_on_the_same_rows():
    records = [{"a": "Pikachu", "b": "charizard"}, {"b": "Onix", "a": "mew"}]
    known = pokedex().known(records)
    checked = pokedex().battles(["pikachu", "Mew"], ["Charizard", "onix"])
    assert known is not None
    assert known.a.tolist() == checked.a.tolist() and known.b.tolist() == checked.b.tolist()
    assert known.names() == (["Pikachu", "Mew"], ["Charizard", "Onix"])


@pytest.mark.parametrize(
    "records",
    [
        [{"a": "pikachu", "b": "mew", "id": 1}],  # a field too many: the contract says so
        [{"a": "pikachu"}, {"a": "mew", "b": "onix"}],
        [{"a": ["pikachu"], "b": "mew"}],  # not even hashable
        [{"a": 25, "b": "mew"}],
        [{"a": "", "b": "mew"}],  # too short for the contract, whatever the Pokédex holds
        [{"a": "PIKACHU!!", "b": "mew"}],  # a spelling not found yet: looked up, then kept
    ],
)
def test_anything_else_goes_through_the_contracts_checks(records):
    assert pokedex().known(records) is None


def test_a_spelling_found_once_is_known_from_then_on():
    records = [{"a": "  mR. mImE ", "b": "mew"}]
    assert pokedex().known(records) is None
    asked_battles(records)
    assert pokedex().known(records).names() == (["Mr. Mime"], ["Mew"])


def test_the_services_socket_gets_tcp_nodelay_from_asyncio():
    """asyncio sets TCP_NODELAY on accepted sockets whose protocol says TCP only; without it
    every answer after the first on a kept-alive connection waited for a delayed ACK."""
    import asyncio

    listening = _listen("127.0.0.1", 0)
    accepted: list[int] = []

    async def main() -> None:
        async def on_connection(reader, writer) -> None:
            sock = writer.get_extra_info("socket")
            accepted.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname())
            await asyncio.sleep(0.2)
            writer.close()

    asyncio.run(main())
    assert listening.proto == socket.IPPROTO_TCP and accepted == [1]


def test_the_build_runs_at_the_lowest_priority_and_the_service_does_not():
    """Only the building thread is lowered: the answers keep the service's priority."""
    import os
    import threading

    seen: list[int] = []

    def build() -> None:
        lowest_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    builder = threading.Thread(target=build)
    builder.start()
    builder.join()
    assert seen == [LOWEST_PRIORITY]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_a_stopped_service_stops_building(predictor):
    follower = ServedModelFollower("models:/m/1", client=None)
    follower.current = predictor
    follower.stop()
    follower._add_matchups(predictor)
    assert follower.current is predictor and predictor.matchups is None


def test_the_table_can_be_turned_off_where_the_cpu_is_capped():
    from machine_learning.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).matchup_table is True
    assert parser.parse_args(["serve", "--no-matchup-table"]).matchup_table is False


def test_answers_as_columns_are_the_rows_answers_and_valid_against_the_schema():
    """columns_json writes the columns response itself (names pre-quoted, probabilities as
    six-decimal numbers): the same numbers as the serializer's rows, edges included."""
    n = len(pokedex().names)
    edges = [0.0, 1.0, 0.5, 0.034, 0.999999, 0.000001, 1 / 3, 2 / 3, 0.1234565]
    table = np.repeat(np.resize(np.array(edges), n)[:, None], n, axis=1)  # by side a's row
    predictor = Predictor(ModelInfo(uri="models:/m/4", name="m", version="4"), None, table)
    records = [{"a": name, "b": "Mr. Mime"} for name in pokedex().names[: len(edges)]]
    records.append({"a": "Farfetch\u2019d", "b": "Nidoran-F"})  # quoted as JSON
    asked = asked_battles(records)
    p = predictor.answered(asked).round(6)
    ids = [f"id-{i}" for i in range(len(records))]
    as_rows = json.loads(predictor.response(asked, p, ids))
    as_columns = predictor.response(asked, p, ids, columns=True)
    validated = PredictColumnsResponse.model_validate_json(as_columns)
    assert validated.model_version == as_rows["model_version"] == "4"
    for field in ("a", "b", "p_a_wins", "p_b_wins", "battle_id"):
        assert json.loads(as_columns)["predictions"][field] == [
            prediction[field] for prediction in as_rows["predictions"]
        ], field
    assert b'"p_a_wins":[0.000000,1.000000,0.500000,0.034000,0.999999,0.000001,' in as_columns
    unversioned = Predictor(ModelInfo(uri="outputs/model"), None, table)
    assert json.loads(unversioned.response(asked, p, columns=True))["model_version"] is None
    assert (
        "battle_id" not in json.loads(unversioned.response(asked, p, columns=True))["predictions"]
    )


@pytest.mark.parametrize("wrong", [np.nan, 1.5, -0.2])
def test_probabilities_outside_zero_to_one_are_never_written_as_columns(wrong):
    battles = pokedex().battles(["mew", "onix"], ["pikachu", "mew"])
    info = ModelInfo(uri="models:/m/4", name="m", version="4")
    with pytest.raises(ValueError, match="outside"):
        Predictor(info, None).response(battles, np.array([0.5, wrong]), columns=True)


def test_probabilities_are_written_with_six_decimals_over_the_whole_range():
    """_decimals builds each number from two table rows (thousands, then units): every
    7th millionth from 0 to 1, and both ends, read back as Python writes them."""
    from machine_learning.serving.predict import _decimals

    micro = np.append(np.arange(0, 1_000_001, 7), [999_999, 1_000_000])
    written = bytes(_decimals(micro)).decode().split(",")
    assert written == [f"{m / 1_000_000:.6f}" for m in micro]

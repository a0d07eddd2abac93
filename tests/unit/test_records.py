"""Every boundary file format goes through one loader: a valid record or one RecordError line.

Hypothesis feeds the loaders documents of random shape and valid documents with one field
replaced or dropped; whatever comes in, the loader returns a record whose fields have their
declared types, or raises RecordError naming the file — never a KeyError, TypeError or
AttributeError from deep inside a command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machine_learning.contract.build_info import BuildInfo
from machine_learning.contract.gate_record import GateRecord
from machine_learning.contract.provenance import EventPayload
from machine_learning.contract.records import JsonRecord, RecordError, read_json
from machine_learning.contract.run_record import RunRecord
from machine_learning.contract.state_manifest import Manifest
from tests.records import SHA, sample_gate, sample_run

VALID: dict[type[JsonRecord], dict] = {
    RunRecord: sample_run().to_dict(),
    GateRecord: sample_gate(champion="3").to_dict(),
    BuildInfo: {"head_sha": SHA, "pr_number": 5, "branch": "b", "event": "push", "run_url": ""},
    Manifest: {
        "saved_at": "2026-11-27T00:00:00+00:00",
        "branch": "main",
        "mlflow_version": "3.17.2",
        "kept_runs": [sample_run().run_id],
        "deleted_runs": 1,
        "artifact_files": 3,
    },
    EventPayload: {"pull_request": {"number": 5, "head": {"sha": SHA}}},
}
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def mutated(document: dict) -> st.SearchStrategy:
    """The valid document with one (possibly nested) field replaced by any JSON, or dropped."""
    paths = list(_paths(document))
    return st.tuples(st.sampled_from(paths), JSON, st.booleans()).map(
        lambda change: _apply(document, *change)
    )


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _apply(document: dict, path: tuple, value, drop: bool) -> dict:
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


def assert_well_typed(record) -> None:
    """Every field holds what its annotation says (recursively)."""
    hints = typing.get_type_hints(type(record))
    for field in dataclasses.fields(record):
        _check(hints[field.name], getattr(record, field.name))


def _check(kind, value) -> None:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            assert type(None) in args
            return
        _check(next(a for a in args if a is not type(None)), value)
    elif isinstance(kind, type) and issubclass(kind, JsonRecord):
        assert isinstance(value, kind)
        assert_well_typed(value)
    elif origin is list:
        assert isinstance(value, list)
        for item in value:
            _check(args[0], item)
    elif origin is tuple:
        assert isinstance(value, tuple) and len(value) == len(args)
    elif origin is dict:
        assert isinstance(value, dict)
    elif kind is typing.Any:
        pass
    elif kind is float:
        assert isinstance(value, float)
    else:
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def load(kind: type[JsonRecord], document, tmp_path) -> None:
    path = tmp_path / "record.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        record = kind.read(path)
    except RecordError as error:
        message = str(error)
        assert message.startswith(str(path)) and "\n" not in message
        return
    assert_well_typed(record)


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("kind", list(VALID), ids=lambda kind: kind.__name__)
def test_the_valid_document_round_trips(kind, tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(VALID[kind]))
    record = kind.read(path)
    record.write(tmp_path / "again.json")
    assert kind.read(tmp_path / "again.json") == record


@pytest.mark.parametrize("kind", list(VALID), ids=lambda kind: kind.__name__)
@SETTINGS
@given(data=st.data())
def test_any_document_gives_a_record_or_one_line(kind, tmp_path, data):
    document = data.draw(JSON | mutated(VALID[kind]))
    load(kind, document, tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe", "not UTF-8 text"),
        (b'{"a": NaN}', "NaN is not a number"),
        (b'{"a": Infinity}', "Infinity is not a number"),
        (b"{", "is not valid JSON"),
    ],
)
def test_bytes_that_are_not_strict_json_are_refused(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(RecordError, match=message):
        read_json(path)


def test_links_fifos_and_huge_files_are_not_read(tmp_path):
    (tmp_path / "link").symlink_to("/etc/hostname")
    os.mkfifo(tmp_path / "fifo")  # reading it would block forever
    (tmp_path / "huge").write_bytes(b"0" * ((1 << 20) + 1))
    for name, message in (("link", "is a symlink"), ("fifo", "not a regular file")):
        with pytest.raises(RecordError, match=message):
            read_json(tmp_path / name)
    with pytest.raises(RecordError, match="larger than 1,048,576 bytes"):
        read_json(tmp_path / "huge")

"""The snapshot folder's own rules, without a database: the manifest and the swap."""

from __future__ import annotations

import pytest

from ci.state import _swap
from machine_learning.contract.records import RecordError
from machine_learning.contract.state_manifest import Manifest

MANIFEST = {
    "saved_at": "2026-11-27T12:00:00Z",
    "branch": "main",
    "mlflow_version": "3.17.2",
    "kept_runs": ["0123456789abcdef0123456789abcdef"],
    "deleted_runs": 0,
    "artifact_files": 0,
}


def test_a_manifest_naming_something_else_than_a_run_is_refused():
    assert Manifest.from_dict(MANIFEST, "m.json").kept_runs == MANIFEST["kept_runs"]
    with pytest.raises(RecordError, match=r"kept_runs holds '\.\./\.\./etc', not an MLflow run id"):
        Manifest.from_dict(MANIFEST | {"kept_runs": ["../../etc"]}, "m.json")


def test_the_new_snapshot_replaces_the_old_one_only_once_it_is_in(tmp_path):
    target, new = tmp_path / "state", tmp_path / "new"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    _swap(new, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no leftover .old folder


def test_a_symlink_where_the_snapshot_was_is_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    target, new = tmp_path / "state", tmp_path / "new"
    target.symlink_to(elsewhere)
    new.mkdir()
    _swap(new, target)
    assert target.is_dir() and not target.is_symlink()
    assert (elsewhere / "keep.txt").read_text() == "not ours"

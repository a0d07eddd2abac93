"""The stack for integration tests: one real PostgreSQL-backed ``mlflow server`` per test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ci.stack import NativeStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """PostgreSQL database of its own, migrated, and a server on a free loopback port.

    The database is dropped afterwards, whatever the tests did.
    """
    native = NativeStack(tmp_path_factory.mktemp("stack"))
    try:
        native.up()
        yield native
    finally:
        native.down()


@pytest.fixture
def client(stack: NativeStack):
    import mlflow

    mlflow.set_tracking_uri(stack.tracking_uri)
    yield mlflow.MlflowClient(stack.tracking_uri)
    mlflow.set_tracking_uri(None)

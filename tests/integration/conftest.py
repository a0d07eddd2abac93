"""Integration fixtures: an MLflow client on the shared stack (tests/stack_fixtures.py), and a
stack of its own whose server runs as the image's uid.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.fake_docker import IMAGE_UID
from tests.native_stack import NativeStack, remove_tree


@pytest.fixture
def client(stack):
    import mlflow

    mlflow.set_tracking_uri(stack.tracking_uri)
    yield mlflow.MlflowClient(stack.tracking_uri)
    mlflow.set_tracking_uri(None)


def unprivileged_stack(name: str) -> NativeStack:
    """A native stack whose server runs as the image's uid, in a folder it can reach."""
    workdir = Path(tempfile.mkdtemp(prefix=f"pb-{name}-"))
    workdir.chmod(0o755)
    return NativeStack(workdir, user=IMAGE_UID).up()


@pytest.fixture(scope="session")
def live():
    """A stack of its own for tests that restore into it or break its artifact store."""
    stack = unprivileged_stack("live")
    yield stack
    stack.down()
    remove_tree(stack.workdir)

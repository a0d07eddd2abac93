"""A mutex for registry moves, made of the one atomic step MLflow offers: creating a name.

``create_registered_model`` fails with RESOURCE_ALREADY_EXISTS when the name is taken, on every
store MLflow has (a unique key in its database), so a registered model ``<name>.registry-lock``
is a lock that holds across processes and machines talking to the same tracking server. It is
deleted when the move ends; one left by a killed job is broken after ``STALE_AFTER_S``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from machine_learning.contract.failures import Refused
from machine_learning.contract.mlflow_names import LOCK_SUFFIX, TAG_LOCK_OWNER

if TYPE_CHECKING:
    from mlflow import MlflowClient

WAIT_S = 45.0  # a move takes well under a second; bounded so a stuck lock is reported in time
STALE_AFTER_S = 120.0
POLL_S = 0.2


class RegistryBusy(Refused):
    """Another move held the lock for longer than we wait."""


@contextmanager
def registry_lock(
    client: MlflowClient,
    name: str,
    wait_s: float = WAIT_S,
    stale_after_s: float = STALE_AFTER_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold ``<name>.registry-lock`` for the duration of the block."""
    lock, owner = f"{name}{LOCK_SUFFIX}", uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while not _try_acquire(client, lock, owner, stale_after_s):
        if time.monotonic() > deadline:
            raise RegistryBusy(
                f"another promotion or rollback has held {lock} for over {wait_s:.0f} s; "
                f"retry later, or delete the registered model {lock} if no job is running"
            )
        sleep(POLL_S)
    try:
        yield
    finally:
        client.delete_registered_model(lock)


def _try_acquire(client: MlflowClient, lock: str, owner: str, stale_after_s: float) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            lock,
            tags={TAG_LOCK_OWNER: owner},
            description="Held while `ci promote` or `ci rollback` moves an alias. "
            "Delete it only if no such job is running.",
        )
        return True
    except MlflowException as exc:
        # A create that collides with a lock being released reports the lock missing: the
        # server's insert failed on the name, then its lookup found the name gone. Try again.
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    try:
        held = client.get_registered_model(lock)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False  # released meanwhile: try again
        raise
    if held.tags.get(TAG_LOCK_OWNER) == owner:
        return True  # our create was applied, and its retry saw it
    age_s = time.time() - (held.creation_timestamp or 0) / 1000
    if age_s > stale_after_s:
        print(
            f"warning: breaking {lock}, held for {age_s:.0f} s by a job that ended", file=sys.stderr
        )
        client.delete_registered_model(lock)
    return False

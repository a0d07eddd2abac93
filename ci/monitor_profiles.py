"""Each served version's reference profile, read from its training run in MLflow once a pass.

A version's battles are compared with the battles *that version* learnt from: the registry
gives the version's run, the run holds ``profile.json`` (logged by training beside its plots).
A version the monitor cannot judge is not an error and never a breach: the log may hold battles
of a model served without a registry version (``""``), of a version string the registry does
not know, or of a version trained before profiles were logged. Each gets a reason, said in
monitor.json and the summary. A registry that does not answer is still exit 3: a version
cannot be called unknown by a server that was not asked.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from machine_learning.contract.records import RecordError
from machine_learning.monitoring.profile import MAX_PROFILE_BYTES, PROFILE_FILE, ReferenceProfile

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_VERSION_DIGITS = 12  # registry versions are counters; anything longer is not one


def champion_version(client: MlflowClient, model_name: str) -> str:
    """The version behind the champion alias, "" when there is none (the registry's other
    failures propagate: exit 3)."""
    from mlflow.exceptions import MlflowException

    from machine_learning.contract.mlflow_names import CHAMPION

    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return ""
        raise


class ReferenceProfiles:
    """The profiles of one registered model's versions, each read at most once."""

    def __init__(self, client: MlflowClient, model_name: str) -> None:
        self.client = client
        self.model_name = model_name
        self.reasons: dict[str, str] = {}  # version -> why it has no profile
        self._profiles: dict[str, ReferenceProfile] = {}

    def get(self, version: str) -> ReferenceProfile | None:
        """The version's profile, or None (its reason then in ``reasons``)."""
        if version not in self._profiles and version not in self.reasons:
            found = self._read(version)
            if isinstance(found, ReferenceProfile):
                self._profiles[version] = found
            else:
                self.reasons[version] = found
        return self._profiles.get(version)

    def _read(self, version: str) -> ReferenceProfile | str:
        """The profile, or the reason there is none."""
        if not version:
            return "served by a model outside the registry (no version)"
        if not (version.isascii() and version.isdigit()) or len(version) > MAX_VERSION_DIGITS:
            return f"not a version of {self.model_name}"
        run_id = self._run_of(version)
        if run_id is None:
            return f"not a version of {self.model_name}"
        if not run_id:
            return "the version names no training run"
        return self._download(run_id)

    def _run_of(self, version: str) -> str | None:
        """The version's run id ("" when it has none); None when the registry lacks it."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.model_name, version).run_id or ""
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def _download(self, run_id: str) -> ReferenceProfile | str:
        listed = {a.path: a for a in self.client.list_artifacts(run_id)}
        artifact = listed.get(PROFILE_FILE)
        if artifact is None:
            return f"its run {run_id} has no {PROFILE_FILE} (trained before profiles were logged)"
        if (artifact.file_size or 0) > MAX_PROFILE_BYTES:
            return f"its run's {PROFILE_FILE} is larger than {MAX_PROFILE_BYTES:,} bytes"
        with tempfile.TemporaryDirectory(prefix="monitor-profile-") as folder:
            path = Path(self.client.download_artifacts(run_id, PROFILE_FILE, folder))
            try:
                return ReferenceProfile.read(path)
            except RecordError as error:
                return f"its run's {PROFILE_FILE} cannot be used: {str(error).split(': ', 1)[-1]}"

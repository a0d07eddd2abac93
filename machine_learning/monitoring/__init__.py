"""Watching a served model: its reference profile, drift of live battles, live quality.

``profile`` is written by the training run (one small JSON artifact per run); ``drift`` and
``quality`` compare a window of logged battles with it; ``window`` measures one window for one
version. All are pure functions over arrays and tables: no MLflow, no database, no server. The
monitor command (``ci``) reads the log and the profiles, and ``ci.monitor_decision`` judges.
"""

from machine_learning.contract.failures import BadInput


class MonitoringInputError(BadInput, ValueError):
    """Battles, predictions or outcomes that cannot be measured; the message says which.

    Bad input (exit 2), like a malformed record.
    """

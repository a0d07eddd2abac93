"""Searching MLflow runs by the ``ci.*`` tags the training job sets."""

from __future__ import annotations


def tag_filter(key: str, value: str) -> str:
    """An MLflow search clause ``tags.`key` = 'value'`` with the value's quotes escaped."""
    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"tags.`{key}` = '{quoted}'"

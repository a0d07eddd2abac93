"""Searching MLflow runs and model versions: filter strings with values quoted safely."""

from __future__ import annotations


def quoted(value: str) -> str:
    """``value`` as a single-quoted MLflow search string, its quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tag_filter(key: str, value: str) -> str:
    """An MLflow search clause ``tags.`key` = 'value'``."""
    return f"tags.`{key}` = {quoted(value)}"

"""Argument types and help formatting shared by both CLIs: bad input is caught while parsing,
as one line naming the option, the value and the accepted range."""

from __future__ import annotations

import argparse
import os
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from machine_learning.contract.failures import EXIT_BAD_INPUT


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (exit 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default once, and only when there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def int_in(low: int, high: int, reason: str) -> Callable[[str], int]:
    """An argparse type for whole numbers in [low, high]; ``reason`` says why the bounds."""

    def parse(text: str) -> int:
        value = _whole_number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be between {low:,} and {high:,} ({reason}), got {value:,}"
            )
        return value

    parse.__name__ = "whole number"
    return parse


def seconds_in(low: float, high: float, reason: str) -> Callable[[str], float]:
    """An argparse type for a duration in seconds in [low, high] (``nan`` and ``inf`` are not
    durations); ``reason`` says why the bounds."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not low <= value <= high:  # also false for nan
            raise argparse.ArgumentTypeError(
                f"must be between {low:,g} and {high:,g} seconds ({reason}), got {text}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


NAME_LIMIT = 256


def nonblank_name(text: str) -> str:
    """A name given on the command line (registered model, experiment, branch, version label,
    login, commit …), stripped of surrounding spaces: not empty, one line, no control
    characters, at most NAME_LIMIT characters.

    Checked while parsing because each one ends up somewhere that misreads it: an empty model
    name reaches the server and comes back as "tracking server failed" (exit 3) instead of bad
    input, and a newline would split a log line, a tag or a ``$GITHUB_OUTPUT`` line.
    """
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise argparse.ArgumentTypeError(
            f"must be one line without control characters, got U+{ord(control):04X} in "
            f"{value[:40]!r}"
        )
    if len(value) > NAME_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be at most {NAME_LIMIT} characters, got {len(value):,}"
        )
    return value


def positive_int(text: str) -> int:
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def output_path(text: str) -> Path:
    """A file we will write: its folder is created, and it must not be a folder itself.

    Checked while parsing so that no work is done for a result that cannot be saved.
    """
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot create the folder {path.parent}: {error.strerror}"
        ) from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    return path


DURATION_UNITS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def duration_in(low_s: int, high_s: int, reason: str) -> Callable[[str], int]:
    """An argparse type for a duration written as a whole number and a unit, ``30m``, ``6h``,
    ``1d``, ``2w``, returned in seconds within [low_s, high_s]; ``reason`` says why the bounds.
    ``0d`` or ``1x`` are refused while parsing, naming what is accepted."""
    units = ", ".join(DURATION_UNITS)

    def parse(text: str) -> int:
        number, unit = text.strip()[:-1], text.strip()[-1:].lower()
        if unit not in DURATION_UNITS or not number.isascii() or not number.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected a whole number and a unit ({units}), such as 1d or 6h, got {text!r}"
            )
        seconds = int(number) * DURATION_UNITS[unit]
        if not low_s <= seconds <= high_s:
            raise argparse.ArgumentTypeError(
                f"must be between {describe_duration(low_s)} and "
                f"{describe_duration(high_s)} ({reason}), got {text.strip()}"
            )
        return seconds

    parse.__name__ = "duration"
    return parse


def describe_duration(seconds: int) -> str:
    """The largest unit that writes ``seconds`` as a whole number: 86400 → ``1d``."""
    unit = next(u for u, s in reversed(DURATION_UNITS.items()) if seconds % s == 0 or u == "m")
    return f"{seconds // DURATION_UNITS[unit]}{unit}"


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def http_url(text: str) -> str:
    """An http(s) URL with a host: what a service (the predictor) is reached at. Anything else
    (``ftp://``, ``file:``, a bare host) is refused while parsing, naming the option."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        has_host = bool(parts.hostname)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not has_host:
        raise argparse.ArgumentTypeError(
            f"expected an http(s) URL such as http://host:8000, got {text!r}"
        )
    return text


_LOOK_BACK = duration_in(60, 3_650 * 86_400, "an empty window reads nothing")


def time_window(text: str) -> timedelta:
    """A look-back window such as ``30d`` or ``12h`` (a duration as ``duration_in`` reads it),
    more than none and at most ten years."""
    return timedelta(seconds=_LOOK_BACK(text))


def describe_window(window: timedelta) -> str:
    """A window as ``time_window`` reads it back: ``30d``, or ``12h`` when not whole days."""
    return describe_duration(int(window.total_seconds()))

"""Files that one step writes and another reads, as typed records with one validating loader.

``run.json``, ``gate.json``, ``build.json``, the state manifest and the GitHub event payload all
cross a boundary: another process, another job, sometimes a fork wrote them. Each is a frozen
dataclass deriving from :class:`JsonRecord`; its writer calls ``write`` and its reader
``read``, so the shape lives in one place. Any wrong shape becomes one :class:`RecordError`
naming the file and the field, never a KeyError deep inside a command.

Standard library only: the privileged PR-comment job reads ``build.json`` with a bare interpreter.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any, Self

from machine_learning.contract.failures import BadInput

MAX_BYTES = 1 << 20  # every record we write is a few KiB; a forged one may be anything


class RecordError(BadInput, ValueError):
    """A record file that cannot be used (exit 2); the message names the file and the field."""


def read_bytes(path: Path, max_bytes: int = MAX_BYTES, cut: bool = False) -> bytes:
    """At most ``max_bytes`` of a regular file, refusing symlinks, FIFOs and devices.

    Opened without following a final symlink and without blocking, then checked with ``fstat``
    on the open descriptor, so a file swapped after a check cannot be read instead. A longer
    file is an error, or with ``cut`` its first ``max_bytes + 1`` bytes (the caller sees it was
    longer, and never reads a huge file whole).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        reason = "is a symlink" if os.path.islink(path) else (error.strerror or str(error))
        raise RecordError(f"cannot read {path}: {reason}") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise RecordError(f"cannot read {path}: not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes and not cut:
        raise RecordError(f"{path} is larger than {max_bytes:,} bytes")
    return data


def read_text(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """A bounded regular file as UTF-8 text; anything else is one RecordError."""
    try:
        return read_bytes(path, max_bytes).decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"{path} is not UTF-8 text (byte {error.start})") from None


def read_json(path: Path, max_bytes: int = MAX_BYTES) -> Any:
    """A JSON document from a bounded regular file (strict: no NaN or Infinity)."""
    text = read_text(path, max_bytes)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise RecordError(f"{path} is not valid JSON: {error}") from None


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write beside the target, then rename over it: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, path)


class JsonRecord:
    """Base of the record dataclasses: ``from_dict``/``to_dict`` typed by the annotations."""

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls.from_dict(read_json(path), str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> Self:
        """The record from parsed JSON; extra keys are ignored, missing ones use defaults."""
        return _convert(cls, data, origin, "")

    def to_dict(self) -> dict[str, Any]:
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())


def _plain(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _convert(kind: Any, value: Any, origin: str, where: str) -> Any:
    """``value`` checked (and converted) against the type ``kind``; ``where`` is the field."""
    origin_type, args = typing.get_origin(kind), typing.get_args(kind)
    if origin_type in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [arg for arg in args if arg is not type(None)]
        return _convert(kinds[0], value, origin, where)
    if isinstance(kind, type) and issubclass(kind, JsonRecord):
        return _record(kind, value, origin, where)
    if origin_type is list:
        items = _expect(value, list, "a list", origin, where)
        return [_convert(args[0], item, origin, f"{where}[{i}]") for i, item in enumerate(items)]
    if origin_type is tuple:
        items = _expect(value, list, f"a list of {len(args)}", origin, where)
        if len(items) != len(args):
            raise _error(origin, where, f"a list of {len(args)}", value)
        return tuple(
            _convert(a, v, origin, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, items, strict=True))
        )
    if origin_type is dict:
        mapping = _expect(value, dict, "an object", origin, where)
        return {
            key: _convert(args[1], item, origin, f"{where}.{key}") for key, item in mapping.items()
        }
    return _scalar(kind, value, origin, where)


def _record(kind: type[JsonRecord], value: Any, origin: str, where: str) -> JsonRecord:
    mapping = _expect(value, dict, "an object", origin, where)
    hints = typing.get_type_hints(kind)
    values = {}
    for field in dataclasses.fields(kind):
        path = f"{where}.{field.name}" if where else field.name
        if field.name in mapping:
            values[field.name] = _convert(hints[field.name], mapping[field.name], origin, path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise RecordError(f"{origin}: field {path!r} is missing")
    try:
        return kind(**values)
    except ValueError as error:  # a record's own __post_init__ checks
        raise RecordError(f"{origin}: {error}") from None


def _scalar(kind: Any, value: Any, origin: str, where: str) -> Any:
    if kind is Any:
        return value
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [member.value for member in kind]
        if value not in choices:
            raise _error(origin, where, f"one of {choices}", value)
        return kind(value)
    if kind is bool:
        return _expect(value, bool, "true or false", origin, where)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _error(origin, where, "a whole number", value)
        return value
    if kind is float:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise _error(origin, where, "a finite number", value)
        return float(value)
    if kind is str:
        return _expect(value, str, "a string", origin, where)
    raise TypeError(f"records cannot hold {kind!r}")  # a programming error, not bad input


def _expect(value: Any, kind: type, wanted: str, origin: str, where: str) -> Any:
    if not isinstance(value, kind):
        raise _error(origin, where, wanted, value)
    return value


def _error(origin: str, where: str, wanted: str, value: Any) -> RecordError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
    field = f"field {where!r}" if where else "the document"
    return RecordError(f"{origin}: {field} must be {wanted}, got {shown}")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")

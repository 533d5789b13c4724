"""User text files (manifests, captions, annotation JSON) read as UTF-8, with errors that name the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amad.errors import DataError


def read_utf8(path: Path) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark, as Windows tools write, is
    dropped); DataError names the file, and the line of the first byte that is not UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return decode_utf8(path.read_bytes(), path)


def decode_utf8(data: bytes, path: Path | str) -> str:
    """``data`` (the contents of ``path``, decompressed where it is compressed) decoded as
    :func:`read_utf8` decodes a file."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({error.reason} at byte {error.start})") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A UTF-8 JSON file whose top level is an object; DataError names the file (and the line)."""
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object at the top level, got {json_type(data)}")
    return data


def parse_json_line(
    line: str, where: str, fields: dict[str, type], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One JSON Lines line -> its object, with each of ``fields`` present (``defaults`` fill absent
    ones) and of its JSON type; DataError names ``where`` (``file:line``) and the problem."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object, got {json_type(data)}")
    data = {**(defaults or {}), **data}
    for key, kind in fields.items():
        if key not in data:
            raise DataError(f"{where}: missing field '{key}' (required: {', '.join(fields)})")
        if not isinstance(data[key], kind):
            raise DataError(
                f"{where}: field '{key}' must be {JSON_NAMES[kind]}, got {json_type(data[key])} {shown(data[key])}"
            )
    return data


JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer"}
"""How messages name the JSON types of Python's."""


def shown(value: Any) -> str:
    """A short repr for messages (captions may be long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
    return names.get(type(value), type(value).__name__)


class LineProblems:
    """The bad records of one file, collected so that one run reports up to ``limit`` of them (each
    ``<file>:<line>: <problem>``) instead of stopping at the first::

        problems = LineProblems(path)
        for line in lines:
            with problems.record():
                ...  # raises DataError for a bad line
        problems.raise_any()
    """

    def __init__(self, source: Path | str, limit: int = 20):
        self.source, self.limit, self.messages, self.count = source, limit, [], 0

    @contextmanager
    def record(self) -> Iterator[None]:
        try:
            yield
        except DataError as error:
            self.count += 1
            if len(self.messages) < self.limit:
                self.messages.append(str(error))

    def raise_any(self) -> None:
        """DataError listing the collected problems (one alone: its own message); nothing if none."""
        if self.count == 1:
            raise DataError(self.messages[0])
        if self.count:
            shown_count = f", the first {len(self.messages)}" if self.count > len(self.messages) else ""
            raise DataError(f"{self.source}: {self.count} bad records{shown_count}:\n  " + "\n  ".join(self.messages))

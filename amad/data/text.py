"""User text files (manifests, captions, annotation JSON) read as UTF-8, with errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amad.errors import DataError


def read_utf8(path: Path) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark, as Windows tools write, is
    dropped); DataError names the file, and the line of the first byte that is not UTF-8."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
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


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
    return names.get(type(value), type(value).__name__)

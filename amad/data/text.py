"""User text files (manifests, captions, annotation JSON) read as UTF-8, with errors that name the line."""

from __future__ import annotations

from pathlib import Path

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

"""Data file paths from user data: relative to the data folder, and never outside it."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

from amad.errors import DataError


def checked_relative_path(path: str, where: str, field: str = "image") -> str:
    """``path`` as given, if it is relative and has no ``..`` part; else DataError naming ``where``.

    A path that leaves the data folder (``../x``, ``/etc/x``, ``C:\\x``) would be linked into
    ``data/prepared`` and from there cached, and pushed, by DVC. Symbolic links inside the data
    folder stay the user's choice.
    """
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if not path.strip():
        raise DataError(f"{where}: field '{field}' is empty")
    if posix.is_absolute() or windows.is_absolute() or windows.drive or path.startswith("\\"):
        raise DataError(f"{where}: field '{field}' must be a path relative to the data folder, got {path!r}")
    if ".." in posix.parts or ".." in windows.parts:
        raise DataError(f"{where}: field '{field}' may not contain '..' (it would leave the data folder): {path!r}")
    return path

"""Checks on user image files, run by ``prepare`` so that a bad file fails before any training."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from amad.errors import DataError

CHECK_SIZE = (64, 64)  # JPEGs decode at a reduced scale for the check (every byte is still read)


def check_decodable(path: Path, where: str) -> None:
    """Decode ``path`` completely; DataError naming ``where`` and the file if it cannot be read."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", CHECK_SIZE)
            image.load()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"{where}: image {path} cannot be decoded ({error})") from None


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy where linking is impossible), creating folders."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def import_image(images: Path, name: str, out: Path, where: str) -> str:
    """Check that ``images / name`` exists and decodes, hard-link (or copy) it to ``out/images/<name>``
    once, and return that path relative to ``out`` (what the prepared records name);
    DataError naming ``where`` and the file otherwise."""
    source = images / name
    if not source.is_file():
        raise DataError(f"{where}: image not found: {source}")
    relative = Path("images") / name
    if not (out / relative).exists():
        check_decodable(source, where)
        link_or_copy(source, out / relative)
    return relative.as_posix()

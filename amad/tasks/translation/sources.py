"""Sentence pairs with their images, from any translation source: Multi30K's own layout, a JSONL
manifest, or the built-in bilingual scenes; and the prepared folder's records.

* **Multi30K** (as its repository ships it, under ``data.path``): ``task1/raw/<split>.<lang>`` (plain
  or ``.gz``), one sentence a line, line-aligned across the two languages, and
  ``task1/image_splits/<split>.txt`` naming each line's image in the image folder (``data.images``).
  Split names are ``data.splits`` (``train``, ``val``, ``test_2016_flickr``, ...).
* **JSONL**: ``<data.path>/<data.splits.<split>>`` files of ``{"id", "image", "source", "target"}``
  lines, images relative to ``data.images``.

Misaligned line counts, a missing image, an empty sentence, bad UTF-8 or bad JSON: one DataError
naming the file and line. Nothing is written before every split has been read.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amad.data.text import LineProblems, decode_utf8, parse_json_line, read_utf8
from amad.errors import DataError
from amad.tasks.translation.config import SPLITS, DataConfig

RAW = Path("task1") / "raw"
IMAGE_SPLITS = Path("task1") / "image_splits"


@dataclass(frozen=True)
class SentencePair:
    """One source sentence, its translation, and its image (a path relative to the folder that holds
    the records: the source's image folder, or the prepared folder)."""

    id: str
    image: str
    source: str
    target: str


def _lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, plain or gzip-compressed (``.gz``)."""
    if path.suffix == ".gz":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: not a readable gzip file ({error})") from None
        text = decode_utf8(data, path)
    else:
        text = read_utf8(path)
    return text.splitlines()


def _raw_file(root: Path, split: str, language: str) -> Path:
    """``task1/raw/<split>.<language>``, or its ``.gz``."""
    plain = root / RAW / f"{split}.{language}"
    compressed = plain.with_name(plain.name + ".gz")
    if plain.is_file():
        return plain
    if compressed.is_file():
        return compressed
    raise DataError(f"{plain}: file not found (nor {compressed.name}); Multi30K keeps each split's sentences there")


def read_multi30k(config: DataConfig) -> dict[str, list[SentencePair]]:
    """Every split's pairs from Multi30K's layout (see the module docstring)."""
    root = Path(config.path)
    languages = config.languages
    splits = {}
    for split in SPLITS:
        name = getattr(config.splits, split)
        files = {
            "source": _raw_file(root, name, languages.source),
            "target": _raw_file(root, name, languages.target),
            "image": root / IMAGE_SPLITS / f"{name}.txt",
        }
        lines = {side: _lines(path) for side, path in files.items()}
        counts = {side: len(rows) for side, rows in lines.items()}
        if len(set(counts.values())) > 1:
            listing = ", ".join(f"{files[side]}: {count} lines" for side, count in counts.items())
            raise DataError(f"the {split} split's files are not line-aligned ({listing})")
        pairs = []
        for number, (source, target, image) in enumerate(zip(lines["source"], lines["target"], lines["image"]), 1):
            for side, text in (("source", source), ("target", target), ("image", image)):
                if not text.strip():
                    raise DataError(f"{files[side]}:{number}: empty line (every line is one sentence of the split)")
            pairs.append(SentencePair(f"{name}-{number}", image.strip(), source.strip(), target.strip()))
        splits[split] = pairs
    return splits


MANIFEST_FIELDS = {"id": str, "image": str, "source": str, "target": str}


def read_manifest(path: Path) -> list[SentencePair]:
    """The pairs of a JSONL manifest (prepared folders use the same format)."""
    problems = LineProblems(path)
    pairs, seen = [], set()
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        with problems.record():
            row = parse_json_line(line, where, MANIFEST_FIELDS)
            for key in ("image", "source", "target"):
                if not row[key].strip():
                    raise DataError(f"{where}: field '{key}' is empty")
            if row["id"] in seen:
                raise DataError(f"{where}: id {row['id']!r} appears twice")
            seen.add(row["id"])
            pairs.append(SentencePair(row["id"], row["image"], row["source"].strip(), row["target"].strip()))
    problems.raise_any()
    if not pairs:
        raise DataError(f"{path}: no sentence pairs")
    return pairs


def write_manifest(path: Path, pairs: list[SentencePair]) -> None:
    with path.open("w", encoding="utf-8") as stream:
        for pair in pairs:
            row = {"id": pair.id, "image": pair.image, "source": pair.source, "target": pair.target}
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")


def generate_scenes(config: DataConfig, seed: int, out: Path) -> dict[str, list[SentencePair]]:
    """The built-in scenes rendered into ``out/images`` (PNG), one English-German pair each."""
    from amad.tasks.translation.scenes import scene_sentence_pair

    shapes = config.shapes
    (out / "images").mkdir(parents=True)
    splits = {}
    for split_index, split in enumerate(SPLITS):
        generator = shapes.generator(seed * 1000 + 700 + split_index)
        rng = np.random.default_rng([seed, 70 + split_index])
        pairs = []
        for index in range(getattr(shapes, split)):
            objects = tuple(generator.scene())
            name = f"images/{split}_{index:06d}.png"
            generator.render(objects).save(out / name)
            source, target = scene_sentence_pair(objects, shapes.grid, shapes.hypernym, rng)
            pairs.append(SentencePair(f"{split}-{index}", name, source, target))
        splits[split] = pairs
    return splits

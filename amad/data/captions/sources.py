"""Caption data (image-text retrieval, captioning): one ``ImageRecord`` per image, with all its captions.

Four formats are read, each into the same records:

* open_clip's CSV (``read_csv``): a header row, then one ``image<sep>caption`` row per caption;
  rows naming the same image become one record.
* COCO captions JSON (``read_coco``): ``{"images": [{"id", "file_name"}], "annotations":
  [{"image_id", "caption"}]}``.
* Karpathy split JSON (``read_karpathy``): ``dataset_coco.json``, ``dataset_flickr8k.json``,
  ``dataset_flickr30k.json``; ``restval`` counts as ``train``.
* The prepared JSONL (``read_records`` / ``write_records``): ``{"id", "image", "captions"}`` a line,
  plus ``"label"`` where the image has a class.

Only the CSV can name an image's class (``class_column``): zero-shot classification needs it.

Image paths are relative to the image folder and never leave it; whether the images exist is the
caller's check. Captions are stripped of surrounding whitespace and otherwise kept as given
(duplicates, tabs, newlines, any script). Every problem is a ``DataError`` naming the file and the
line (text formats) or the JSON path (``images[3].file_name``).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amad.atomic import atomic_file
from amad.data.paths import checked_relative_path
from amad.data.text import JSON_NAMES, LineProblems, json_type, parse_json_line, read_json_object, read_utf8, shown
from amad.errors import DataError

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
"""Karpathy ``split`` value -> the split it belongs to (``restval`` is used for training)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image and its captions.

    ``id`` is unique within a split; ``image`` is a path relative to the image folder; ``captions``
    holds at least one non-empty caption, in file order, duplicates kept as given; ``label`` is the
    image's class name (zero-shot classification), or None.
    """

    id: str
    image: str
    captions: tuple[str, ...]
    label: str | None = None

    def to_json(self) -> str:
        """One line of the prepared format: ``{"id": .., "image": .., "captions": [..]}`` (+ ``"label"``)."""
        line = {"id": self.id, "image": self.image, "captions": list(self.captions)}
        if self.label is not None:
            line["label"] = self.label
        return json.dumps(line, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# open_clip CSV


def _csv_row(
    row: list[str], header: list[str], where: str, separator: str, columns: list[str], indices: tuple[int, int, int]
) -> tuple[str, str, str | None]:
    """One CSV row's ``(image, caption, class or None)``; DataError names ``where``."""
    if len(row) != len(header):
        raise DataError(
            f"{where}: expected {len(header)} fields (as in the header), got {len(row)} (separator {separator!r})"
        )
    image_index, caption_index, class_index = indices
    image = checked_relative_path(row[image_index], where, columns[0])
    caption = row[caption_index].strip()
    if not caption:
        raise DataError(f"{where}: field '{columns[1]}' is empty")
    if class_index < 0:
        return image, caption, None
    label = row[class_index].strip()
    if not label:
        raise DataError(f"{where}: field '{columns[2]}' is empty (every row names its image's class)")
    return image, caption, label


def read_csv(
    path: Path, *, separator: str, image_column: str, caption_column: str, class_column: str | None = None
) -> list[ImageRecord]:
    """Records from an open_clip CSV: a header row, then one caption a row.

    ``separator`` is one character (open_clip's ``--csv-separator`` default is a tab); fields may be
    quoted (``"a, b"``, doubled ``""`` inside) and a quoted field may span lines. Rows with the same
    image path become one record, in order of first appearance, with that path as its id. Blank
    lines are skipped; other columns are ignored, except ``class_column`` where given: every row
    then names its image's class (the record's ``label``), the same on every row of one image.
    """
    if len(separator) != 1:
        raise ValueError(f"separator must be a single character, got {separator!r}")
    columns = [image_column, caption_column] + ([class_column] if class_column is not None else [])
    if len(set(columns)) != len(columns):
        raise ValueError(f"the image, caption and class columns must differ, got {columns}")
    path = Path(path)
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter=separator, strict=True)
    header: list[str] | None = None
    image_index = caption_index = class_index = -1
    captions: dict[str, list[str]] = {}
    labels: dict[str, tuple[str, str]] = {}  # image -> (class, where it was first given)
    problems = LineProblems(path)
    start = 1  # first physical line of the row being read

    try:
        for row in reader:
            where, start = f"{path}:{start}", reader.line_num + 1
            if not row:
                continue
            if header is None:
                header = row
                image_index = _column_index(header, image_column, where, separator)
                caption_index = _column_index(header, caption_column, where, separator)
                if class_column is not None:
                    class_index = _column_index(header, class_column, where, separator)
                continue
            with problems.record():
                image, caption, label = _csv_row(
                    row, header, where, separator, columns, (image_index, caption_index, class_index)
                )
                if label is not None:
                    first, first_where = labels.setdefault(image, (label, where))
                    if label != first:
                        raise DataError(
                            f"{where}: image {image!r} has class {label!r} here but {first!r} at {first_where}"
                        )
                captions.setdefault(image, []).append(caption)
    except csv.Error as error:
        raise DataError(f"{path}:{start}: malformed CSV ({error})") from None
    problems.raise_any()
    if header is None:
        raise DataError(
            f"{path}: empty file (expected a header row with columns {image_column!r} and {caption_column!r})"
        )
    if not captions:
        raise DataError(f"{path}: no rows after the header")
    return [
        ImageRecord(image, image, tuple(texts), labels[image][0] if class_column is not None else None)
        for image, texts in captions.items()
    ]


def _column_index(header: list[str], column: str, where: str, separator: str) -> int:
    """Position of ``column`` in the header row; DataError if it is absent or repeated."""
    count = header.count(column)
    if count == 0:
        columns = ", ".join(repr(name) for name in header)
        raise DataError(f"{where}: header has no column {column!r} (columns: {columns}; separator {separator!r})")
    if count > 1:
        raise DataError(f"{where}: column {column!r} appears {count} times in the header")
    return header.index(column)


# ---------------------------------------------------------------------------------------------
# COCO captions JSON


def read_coco(path: Path) -> list[ImageRecord]:
    """Records from a COCO captions file (``captions_train2017.json`` ...), in ``images`` order.

    The id is the image's ``id`` as a string, the image path its ``file_name``; captions come from
    ``annotations`` in file order. Every image must have a caption and every annotation an image.
    """
    path = Path(path)
    data = read_json_object(path)
    images = _get(data, "images", list, "", path)
    annotations = _get(data, "annotations", list, "", path)
    file_names: dict[int, str] = {}
    first_index: dict[int, int] = {}
    for index, entry in enumerate(images):
        at = f"images[{index}]"
        entry = _object(entry, at, path)
        image_id = _get(entry, "id", int, at, path)
        file_name = checked_relative_path(_get(entry, "file_name", str, at, path), f"{path}: {at}", "file_name")
        if image_id in first_index:
            raise DataError(
                f"{path}: {at}.id: duplicate image id {image_id} (first at images[{first_index[image_id]}])"
            )
        first_index[image_id] = index
        file_names[image_id] = file_name
    captions: dict[int, list[str]] = {image_id: [] for image_id in file_names}
    for index, annotation in enumerate(annotations):
        at = f"annotations[{index}]"
        annotation = _object(annotation, at, path)
        image_id = _get(annotation, "image_id", int, at, path)
        caption = _caption(_get(annotation, "caption", str, at, path), f"{at}.caption", path)
        if image_id not in captions:
            raise DataError(f"{path}: {at}.image_id: no image with id {image_id}")
        captions[image_id].append(caption)
    records = []
    for image_id, file_name in file_names.items():
        if not captions[image_id]:
            raise DataError(
                f"{path}: images[{first_index[image_id]}] (id {image_id}, {file_name}) has no caption in annotations"
            )
        records.append(ImageRecord(str(image_id), file_name, tuple(captions[image_id])))
    return records


# ---------------------------------------------------------------------------------------------
# Karpathy split JSON


def read_karpathy(path: Path, split: str) -> list[ImageRecord]:
    """Records of one split (``train``, ``val`` or ``test``) of a Karpathy split file, in file order.

    ``restval`` entries belong to ``train``. The image path is ``filepath/filename`` (``filename``
    alone where there is no ``filepath``); the id is ``cocoid``, else ``imgid``, else the image
    path; a caption is ``raw`` stripped, or the ``tokens`` joined by spaces where ``raw`` is absent.
    Every entry is checked, whatever its split.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    path = Path(path)
    images = _get(read_json_object(path), "images", list, "", path)
    records: list[ImageRecord] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(images):
        at = f"images[{index}]"
        entry = _object(entry, at, path)
        entry_split = _get(entry, "split", str, at, path)
        if entry_split not in KARPATHY_SPLITS:
            raise DataError(
                f"{path}: {at}.split: unknown split {entry_split!r} (expected one of {', '.join(KARPATHY_SPLITS)})"
            )
        record = _karpathy_record(entry, at, path)
        if KARPATHY_SPLITS[entry_split] != split:
            continue
        if record.id in first_index:
            raise DataError(
                f"{path}: {at}: duplicate id {record.id!r} in split {split!r} (first at images[{first_index[record.id]}])"
            )
        first_index[record.id] = index
        records.append(record)
    if not records:
        also = " (nor 'restval')" if split == "train" else ""
        raise DataError(f"{path}: no image in split {split!r}{also}")
    return records


def _karpathy_record(entry: dict[str, Any], at: str, path: Path) -> ImageRecord:
    """One Karpathy ``images[]`` entry -> ImageRecord; DataError names ``path`` and ``at``."""
    where = f"{path}: {at}"
    image = checked_relative_path(_get(entry, "filename", str, at, path), where, "filename")
    if "filepath" in entry:
        folder = _get(entry, "filepath", str, at, path)
        if folder:
            image = posixpath.join(checked_relative_path(folder, where, "filepath"), image)
    sentences = _get(entry, "sentences", list, at, path)
    if not sentences:
        raise DataError(f"{where}.sentences: empty (an image needs at least one caption)")
    captions = []
    for number, sentence in enumerate(sentences):
        sentence_at = f"{at}.sentences[{number}]"
        sentence = _object(sentence, sentence_at, path)
        if "raw" in sentence:
            captions.append(_caption(_get(sentence, "raw", str, sentence_at, path), f"{sentence_at}.raw", path))
        elif "tokens" in sentence:
            tokens = _get(sentence, "tokens", list, sentence_at, path)
            for position, token in enumerate(tokens):
                if not isinstance(token, str):
                    raise DataError(
                        f"{path}: {sentence_at}.tokens[{position}]: expected a string, got {json_type(token)}"
                    )
            captions.append(_caption(" ".join(tokens), f"{sentence_at}.tokens", path))
        else:
            raise DataError(f"{path}: {sentence_at}: missing 'raw' (and no 'tokens' to fall back to)")
    for key in ("cocoid", "imgid"):
        if key in entry:
            return ImageRecord(_id(entry[key], f"{at}.{key}", path), image, tuple(captions))
    return ImageRecord(image, image, tuple(captions))


def _id(value: Any, at: str, path: Path) -> str:
    """An id given as an integer or a non-empty string, as a string."""
    if _is_int(value) or (isinstance(value, str) and value):
        return str(value)
    raise DataError(f"{path}: {at}: expected an integer or a non-empty string, got {json_type(value)} {shown(value)}")


# ---------------------------------------------------------------------------------------------
# Prepared JSONL


def write_records(path: Path, records: list[ImageRecord]) -> None:
    """Write ``records`` atomically as UTF-8 JSONL, one ``ImageRecord.to_json`` line each."""
    with atomic_file(path, "wb") as stream:
        for record in records:
            stream.write((record.to_json() + "\n").encode("utf-8"))


def read_records(path: Path) -> list[ImageRecord]:
    """Read the prepared JSONL (see ``write_records``); blank lines are skipped, ids must be unique,
    and either every line has a ``label`` or none has."""
    path = Path(path)
    records: list[ImageRecord] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = _parse_record(line, where)
        if record.id in seen:
            raise DataError(f"{where}: duplicate id {record.id!r} (first on line {seen[record.id]})")
        seen[record.id] = number
        records.append(record)
    if not records:
        raise DataError(f"{path}: no records (the file is empty)")
    labelled = [record.label is not None for record in records]
    if any(labelled) and not all(labelled):
        raise DataError(
            f"{path}:{seen[records[labelled.index(False)].id]}: no 'label' where other lines have one "
            "(label every image or none)"
        )
    return records


RECORD_FIELDS = {"id": str, "image": str, "captions": list}
"""Required fields of a prepared line and their JSON types."""


def _parse_record(line: str, where: str) -> ImageRecord:
    """One prepared line -> ImageRecord; DataError names ``where`` (file:line) and the problem."""
    data = parse_json_line(line, where, RECORD_FIELDS)
    if not data["id"]:
        raise DataError(f"{where}: field 'id' is empty")
    image = checked_relative_path(data["image"], where, "image")
    if not data["captions"]:
        raise DataError(f"{where}: field 'captions' is an empty list (an image needs at least one caption)")
    captions = []
    for position, caption in enumerate(data["captions"]):
        if not isinstance(caption, str):
            raise DataError(f"{where}: captions[{position}]: expected a string, got {json_type(caption)}")
        if not caption.strip():
            raise DataError(f"{where}: captions[{position}]: empty caption")
        captions.append(caption.strip())
    label = data.get("label")
    if label is not None and not (isinstance(label, str) and label.strip()):
        raise DataError(f"{where}: field 'label' must be a non-empty string, got {json_type(label)} {shown(label)}")
    return ImageRecord(data["id"], image, tuple(captions), label.strip() if label is not None else None)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any, at: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path}: {at}: expected an object, got {json_type(value)}")
    return value


def _get(container: dict[str, Any], key: str, kind: type, at: str, path: Path) -> Any:
    """``container[key]``, which must be of JSON type ``kind``; ``at`` is the container's JSON path."""
    if key not in container:
        raise DataError(f"{path}: {at}: missing '{key}'" if at else f"{path}: missing '{key}'")
    value = container[key]
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        key_at = f"{at}.{key}" if at else key
        raise DataError(f"{path}: {key_at}: expected {JSON_NAMES[kind]}, got {json_type(value)} {shown(value)}")
    return value


def _caption(text: str, at: str, path: Path) -> str:
    """``text`` stripped; DataError naming ``at`` if nothing is left."""
    caption = text.strip()
    if not caption:
        raise DataError(f"{path}: {at}: empty caption")
    return caption

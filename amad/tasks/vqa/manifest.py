"""The JSONL manifest format shared by user data and the prepared data.

One JSON object a line: ``{"id": "...", "image": "images/x.png", "question": "...",
"answers": ["...", ...]}`` (an optional ``"family"`` names the question type for per-family
accuracy). Image paths are relative to the manifest's folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from amad.atomic import atomic_file
from amad.data.paths import checked_relative_path
from amad.data.text import LineProblems, parse_json_line, read_utf8
from amad.errors import DataError

SPLITS = ("train", "val", "test")
REQUIRED = {"id": str, "image": str, "question": str, "answers": list}


@dataclass(frozen=True)
class Record:
    id: str
    image: str
    question: str
    answers: tuple[str, ...]
    family: str | None = None

    def to_json(self) -> str:
        data = {**asdict(self), "answers": list(self.answers)}
        if self.family is None:
            del data["family"]
        return json.dumps(data, ensure_ascii=False)


def parse_record(line: str, where: str, *, require_answers: bool = True) -> Record:
    """One manifest line -> Record; DataError names ``where`` (file:line) and the problem.

    With ``require_answers=False`` (prediction inputs) ``answers`` may be absent.
    """
    data = parse_json_line(line, where, REQUIRED, defaults=None if require_answers else {"answers": ["?"]})
    answers = data["answers"]
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DataError(f"{where}: field 'answers' must be a non-empty list of non-empty strings")
    family = data.get("family")
    if family is not None and not isinstance(family, str):
        raise DataError(f"{where}: field 'family' must be a string")
    image = checked_relative_path(data["image"], where)
    return Record(str(data["id"]), image, data["question"], tuple(answers), family)


def read_manifest(path: str | Path, *, check_images: bool = True, require_answers: bool = True) -> list[Record]:
    """Read and validate a manifest; images must exist relative to its folder."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: manifest not found")
    records, seen, problems = [], {}, LineProblems(path)
    for number, line in enumerate(read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        with problems.record():
            record = parse_record(line, where, require_answers=require_answers)
            if record.id in seen:
                raise DataError(f"{where}: duplicate id {record.id!r} (first on line {seen[record.id]})")
            seen[record.id] = number
            if check_images and not (path.parent / record.image).is_file():
                raise DataError(f"{where}: image not found: {path.parent / record.image}")
            records.append(record)
    problems.raise_any()
    if not records:
        raise DataError(f"{path}: manifest is empty")
    return records


def write_manifest(path: str | Path, records: list[Record]) -> None:
    with atomic_file(path) as stream:
        for record in records:
            stream.write(record.to_json() + "\n")
